//! Rows of the comparison and their two output formats: a markdown table and JSON lines.

use std::fmt::Write as _;

/// One measured workload.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// A time (median nanoseconds per unit of work) on each side; lower is better.
    Time {
        /// The workload's name.
        workload: String,
        /// confluo's median.
        confluo_ns: f64,
        /// `crdts`' median.
        crdts_ns: f64,
    },
    /// A size in bytes on each side; lower is better.
    Bytes {
        /// The workload's name.
        workload: String,
        /// confluo's bytes.
        confluo_bytes: f64,
        /// `crdts`' bytes.
        crdts_bytes: f64,
    },
}

impl Row {
    /// The workload's name.
    pub fn workload(&self) -> &str {
        match self {
            Row::Time { workload, .. } | Row::Bytes { workload, .. } => workload,
        }
    }

    /// For times, how many times faster confluo is (`crdts / confluo`); for sizes, confluo's
    /// bytes as a fraction of `crdts`' (`confluo / crdts`).
    pub fn ratio(&self) -> f64 {
        match *self {
            Row::Time {
                confluo_ns,
                crdts_ns,
                ..
            } => crdts_ns / confluo_ns,
            Row::Bytes {
                confluo_bytes,
                crdts_bytes,
                ..
            } => confluo_bytes / crdts_bytes,
        }
    }

    /// The row as one JSON object.
    pub fn json(&self) -> String {
        let name = escape(self.workload());
        match *self {
            Row::Time {
                confluo_ns,
                crdts_ns,
                ..
            } => format!(
                "{{\"workload\": \"{name}\", \"confluo_ns\": {}, \"crdts_ns\": {}, \"speedup\": {:.3}}}",
                number(confluo_ns),
                number(crdts_ns),
                self.ratio()
            ),
            Row::Bytes {
                confluo_bytes,
                crdts_bytes,
                ..
            } => format!(
                "{{\"workload\": \"{name}\", \"confluo_bytes\": {}, \"crdts_bytes\": {}, \"ratio\": {:.3}}}",
                number(confluo_bytes),
                number(crdts_bytes),
                self.ratio()
            ),
        }
    }
}

/// An integer when the value is one (or large), else two decimals: JSON either way.
fn number(x: f64) -> String {
    if !x.is_finite() {
        return "null".to_owned();
    }
    if x >= 1000.0 || x.fract() == 0.0 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.2}")
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A duration in nanoseconds, in the unit that reads best.
pub fn human_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// A byte count, in the unit that reads best.
pub fn human_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.2} B")
    }
}

/// The rows as a markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | confluo median | crdts median | ratio |\n|---|---:|---:|---:|\n",
    );
    for row in rows {
        let (a, b, ratio) = match *row {
            Row::Time {
                confluo_ns,
                crdts_ns,
                ..
            } => (
                human_ns(confluo_ns),
                human_ns(crdts_ns),
                format!("{:.1}x faster", row.ratio()),
            ),
            Row::Bytes {
                confluo_bytes,
                crdts_bytes,
                ..
            } => (
                human_bytes(confluo_bytes),
                human_bytes(crdts_bytes),
                format!("{:.2}x the bytes", row.ratio()),
            ),
        };
        let _ = writeln!(out, "| {} | {a} | {b} | {ratio} |", row.workload());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_the_documented_fields() {
        let t = Row::Time {
            workload: "or_set merge \"x\"".into(),
            confluo_ns: 1000.0,
            crdts_ns: 60000.0,
        };
        assert_eq!(
            t.json(),
            r#"{"workload": "or_set merge \"x\"", "confluo_ns": 1000, "crdts_ns": 60000, "speedup": 60.000}"#
        );
        let b = Row::Bytes {
            workload: "heap".into(),
            confluo_bytes: 21.5,
            crdts_bytes: 86.0,
        };
        assert_eq!(
            b.json(),
            r#"{"workload": "heap", "confluo_bytes": 21.50, "crdts_bytes": 86, "ratio": 0.250}"#
        );
    }

    #[test]
    fn markdown_has_a_row_per_workload() {
        let rows = [Row::Time {
            workload: "w".into(),
            confluo_ns: 2.0,
            crdts_ns: 4.0,
        }];
        let md = markdown(&rows);
        assert!(md.contains("| w | 2.0 ns | 4.0 ns | 2.0x faster |"), "{md}");
    }
}
