//! Glob patterns as Redis matches them (KEYS, SCAN MATCH): `*`, `?`, `[abc]`, `[^a-z]`,
//! `\x`. A single backtracking point for `*` keeps matching linear in the pattern times the
//! key, whatever the pattern (Redis once had exponential patterns: CVE-2022-36021).

/// Whether `s` matches `pattern`.
pub(crate) fn matches(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, the string position it
    // absorbed up to.
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if let Some(next) = step(pattern, p, s[i]) {
            match next {
                Step::Star => {
                    star = Some((p + 1, i));
                    p += 1;
                }
                Step::Advance(np) => {
                    p = np;
                    i += 1;
                }
            }
            continue;
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

enum Step {
    /// A `*`: remember it, consume nothing.
    Star,
    /// One byte matched; the pattern continues here.
    Advance(usize),
}

/// Matches byte `c` against the pattern element at `p`; `None` on a mismatch.
fn step(pattern: &[u8], p: usize, c: u8) -> Option<Step> {
    match *pattern.get(p)? {
        b'*' => Some(Step::Star),
        b'?' => Some(Step::Advance(p + 1)),
        b'[' => {
            let (hit, next) = class(pattern, p + 1, c);
            hit.then_some(Step::Advance(next))
        }
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(Step::Advance(p + 2)),
        lit => (lit == c).then_some(Step::Advance(p + 1)),
    }
}

/// Matches `c` against the class starting after `[` at `p`; whether it matched, and where
/// the pattern continues. An unclosed class runs to the end of the pattern, as in Redis.
fn class(pattern: &[u8], mut p: usize, c: u8) -> (bool, usize) {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut hit = false;
    while let Some(&b) = pattern.get(p) {
        match b {
            b']' => return (hit != negate, p + 1),
            b'\\' if p + 1 < pattern.len() => {
                hit |= pattern[p + 1] == c;
                p += 2;
            }
            lo if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() => {
                let hi = pattern[p + 2];
                let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                hit |= (lo..=hi).contains(&c);
                p += 3;
            }
            lit => {
                hit |= lit == c;
                p += 1;
            }
        }
    }
    (hit != negate, p)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_as_in_redis() {
        let m = |p: &str, s: &str| matches(p.as_bytes(), s.as_bytes());
        assert!(m("*", ""));
        assert!(m("user:*", "user:42"));
        assert!(!m("user:*", "users"));
        assert!(m("h?llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"), "a reversed range is swapped");
        assert!(m(r"h\*llo", "h*llo"));
        assert!(!m(r"h\*llo", "hello"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*d", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabc"));
    }

    #[test]
    fn a_pathological_pattern_stays_linear() {
        let key = vec![b'a'; 4096];
        let pattern = "*a".repeat(64) + "b";
        assert!(!matches(pattern.as_bytes(), &key));
    }
}
