//! Counters: the `c…` keys (INCRBY only) and the `n` field of `h0` (HINCRBY only, and `h0`
//! is never deleted). The final value lies within [acknowledged sum, acknowledged sum +
//! unknown sum] (increments are positive), and so equals the acknowledged sum when no
//! increment timed out. Increments acknowledged by a node that later lost its directory may
//! be missing; that shortfall is counted apart.

use crate::check::{Checker, Input, Verdict};
use crate::history::{Observed, Op, Outcome, Record};
use crate::workload::COUNTER_FIELD;

/// A counter: a key's, or a hash field's.
#[derive(Clone, Copy)]
struct Counter<'a> {
    key: &'a str,
    field: Option<&'a str>,
}

impl Counter<'_> {
    /// Its value in a read of its key (`None`: not of its shape; 0 if absent).
    fn value_in(&self, o: &Observed) -> Option<i64> {
        match (o, self.field) {
            (Observed::Text(t), None) => parse(t),
            (Observed::Fields(m), Some(f)) => parse(&m.get(f).cloned()),
            _ => None,
        }
    }

    /// The increment `r` asked for, if it increments this counter.
    fn increment(&self, r: &Record) -> Option<i64> {
        match (&r.op, self.field) {
            (Op::Incrby { by, .. }, None) => Some(*by),
            (Op::Hincrby { field, by, .. }, Some(f)) if field == f => Some(*by),
            _ => None,
        }
    }

    /// The value `r` saw at its node: a read's, or an increment's answer.
    fn shown_by(&self, r: &Record) -> Option<i64> {
        match (&r.op, &r.outcome) {
            (Op::Read { .. }, Outcome::Read(o)) => self.value_in(o),
            (_, Outcome::Ok(Some(n))) if self.increment(r).is_some() => Some(*n),
            _ => None,
        }
    }

    fn name(&self) -> String {
        match self.field {
            None => self.key.to_string(),
            Some(f) => format!("{} field {f}", self.key),
        }
    }
}

pub(super) fn check(input: &Input<'_>, v: &mut Verdict) {
    for (key, value) in input.state {
        let counter = match value {
            Observed::Text(_) if key.starts_with('c') => Counter { key, field: None },
            Observed::Fields(_) if key == "h0" => Counter {
                key,
                field: Some(COUNTER_FIELD),
            },
            _ => continue,
        };
        let Some(final_value) = counter.value_in(value) else {
            v.violation(
                Checker::Counters,
                key,
                format!("{} is {value}, not an integer", counter.name()),
                vec![],
            );
            continue;
        };
        check_one(input, v, counter, final_value);
    }
}

fn check_one(input: &Input<'_>, v: &mut Verdict, counter: Counter<'_>, final_value: i64) {
    let (key, name) = (counter.key, counter.name());
    let (mut acked, mut unknown, mut wipeable) = (0i64, 0i64, 0i64);
    for r in input.history.of_key(key) {
        let Some(by) = counter.increment(r) else {
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
            _ => {}
        }
    }
    // Counters only grow: every value a node showed is a floor for the final value, unless
    // that node lost its directory afterwards with no other node holding as much (what it
    // showed may have gone with it).
    let floor = shown(input, counter)
        .filter(|&(node, at, shown)| {
            let at_least = move |o: &Observed| counter.value_in(o).is_some_and(|n| n >= shown);
            input.survives(node, at, key, &at_least)
        })
        .max_by_key(|(_, _, value)| *value);
    if let Some((node, at, shown)) = floor {
        if final_value < shown {
            v.violation(
                Checker::Counters,
                key,
                format!(
                    "{name} is {final_value}, below the {shown} n{node} showed at {:.3}s (a copy that must survive)",
                    at.as_secs_f64()
                ),
                vec![],
            );
            return;
        }
    }
    if final_value > acked + unknown {
        v.violation(
            Checker::Counters,
            key,
            format!(
                "{name} is {final_value}, above the acknowledged {acked} plus the unknown {unknown}"
            ),
            vec![],
        );
    } else if final_value < acked - wipeable {
        v.violation(
            Checker::Counters,
            key,
            format!(
                "{name} is {final_value}, below the acknowledged {acked} (of which {wipeable} went to nodes that lost their directory later)"
            ),
            vec![],
        );
    } else if final_value < acked {
        v.counter_amount_lost_with_wipe += acked - final_value;
    }
}

/// (node, time, value) for every value of the counter a node showed: reads, increments'
/// answers, and the snapshots taken at wipes.
fn shown<'a>(
    input: &'a Input<'_>,
    counter: Counter<'a>,
) -> impl Iterator<Item = (usize, std::time::Duration, i64)> + 'a {
    let answered = input
        .history
        .of_key(counter.key)
        .filter_map(move |r| counter.shown_by(r).map(|n| (r.node, r.end, n)));
    let snapshots = input.snapshots.iter().flat_map(move |s| {
        s.others.iter().filter_map(move |(node, state)| {
            let n = counter.value_in(state.get(counter.key)?)?;
            Some((*node, s.at, n))
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
    fn the_counter_field_of_h0_is_checked_like_a_counter_key() {
        let hincr = Op::Hincrby {
            key: "h0".into(),
            field: "n".into(),
            by: 4,
        };
        let fields = |n: Option<i64>| {
            Observed::Fields(
                n.map(|n| ("n".to_string(), n.to_string()))
                    .into_iter()
                    .collect(),
            )
        };
        let h = vec![rec(0, 0, hincr, 0, 10, ok_n(4))];
        assert!(
            run(h.clone(), &[("h0", fields(Some(4)))], &[])
                .violations
                .is_empty()
        );
        let v = run(h, &[("h0", fields(Some(2)))], &[]);
        assert!(
            v.violations.iter().any(|x| x.checker == Checker::Counters),
            "{v:?}"
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
