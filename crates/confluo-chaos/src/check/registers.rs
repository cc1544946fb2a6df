//! Registers: strings written with SET (last writer wins by hybrid logical clock), hash fields
//! written with HSET (the same, per field), and MV registers (every concurrent write kept).
//!
//! Values are unique per run, so the final value names the write that made it. A write `S`
//! made at a node after write `W` was acknowledged there (or after a read there returned
//! `W`'s value) has `W` in its causal past, and so a larger timestamp: `W` can then not be
//! the final value. A write that was acknowledged and is not final must have lost to a
//! write that did not happen before it, or been removed by a remove that could have
//! observed it.

use crate::check::{Checker, Input, Verdict};
use crate::history::{Observed, Op, Record};
use crate::workload::HASH_FIELDS;

/// One register: a string key, or one field of a hash.
struct Register<'a> {
    key: &'a str,
    field: Option<&'a str>,
}

impl Register<'_> {
    /// The value `r` wrote to this register, if it wrote one.
    fn written<'r>(&self, r: &'r Record) -> Option<&'r str> {
        match (&r.op, self.field) {
            (Op::Set { value, .. }, None) => Some(value),
            (Op::Hset { field, value, .. }, Some(f)) if field == f => Some(value),
            (Op::MvSet { value, .. }, None) => Some(value),
            _ => None,
        }
    }

    /// Whether `r` removes this register's value.
    fn removes(&self, r: &Record) -> bool {
        match (&r.op, self.field) {
            (Op::Del { .. }, _) => true,
            (Op::Hdel { field, .. }, Some(f)) => field == f,
            _ => false,
        }
    }

    /// Whether read `r` saw `value` in this register.
    fn read_saw(&self, r: &Record, value: &str) -> bool {
        match (&r.outcome, self.field) {
            (crate::history::Outcome::Read(Observed::Text(Some(t))), None) => t == value,
            (crate::history::Outcome::Read(Observed::Siblings(s)), None) => {
                s.iter().any(|x| x == value)
            }
            (crate::history::Outcome::Read(Observed::Fields(m)), Some(f)) => {
                m.get(f).is_some_and(|x| x == value)
            }
            _ => false,
        }
    }

    /// Whether `o` (a value of the register's key) holds what `s` wrote, or (for a remove)
    /// shows the register removed.
    fn holds(&self, o: &Observed, s: &Record) -> bool {
        let value = self.written(s);
        match (o, self.field, value) {
            (Observed::Text(t), None, Some(v)) => t.as_deref() == Some(v),
            (Observed::Siblings(x), None, Some(v)) => x.iter().any(|y| y == v),
            (Observed::Fields(m), Some(f), Some(v)) => m.get(f).is_some_and(|y| y == v),
            // A remove: "held" when the other node shows nothing there.
            (Observed::Text(t), None, None) => t.is_none(),
            (Observed::Siblings(x), None, None) => x.is_empty(),
            (Observed::Fields(m), Some(f), None) => !m.contains_key(f),
            _ => false,
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
        match value {
            Observed::Text(t) if key.starts_with('r') => {
                let reg = Register { key, field: None };
                let finals: Vec<&str> = t.iter().map(String::as_str).collect();
                check_register(input, v, &reg, &finals, Checker::Registers, false);
            }
            Observed::Fields(fields) => {
                for f in HASH_FIELDS {
                    let reg = Register {
                        key,
                        field: Some(f),
                    };
                    let finals: Vec<&str> = fields.get(f).map(String::as_str).into_iter().collect();
                    // A missing field is the hashes checker's to explain.
                    if !finals.is_empty() {
                        check_register(input, v, &reg, &finals, Checker::Registers, false);
                    }
                }
            }
            Observed::Siblings(s) => {
                let reg = Register { key, field: None };
                let finals: Vec<&str> = s.iter().map(String::as_str).collect();
                check_register(input, v, &reg, &finals, Checker::MvRegisters, true);
            }
            _ => {}
        }
    }
}

/// `finals`: the final value (at most one for LWW) or siblings.
fn check_register(
    input: &Input<'_>,
    v: &mut Verdict,
    reg: &Register<'_>,
    finals: &[&str],
    checker: Checker,
    multi_value: bool,
) {
    let records: Vec<&Record> = input.history.of_key(reg.key).collect();
    for value in finals {
        let Some(w) = records
            .iter()
            .find(|r| r.outcome.may_have_happened() && reg.written(r) == Some(value))
        else {
            v.violation(
                Checker::Garbage,
                reg.key,
                format!("{} holds {value}, which no write wrote", reg.name()),
                vec![],
            );
            continue;
        };
        // Everything that happened after `w` at a node that had it, and replaced it.
        for s in &records {
            if s.id == w.id || !s.outcome.is_ok() || !(reg.written(s).is_some() || reg.removes(s)) {
                continue;
            }
            if observed(input, &records, reg, w, value, s) {
                if input.lost_with_wipe(s.node, s.start, reg.key, |o| reg.holds(o, s)) {
                    v.lost_with_wipe += 1;
                    continue;
                }
                v.violation(
                    checker,
                    reg.key,
                    format!(
                        "{} is {value} (#{} {}), but acknowledged #{} ({}) came after it at n{} and replaced it",
                        reg.name(),
                        w.id,
                        w.op,
                        s.id,
                        s.op,
                        s.node
                    ),
                    vec![w.id, s.id],
                );
            }
        }
    }
    // Acknowledged writes that are not final: something that did not happen before them
    // must have replaced them.
    for s in &records {
        let Some(value) = reg.written(s) else {
            continue;
        };
        if !s.outcome.is_ok() || finals.contains(&value) {
            continue;
        }
        if !multi_value && !finals.is_empty() {
            // Lost to the final write, which the loop above checked did not come before.
            continue;
        }
        let replaced = records.iter().any(|r| {
            r.id != s.id
                && (reg.written(r).is_some() || reg.removes(r))
                && r.may_take_effect_after(s.start)
                && !input.happened_before(r, s)
        });
        if replaced {
            continue;
        }
        if input.lost_with_wipe(s.node, s.start, reg.key, |o| reg.holds(o, s)) {
            v.lost_with_wipe += 1;
            continue;
        }
        v.violation(
            checker,
            reg.key,
            format!(
                "acknowledged #{} ({}) is not in {} ({finals:?}), and nothing that could follow it replaced it",
                s.id,
                s.op,
                reg.name()
            ),
            vec![s.id],
        );
    }
}

/// Whether `s` had `w` (which wrote `value`) in its causal past: `w` was acknowledged at
/// `s`'s node before `s` was sent, or a read there returned `value` before.
fn observed(
    input: &Input<'_>,
    records: &[&Record],
    reg: &Register<'_>,
    w: &Record,
    value: &str,
    s: &Record,
) -> bool {
    input.happened_before(w, s)
        || records
            .iter()
            .any(|r| reg.read_saw(r, value) && input.happened_before(r, s))
}

#[cfg(test)]
mod tests {
    use crate::check::Checker;
    use crate::check::testing::*;
    use crate::history::{Observed, Op, Outcome};

    fn set(v: &str) -> Op {
        Op::Set {
            key: "r0".into(),
            value: v.into(),
        }
    }

    fn text(v: &str) -> Observed {
        Observed::Text(Some(v.into()))
    }

    #[test]
    fn a_final_value_overwritten_later_at_the_same_node_is_a_violation() {
        let h = vec![
            rec(0, 0, set("v1"), 0, 10, ok()),
            rec(1, 0, set("v2"), 20, 30, ok()),
        ];
        let v = run(h.clone(), &[("r0", text("v1"))], &[]);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert_eq!(v.violations[0].checker, Checker::Registers);
        assert!(run(h, &[("r0", text("v2"))], &[]).violations.is_empty());
    }

    #[test]
    fn concurrent_writes_at_two_nodes_may_end_either_way() {
        let h = vec![
            rec(0, 0, set("v1"), 0, 10, ok()),
            rec(1, 1, set("v2"), 20, 30, ok()),
        ];
        assert!(
            run(h.clone(), &[("r0", text("v1"))], &[])
                .violations
                .is_empty()
        );
        assert!(run(h, &[("r0", text("v2"))], &[]).violations.is_empty());
    }

    #[test]
    fn a_write_after_a_read_of_the_old_value_must_win() {
        let h = vec![
            rec(0, 1, set("v1"), 0, 10, ok()),
            rec(
                1,
                0,
                Op::Read { key: "r0".into() },
                20,
                25,
                Outcome::Read(text("v1")),
            ),
            rec(2, 0, set("v2"), 30, 40, ok()),
        ];
        let v = run(h, &[("r0", text("v1"))], &[]);
        assert_eq!(v.violations.len(), 1, "{v:?}");
    }

    #[test]
    fn an_acknowledged_write_gone_with_no_delete_is_a_violation() {
        let h = vec![rec(0, 0, set("v1"), 0, 10, ok())];
        assert_eq!(
            run(h.clone(), &[("r0", Observed::Text(None))], &[])
                .violations
                .len(),
            1
        );
        let mut with_del = h;
        with_del.push(rec(1, 1, Op::Del { key: "r0".into() }, 5, 15, ok_n(1)));
        assert!(
            run(with_del, &[("r0", Observed::Text(None))], &[])
                .violations
                .is_empty()
        );
    }

    #[test]
    fn an_mv_sibling_dropped_without_a_later_write_is_a_violation() {
        let mv = |v: &str| Op::MvSet {
            key: "m0".into(),
            value: v.into(),
        };
        let h = vec![
            rec(0, 0, mv("a"), 0, 10, ok()),
            rec(1, 1, mv("b"), 0, 10, ok()),
        ];
        let both = Observed::Siblings(vec!["a".into(), "b".into()]);
        assert!(run(h.clone(), &[("m0", both)], &[]).violations.is_empty());
        let v = run(
            h.clone(),
            &[("m0", Observed::Siblings(vec!["a".into()]))],
            &[],
        );
        assert!(
            v.violations.is_empty(),
            "a can have observed b (it ended after b began): {v:?}"
        );
        let mut later = h;
        later[1].start = std::time::Duration::from_millis(20);
        later[1].end = std::time::Duration::from_millis(30);
        later[1].node = 0;
        let v = run(later, &[("m0", Observed::Siblings(vec!["a".into()]))], &[]);
        assert_eq!(
            v.violations.len(),
            2,
            "b came after a at n0, and b is gone: {v:?}"
        );
    }
}
