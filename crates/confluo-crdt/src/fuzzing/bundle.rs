//! One value of every type the merge fuzzer drives, merged, validated and encoded together.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    Crdt, EnableWinsFlag, GCounter, HlcTimestamp, LwwRegister, MapCounter, MapLww, MvRegister,
    OrMap, OrSet, PNCounter, ValidationError,
};

/// A map of maps of counters: nesting, and counters removed at two levels.
pub(super) type Nested = OrMap<u8, OrMap<u8, MapCounter>>;

/// Every type the merge fuzzer drives, held once per replica (as state) and once per
/// (sender, receiver) pair (as the delta group not yet delivered).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Bundle {
    pub(super) set: OrSet<u8>,
    pub(super) map_sets: OrMap<u8, OrSet<u8>>,
    pub(super) map_counters: OrMap<u8, MapCounter>,
    pub(super) map_lww: OrMap<u8, MapLww<u8>>,
    pub(super) nested: Nested,
    pub(super) gcounter: GCounter,
    pub(super) pncounter: PNCounter,
    pub(super) lww: LwwRegister<u8>,
    pub(super) mv: MvRegister<u8>,
    pub(super) flag: EnableWinsFlag,
}

/// Calls `m!` with every field of a bundle, for the operations that treat them alike.
macro_rules! each_part {
    ($m:ident) => {
        $m!(
            set,
            map_sets,
            map_counters,
            map_lww,
            nested,
            gcounter,
            pncounter,
            lww,
            mv,
            flag
        )
    };
}

impl Bundle {
    pub(super) fn merge(&mut self, other: Bundle) {
        macro_rules! merge {
            ($($f:ident),*) => { $(self.$f.merge(other.$f);)* };
        }
        each_part!(merge);
    }

    /// Validates every part; the error names the part that failed.
    pub(super) fn validate(&self) -> Result<(), (&'static str, ValidationError)> {
        macro_rules! validate {
            ($($f:ident),*) => {
                $(self.$f.validate().map_err(|e| (stringify!($f), e))?;)*
            };
        }
        each_part!(validate);
        Ok(())
    }

    /// Each part encoded on its own, as a peer would ship it.
    pub(super) fn encode(&self) -> Vec<Vec<u8>> {
        macro_rules! encode {
            ($($f:ident),*) => { vec![$(encode(&self.$f)),*] };
        }
        each_part!(encode)
    }

    /// Decodes what [`encode`](Bundle::encode) wrote; every part must decode and validate.
    pub(super) fn decode(parts: &[Vec<u8>]) -> Bundle {
        let mut parts = parts.iter();
        let mut next = || parts.next().map_or(&[][..], |p| &p[..]);
        macro_rules! decode {
            ($($f:ident),*) => { Bundle { $($f: decode_valid(next())),* } };
        }
        each_part!(decode)
    }

    /// Every LWW timestamp held, for the receiving replica's clock to observe.
    pub(super) fn timestamps(&self) -> Vec<HlcTimestamp> {
        let mut out: Vec<HlcTimestamp> = self.lww.timestamp().copied().into_iter().collect();
        out.extend(
            self.map_lww
                .iter()
                .filter_map(|(_, r)| r.timestamp().copied()),
        );
        out
    }
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    match postcard::to_allocvec(value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("encoding a valid state failed: {e}"),
    }
}

pub(super) fn decode_valid<T: Crdt + DeserializeOwned>(bytes: &[u8]) -> T {
    let value: T = match postcard::from_bytes(bytes) {
        Ok(v) => v,
        Err(e) => panic!("a state this crate encoded does not decode: {e}"),
    };
    if let Err(e) = value.validate() {
        panic!("a state this crate encoded does not validate: {e}");
    }
    value
}
