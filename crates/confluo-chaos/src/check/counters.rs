//! Counters (`c…` keys: INCRBY only, never deleted): the final value lies within
//! [acknowledged sum, acknowledged sum + unknown sum] (increments are positive), and so
//! equals the acknowledged sum when no increment timed out. Increments acknowledged by a
//! node that later lost its directory may be missing; that shortfall is counted apart.

use crate::check::{Checker, Input, Verdict};
use crate::history::{Observed, Op, Outcome};

pub(super) fn check(input: &Input<'_>, v: &mut Verdict) {
    for (key, value) in input.state {
        let Observed::Text(text) = value else {
            continue;
        };
        if !key.starts_with('c') {
            continue;
        }
        let Some(final_value) = parse(text) else {
            v.violation(
                Checker::Counters,
                key,
                format!("{key} is {text:?}, not an integer"),
                vec![],
            );
            continue;
        };
        let (mut acked, mut unknown, mut wipeable) = (0i64, 0i64, 0i64);
        for r in input.history.of_key(key) {
            let Op::Incrby { by, .. } = r.op else {
                continue;
            };
            match r.outcome {
                Outcome::Ok(_) => {
                    acked += by;
                    if input.wiped_after(r.node, r.start) {
                        wipeable += by;
                    }
                }
                Outcome::Unknown(_) => unknown += by,
                _ => continue,
            }
        }
        // Counters only grow: every value a node showed is a floor for the final value,
        // unless that node lost its directory afterwards with no other node holding as
        // much (what it showed may have gone with it).
        let floor = shown(input, key)
            .filter(|&(node, at, shown)| {
                let at_least = move |o: &Observed| matches!(o, Observed::Text(t) if parse(t).is_some_and(|n| n >= shown));
                input.survives(node, at, key, &at_least)
            })
            .max_by_key(|(_, _, value)| *value);
        if let Some((node, at, shown)) = floor {
            if final_value < shown {
                v.violation(
                    Checker::Counters,
                    key,
                    format!(
                        "{key} is {final_value}, below the {shown} n{node} showed at {:.3}s (it kept its directory)",
                        at.as_secs_f64()
                    ),
                    vec![],
                );
                continue;
            }
        }
        if final_value > acked + unknown {
            v.violation(
                Checker::Counters,
                key,
                format!(
                    "{key} is {final_value}, above the acknowledged {acked} plus the unknown {unknown}"
                ),
                vec![],
            );
        } else if final_value < acked - wipeable {
            v.violation(
                Checker::Counters,
                key,
                format!(
                    "{key} is {final_value}, below the acknowledged {acked} (of which {wipeable} went to nodes that lost their directory later)"
                ),
                vec![],
            );
        } else if final_value < acked {
            v.counter_amount_lost_with_wipe += acked - final_value;
        }
    }
}

/// (node, time, value) for every value of `key` a node showed: reads, INCRBY answers, and
/// the snapshots taken at wipes.
fn shown<'a>(
    input: &'a Input<'_>,
    key: &'a str,
) -> impl Iterator<Item = (usize, std::time::Duration, i64)> + 'a {
    let answered = input
        .history
        .of_key(key)
        .filter_map(|r| match (&r.op, &r.outcome) {
            (Op::Incrby { .. }, Outcome::Ok(Some(n))) => Some((r.node, r.end, *n)),
            (Op::Read { .. }, Outcome::Read(Observed::Text(t))) => {
                parse(t).map(|n| (r.node, r.end, n))
            }
            _ => None,
        });
    let snapshots = input.snapshots.iter().flat_map(move |s| {
        s.others
            .iter()
            .filter_map(move |(node, state)| match state.get(key) {
                Some(Observed::Text(t)) => parse(t).map(|n| (*node, s.at, n)),
                _ => None,
            })
    });
    answered.chain(snapshots)
}

fn parse(text: &Option<String>) -> Option<i64> {
    match text {
        None => Some(0),
        Some(t) => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use crate::check::testing::*;
    use crate::check::{Checker, Down};
    use crate::history::{Observed, Op};

    fn incr(by: i64) -> Op {
        Op::Incrby {
            key: "c0".into(),
            by,
        }
    }

    fn value(n: i64) -> Observed {
        Observed::Text(Some(n.to_string()))
    }

    #[test]
    fn a_counter_is_between_the_acknowledged_and_the_possible_sums() {
        let h = vec![
            rec(0, 0, incr(3), 0, 10, ok_n(3)),
            rec(1, 1, incr(4), 0, 10, unknown()),
        ];
        for (n, fine) in [(2, false), (3, true), (7, true), (8, false)] {
            let v = run(h.clone(), &[("c0", value(n))], &[]);
            assert_eq!(v.violations.is_empty(), fine, "{n}: {v:?}");
            if !fine {
                assert_eq!(v.violations[0].checker, Checker::Counters);
            }
        }
    }

    #[test]
    fn a_counter_below_what_a_surviving_node_showed_is_a_violation() {
        let h = vec![
            rec(0, 0, incr(3), 0, 10, ok_n(3)),
            rec(
                1,
                1,
                Op::Read { key: "c0".into() },
                20,
                30,
                crate::history::Outcome::Read(value(3)),
            ),
        ];
        let downs = [Down {
            node: 0,
            at: std::time::Duration::from_millis(50),
            wiped: true,
        }];
        let v = run(h, &[("c0", Observed::Text(None))], &downs);
        assert_eq!(
            v.violations.len(),
            1,
            "n1 showed 3 and kept its directory: {v:?}"
        );
    }

    #[test]
    fn increments_lost_with_a_wiped_node_are_counted_apart() {
        let h = vec![rec(0, 0, incr(3), 0, 10, ok_n(3))];
        let downs = [Down {
            node: 0,
            at: std::time::Duration::from_millis(50),
            wiped: true,
        }];
        let v = run(h, &[("c0", Observed::Text(None))], &downs);
        assert!(v.violations.is_empty());
        assert_eq!(v.counter_amount_lost_with_wipe, 3);
    }
}
