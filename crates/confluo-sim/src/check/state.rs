//! The final state: identical everywhere, and exactly the replay of the updates it covers.

use super::*;

pub(super) fn check_convergence(nodes: &[&Node], v: &mut Vec<Violation>) {
    let Some(first) = nodes.first() else { return };
    let bytes = first.encode_state();
    for n in &nodes[1..] {
        let same_value = n.keyspace() == first.keyspace();
        let same_bytes = n.encode_state() == bytes;
        if !same_value || !same_bytes || n.digest() != first.digest() {
            let why = values_differ(first.keyspace(), n.keyspace())
                .unwrap_or_else(|| "same values, different encoding".into());
            v.push(Violation {
                checker: Checker::Convergence,
                detail: format!(
                    "node {} and node {} differ after heal (digest {:#x} vs {:#x}): {why}",
                    first.id(),
                    n.id(),
                    first.digest(),
                    n.digest()
                ),
                nodes: vec![first.id(), n.id()],
                key: None,
            });
        }
    }
}

/// The final state is exactly the replay of the durable updates it claims to have, and it
/// claims every update that is durable on a disk that still exists.
pub(super) fn check_replay(history: &History, ks: &Keyspace, v: &mut Vec<Violation>) {
    let vv = ks.version_vector();
    let replayed = replay(history, vv);
    if let Some(diff) = values_differ(&replayed, ks) {
        v.push(Violation {
            checker: Checker::LostWrite,
            detail: format!("final state is not the replay of the updates it covers: {diff}"),
            nodes: Vec::new(),
            key: None,
        });
    }
    for ((r, c), rec) in &history.updates {
        if rec.holders != 0 && vv.get(*r) < *c {
            v.push(Violation {
                checker: Checker::LostWrite,
                detail: format!(
                    "update r{}:{c} is durable at nodes {:#b} but missing from the final state",
                    r.0, rec.holders
                ),
                nodes: holders(rec.holders),
                key: None,
            });
            return;
        }
    }
}
