//! Sets and hash fields: an acknowledged add (SADD of a new member, HSET or HINCRBY of a
//! field) is in the final state unless a remove that could have observed it exists: an SREM
//! (HDEL) of it or a DEL of the key that can have taken effect after the add was sent. Members
//! are unique per run, so "observed" is exact on the member side.

use crate::check::{Checker, Input, Verdict};
use crate::history::{Observed, Op, Record};

pub(super) fn check(input: &Input<'_>, v: &mut Verdict) {
    for (key, value) in input.state {
        match value {
            Observed::Members(members) => {
                let present = |r: &Record| match &r.op {
                    Op::Sadd { member, .. } => Some(members.contains(member)),
                    _ => None,
                };
                let removes = |add: &Record, r: &Record| match (&add.op, &r.op) {
                    (Op::Sadd { member: a, .. }, Op::Srem { member: b, .. }) => a == b,
                    (_, Op::Del { .. }) => true,
                    _ => false,
                };
                // SADD answering 0 wrote nothing: the member was there already, by an
                // earlier add that is checked itself.
                let wrote = |r: &Record| r.outcome == crate::history::Outcome::Ok(Some(1));
                adds_survive(input, v, Checker::Sets, key, present, removes, wrote);
                for m in members {
                    let written = input.history.of_key(key).any(|r| {
                        r.outcome.may_have_happened()
                            && matches!(&r.op, Op::Sadd { member, .. } if member == m)
                    });
                    if !written {
                        v.violation(
                            Checker::Garbage,
                            key,
                            format!("{key} holds member {m}, which no SADD wrote"),
                            vec![],
                        );
                    }
                }
            }
            Observed::Fields(fields) => {
                let present = |r: &Record| match &r.op {
                    Op::Hset { field, .. } | Op::Hincrby { field, .. } => {
                        Some(fields.contains_key(field))
                    }
                    _ => None,
                };
                let removes = |add: &Record, r: &Record| match (&add.op, &r.op) {
                    (
                        Op::Hset { field: a, .. } | Op::Hincrby { field: a, .. },
                        Op::Hdel { field: b, .. },
                    ) => a == b,
                    (_, Op::Del { .. }) => true,
                    _ => false,
                };
                adds_survive(input, v, Checker::Hashes, key, present, removes, |_| true);
            }
            _ => {}
        }
    }
}

/// For every acknowledged add of `key` (`present` says whether a record is an add, and
/// whether what it added is in the final state), checks it is there or explained.
fn adds_survive(
    input: &Input<'_>,
    v: &mut Verdict,
    checker: Checker,
    key: &str,
    present: impl Fn(&Record) -> Option<bool>,
    removes: impl Fn(&Record, &Record) -> bool,
    wrote: impl Fn(&Record) -> bool,
) {
    for add in input.history.of_key(key) {
        if !add.outcome.is_ok() || !wrote(add) || present(add) != Some(false) {
            continue;
        }
        let removed = input
            .history
            .of_key(key)
            .any(|r| removes(add, r) && r.may_take_effect_after(add.start));
        if removed {
            continue;
        }
        let held = |o: &Observed| match (o, &add.op) {
            (Observed::Members(m), Op::Sadd { member, .. }) => m.contains(member),
            (Observed::Fields(f), Op::Hset { field, .. } | Op::Hincrby { field, .. }) => {
                f.contains_key(field)
            }
            _ => false,
        };
        if input.lost_with_wipe(add.node, add.start, key, held) {
            v.lost_with_wipe += 1;
            continue;
        }
        v.violation(
            checker,
            key,
            format!(
                "acknowledged #{} ({}) is not in the final state, and no remove could have observed it",
                add.id, add.op
            ),
            vec![add.id],
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::check::testing::*;
    use crate::check::{Checker, Down};
    use crate::history::{Observed, Op};

    fn sadd(m: &str) -> Op {
        Op::Sadd {
            key: "s0".into(),
            member: m.into(),
        }
    }

    fn members(m: &[&str]) -> Observed {
        Observed::Members(m.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>())
    }

    #[test]
    fn an_acknowledged_add_missing_without_a_remove_is_a_violation() {
        let v = run(
            vec![rec(0, 0, sadd("a"), 0, 10, ok_n(1))],
            &[("s0", members(&[]))],
            &[],
        );
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert_eq!(v.violations[0].checker, Checker::Sets);
    }

    #[test]
    fn a_remove_sent_after_the_add_explains_it_and_one_answered_before_does_not() {
        let srem = Op::Srem {
            key: "s0".into(),
            member: "a".into(),
        };
        let before = rec(1, 1, srem.clone(), 0, 5, ok_n(0));
        let add = rec(0, 0, sadd("a"), 6, 10, ok_n(1));
        let v = run(vec![add.clone(), before], &[("s0", members(&[]))], &[]);
        assert_eq!(
            v.violations.len(),
            1,
            "a remove answered before the add: {v:?}"
        );
        let late_unknown = rec(1, 1, srem, 0, 5, unknown());
        let v = run(vec![add, late_unknown], &[("s0", members(&[]))], &[]);
        assert!(
            v.violations.is_empty(),
            "an unknown remove may land later: {v:?}"
        );
    }

    #[test]
    fn an_add_lost_with_its_wiped_node_is_counted_apart() {
        let downs = [Down {
            node: 0,
            at: std::time::Duration::from_millis(20),
            wiped: true,
        }];
        let v = run(
            vec![rec(0, 0, sadd("a"), 0, 10, ok_n(1))],
            &[("s0", members(&[]))],
            &downs,
        );
        assert!(v.violations.is_empty());
        assert_eq!(v.lost_with_wipe, 1);
    }

    #[test]
    fn an_add_another_node_held_when_its_node_was_wiped_must_survive() {
        let at = std::time::Duration::from_millis(20);
        let downs = [Down {
            node: 0,
            at,
            wiped: true,
        }];
        let snapshot = |held: &[&str]| crate::check::WipeSnapshot {
            node: 0,
            at,
            others: vec![(1, [("s0".to_string(), members(held))].into_iter().collect())],
        };
        let add = vec![rec(0, 0, sadd("a"), 0, 10, ok_n(1))];
        let state = [("s0", members(&[]))];
        let v = run_with(add.clone(), &state, &downs, &[snapshot(&["a"])]);
        assert_eq!(v.violations.len(), 1, "n1 had it: {v:?}");
        let v = run_with(add, &state, &downs, &[snapshot(&[])]);
        assert!(v.violations.is_empty());
        assert_eq!(v.lost_with_wipe, 1, "only the wiped node had it");
    }

    #[test]
    fn a_write_handed_on_from_wipe_to_wipe_must_survive() {
        let ms = std::time::Duration::from_millis;
        let downs = [
            Down {
                node: 0,
                at: ms(20),
                wiped: true,
            },
            Down {
                node: 1,
                at: ms(40),
                wiped: true,
            },
        ];
        let snap = |node: usize, at: u64, other: usize, held: &[&str]| crate::check::WipeSnapshot {
            node,
            at: ms(at),
            others: vec![(
                other,
                [("s0".to_string(), members(held))].into_iter().collect(),
            )],
        };
        let add = vec![rec(0, 0, sadd("a"), 0, 10, ok_n(1))];
        let state = [("s0", members(&[]))];
        let handed_on = [snap(0, 20, 1, &["a"]), snap(1, 40, 2, &["a"])];
        let v = run_with(add.clone(), &state, &downs, &handed_on);
        assert_eq!(
            v.violations.len(),
            1,
            "n2 had it and kept its directory: {v:?}"
        );
        let gone = [snap(0, 20, 1, &["a"]), snap(1, 40, 2, &[])];
        let v = run_with(add, &state, &downs, &gone);
        assert!(v.violations.is_empty(), "{v:?}");
        assert_eq!(v.lost_with_wipe, 1, "its last holder lost its directory");
    }

    #[test]
    fn a_member_nobody_added_is_garbage() {
        let v = run(vec![], &[("s0", members(&["zz"]))], &[]);
        assert_eq!(v.violations[0].checker, Checker::Garbage);
    }

    #[test]
    fn an_acknowledged_hash_field_missing_without_a_remove_is_a_violation() {
        let hset = Op::Hset {
            key: "h0".into(),
            field: "f0".into(),
            value: "v1".into(),
        };
        let v = run(
            vec![rec(0, 0, hset, 0, 10, ok_n(1))],
            &[("h0", Observed::Fields(BTreeMap::new()))],
            &[],
        );
        assert!(
            v.violations.iter().any(|x| x.checker == Checker::Hashes),
            "{v:?}"
        );
    }
}
