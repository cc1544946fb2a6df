//! Inbound handshakes in progress, capped per source and in total, sans-IO.
//!
//! A new connection is never refused for lack of room: it evicts an older pending handshake
//! instead, the oldest of its own source if that source is at its cap, otherwise the oldest of
//! the source holding the most. A flood from one address therefore only ever evicts itself
//! once a peer from elsewhere is pending, and a quiet flood cannot lock anyone out: whoever
//! connects last gets a slot for as long as nobody connects after it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

/// Where connections come from, for the per-source cap: an IPv4 address, or the /64 of an
/// IPv6 address (one host usually owns a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(o.get(..8).unwrap_or(&[0; 8]));
                    Self::V6Prefix(prefix)
                }
            },
        }
    }
}

/// Pending handshakes; `T` is what cancels one (dropping it must end the handshake).
#[derive(Debug)]
pub(crate) struct Pending<T> {
    total_cap: usize,
    per_source_cap: usize,
    next: u64,
    /// Oldest first: ids increase.
    entries: BTreeMap<u64, (Source, T)>,
    by_source: HashMap<Source, VecDeque<u64>>,
}

impl<T> Pending<T> {
    pub(crate) fn new(total_cap: usize, per_source_cap: usize) -> Self {
        Self {
            total_cap: total_cap.max(1),
            per_source_cap: per_source_cap.max(1),
            next: 0,
            entries: BTreeMap::new(),
            by_source: HashMap::new(),
        }
    }

    /// Registers a new handshake from `source`. Returns its id and the cancel handles of the
    /// handshakes evicted to make room (drop them outside any lock).
    pub(crate) fn insert(&mut self, source: Source, cancel: T) -> (u64, Vec<T>) {
        let mut evicted = Vec::new();
        let own = self.by_source.get(&source).map_or(0, VecDeque::len);
        if own >= self.per_source_cap {
            evicted.extend(self.evict_oldest_of(source));
        } else if self.entries.len() >= self.total_cap
            && let Some(busiest) = self.busiest()
        {
            evicted.extend(self.evict_oldest_of(busiest));
        }
        let id = self.next;
        self.next += 1;
        self.entries.insert(id, (source, cancel));
        self.by_source.entry(source).or_default().push_back(id);
        (id, evicted)
    }

    /// The handshake `id` ended (completed, failed or evicted); forgetting an unknown id is a
    /// no-op.
    pub(crate) fn remove(&mut self, id: u64) -> Option<T> {
        let (source, cancel) = self.entries.remove(&id)?;
        if let Some(ids) = self.by_source.get_mut(&source) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_source.remove(&source);
            }
        }
        Some(cancel)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sources tracked (bounded by the total cap: a source with nothing pending is forgotten).
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.by_source.len()
    }

    /// The source with the most pending handshakes; on a tie, the one whose oldest is oldest.
    fn busiest(&self) -> Option<Source> {
        self.by_source
            .iter()
            .max_by_key(|(_, ids)| (ids.len(), std::cmp::Reverse(ids.front().copied())))
            .map(|(source, _)| *source)
    }

    fn evict_oldest_of(&mut self, source: Source) -> Option<T> {
        let oldest = *self.by_source.get(&source)?.front()?;
        self.remove(oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Source {
        s.parse::<IpAddr>().unwrap().into()
    }

    #[test]
    fn a_flood_from_one_address_evicts_only_itself() {
        let mut p = Pending::new(8, 4);
        let attacker = ip("192.0.2.66");
        let peer = ip("198.51.100.2");
        let (peer_id, _) = p.insert(peer, "peer");
        for i in 0..10_000 {
            let (_, evicted) = p.insert(attacker, "flood");
            if i >= 4 {
                assert_eq!(evicted, ["flood"], "the attacker's own oldest goes");
            }
        }
        assert_eq!(p.len(), 5);
        assert_eq!(
            p.remove(peer_id),
            Some("peer"),
            "the peer's handshake survived"
        );
    }

    #[test]
    fn a_spread_flood_evicts_the_busiest_source_first() {
        let mut p = Pending::new(4, 4);
        p.insert(ip("10.0.0.1"), 1);
        p.insert(ip("10.0.0.1"), 2);
        p.insert(ip("10.0.0.2"), 3);
        p.insert(ip("10.0.0.3"), 4);
        let (_, evicted) = p.insert(ip("10.0.0.4"), 5);
        assert_eq!(evicted, [1], "oldest of the source with the most");
        let (_, evicted) = p.insert(ip("10.0.0.5"), 6);
        assert_eq!(evicted, [2], "10.0.0.1 still has the most");
        let (_, evicted) = p.insert(ip("10.0.0.6"), 7);
        assert_eq!(evicted, [3], "a tie: the oldest goes");
    }

    #[test]
    fn everyone_from_one_address_the_newest_always_gets_a_slot() {
        // On loopback the peer and the flood share an address: the peer, connecting after the
        // flood, still gets in.
        let mut p = Pending::new(256, 16);
        let lo = ip("127.0.0.1");
        for _ in 0..10_000 {
            p.insert(lo, ());
        }
        let (id, evicted) = p.insert(lo, ());
        assert_eq!(evicted.len(), 1);
        assert!(p.remove(id).is_some());
        assert_eq!(p.len(), 15);
    }

    #[test]
    fn state_is_bounded_by_the_caps() {
        let mut p = Pending::new(64, 8);
        for i in 0..5_000u32 {
            let [a, b, c, d] = i.to_be_bytes();
            p.insert(Source::V4([10, a.max(b), c, d]), i);
            assert!(p.len() <= 64 && p.sources() <= 64);
        }
        // IPv6 addresses of one /64 are one source; mapped IPv4 is IPv4.
        assert_eq!(ip("2001:db8::1"), ip("2001:db8::ffff:1"));
        assert_ne!(ip("2001:db8::1"), ip("2001:db8:0:1::1"));
        assert_eq!(ip("::ffff:127.0.0.1"), ip("127.0.0.1"));
    }

    #[test]
    fn removing_twice_or_an_unknown_id_is_harmless() {
        let mut p = Pending::new(2, 2);
        let (id, _) = p.insert(ip("127.0.0.1"), ());
        assert!(p.remove(id).is_some());
        assert!(p.remove(id).is_none());
        assert!(p.remove(99).is_none());
        assert_eq!((p.len(), p.sources()), (0, 0));
    }
}
