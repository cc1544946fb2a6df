//! Monotonic reads: at one node, a counter never reads less than it read before (a read
//! that ended before this one began), unless the node lost its directory in between.
//! Counters only grow, so any decrease is a read that went backwards in the node's causal
//! past. `INCRBY`'s answer is a read too: the value at the node just after the increment.
//! A kill -9 in between is not excused: what a node showed must be what it keeps.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::check::{Checker, Input, Verdict};
use crate::history::{Observed, Op, Outcome};

/// A value a node showed: (request start, request end, value, record id).
type Shown = (Duration, Duration, i64, usize);

pub(super) fn check(input: &Input<'_>, v: &mut Verdict) {
    let mut seen: BTreeMap<(usize, &str), Vec<Shown>> = BTreeMap::new();
    for r in &input.history.records {
        let key = r.op.key();
        if !key.starts_with('c') {
            continue;
        }
        let value = match (&r.op, &r.outcome) {
            (Op::Read { .. }, Outcome::Read(Observed::Text(t))) => match t {
                None => 0,
                Some(t) => match t.parse() {
                    Ok(n) => n,
                    Err(_) => continue,
                },
            },
            (Op::Incrby { .. }, Outcome::Ok(Some(n))) => *n,
            _ => continue,
        };
        seen.entry((r.node, key))
            .or_default()
            .push((r.start, r.end, value, r.id));
    }
    for ((node, key), mut obs) in seen {
        obs.sort_by_key(|o| o.1);
        for (i, later) in obs.iter().enumerate() {
            // The largest value read before `later` began, since the last wipe.
            let earlier = obs[..i]
                .iter()
                .filter(|e| e.1 < later.0 && !input.down_between(node, e.0, later.1, true))
                .max_by_key(|e| e.2);
            if let Some(e) = earlier {
                if later.2 < e.2 {
                    v.violation(
                        Checker::MonotonicReads,
                        key,
                        format!(
                            "n{node} read {key} = {} at #{} after reading {} at #{}",
                            later.2, later.3, e.2, e.3
                        ),
                        vec![e.3, later.3],
                    );
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::testing::*;
    use crate::check::{Checker, Down};
    use crate::history::{Observed, Op, Outcome};

    fn read(n: i64) -> Outcome {
        Outcome::Read(Observed::Text(Some(n.to_string())))
    }

    #[test]
    fn a_read_that_sees_less_than_an_earlier_read_at_the_node_is_a_violation() {
        let r = || Op::Read { key: "c0".into() };
        let h = vec![
            rec(0, 1, r(), 0, 10, read(5)),
            rec(1, 1, r(), 20, 30, read(4)),
        ];
        // No final state: the counters checker has nothing to say here.
        let state: [(&str, Observed); 0] = [];
        let v = run(h.clone(), &state, &[]);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert_eq!(v.violations[0].checker, Checker::MonotonicReads);
        let other_node = vec![
            rec(0, 1, r(), 0, 10, read(5)),
            rec(1, 2, r(), 20, 30, read(4)),
        ];
        assert!(run(other_node, &state, &[]).violations.is_empty());
        let wiped = [Down {
            node: 1,
            at: std::time::Duration::from_millis(15),
            wiped: true,
        }];
        assert!(run(h, &state, &wiped).violations.is_empty());
    }
}
