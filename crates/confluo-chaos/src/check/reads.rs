//! Monotonic reads: at one node, a counter never reads less than it read before (a read
//! that ended before this one began), unless the node lost its directory in between.
//! Counters only grow, so any decrease is a read that went backwards in the node's causal
//! past. `INCRBY`'s answer is a read too: the value at the node just after the increment.
//! A kill -9 in between is not excused: what a node showed must be what it keeps.
//!
//! Sets likewise: a member a read at a node returned is in every later read there, unless
//! a remove of it (SREM, DEL) was sent before that later read ended.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::check::{Checker, Input, Verdict};
use crate::history::{Observed, Op, Outcome, Record};

/// A value a node showed: (request start, request end, value, record id).
type Shown = (Duration, Duration, i64, usize);

pub(super) fn check(input: &Input<'_>, v: &mut Verdict) {
    counters(input, v);
    sets(input, v);
}

fn counters(input: &Input<'_>, v: &mut Verdict) {
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

fn sets(input: &Input<'_>, v: &mut Verdict) {
    let mut reads: BTreeMap<(usize, &str), Vec<&Record>> = BTreeMap::new();
    for r in &input.history.records {
        if let (Op::Read { key }, Outcome::Read(Observed::Members(_))) = (&r.op, &r.outcome) {
            reads.entry((r.node, key)).or_default().push(r);
        }
    }
    for ((node, key), mut list) in reads {
        list.sort_by_key(|r| r.end);
        'later: for (i, later) in list.iter().enumerate() {
            let Outcome::Read(Observed::Members(now)) = &later.outcome else {
                continue;
            };
            for earlier in list[..i].iter().filter(|e| e.end < later.start) {
                if input.down_between(node, earlier.start, later.end, true) {
                    continue;
                }
                let Outcome::Read(Observed::Members(then)) = &earlier.outcome else {
                    continue;
                };
                for m in then.difference(now) {
                    let removed = input.history.of_key(key).any(|r| {
                        r.outcome.may_have_happened()
                            && r.start < later.end
                            && match &r.op {
                                Op::Srem { member, .. } => member == m,
                                Op::Del { .. } => true,
                                _ => false,
                            }
                    });
                    if !removed {
                        v.violation(
                            Checker::MonotonicReads,
                            key,
                            format!(
                                "n{node} read {key} without {m} at #{}, after reading it at #{}, and nothing removed it",
                                later.id, earlier.id
                            ),
                            vec![earlier.id, later.id],
                        );
                        continue 'later;
                    }
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

    #[test]
    fn a_member_that_vanishes_from_a_node_with_no_remove_is_a_violation() {
        let r = || Op::Read { key: "s0".into() };
        let read = |m: &[&str]| {
            Outcome::Read(Observed::Members(m.iter().map(|s| s.to_string()).collect()))
        };
        let h = vec![
            rec(0, 1, r(), 0, 10, read(&["a"])),
            rec(1, 1, r(), 20, 30, read(&[])),
        ];
        let state: [(&str, Observed); 0] = [];
        let v = run(h.clone(), &state, &[]);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert_eq!(v.violations[0].checker, Checker::MonotonicReads);
        let mut removed = h;
        removed.push(rec(
            2,
            0,
            Op::Srem {
                key: "s0".into(),
                member: "a".into(),
            },
            15,
            18,
            ok_n(1),
        ));
        assert!(run(removed, &state, &[]).violations.is_empty());
    }
}
