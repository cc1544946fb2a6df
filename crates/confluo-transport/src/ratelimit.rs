//! Rate-limited logging: anything a remote party can trigger must not become a flood of lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets at most `burst` log lines through per `window`, and counts the rest.
///
/// It decides, the caller logs: tracing's macros need their call site, so the limiter hands the
/// number of lines it suppressed since the last one it let through to a closure that logs.
///
/// ```
/// use std::time::Duration;
/// use confluo_transport::RateLimitedWarn;
///
/// static REFUSED: RateLimitedWarn = RateLimitedWarn::new(3, Duration::from_secs(1));
/// for attempt in 0..1000 {
///     REFUSED.log(|suppressed| {
///         tracing::warn!(attempt, suppressed, "refused a connection");
///     });
/// }
/// // Three lines were logged; the fourth line logged after the window will carry
/// // `suppressed = 997`.
/// ```
#[derive(Debug)]
pub struct RateLimitedWarn {
    burst: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// Start of the current window; `None` before the first line.
    start: Option<Instant>,
    emitted: u32,
    suppressed: u64,
}

impl RateLimitedWarn {
    /// A limiter letting `burst` lines through per `window`.
    pub const fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            state: Mutex::new(Window {
                start: None,
                emitted: 0,
                suppressed: 0,
            }),
        }
    }

    /// Calls `log` with the count of lines suppressed since the last one let through, if the
    /// limit allows a line now; otherwise counts this one as suppressed.
    pub fn log(&self, log: impl FnOnce(u64)) {
        if let Some(suppressed) = self.check(Instant::now()) {
            log(suppressed);
        }
    }

    /// The decision of [`RateLimitedWarn::log`] at time `now`: `Some(suppressed)` if a line
    /// may be logged, `None` if it is suppressed (and counted).
    pub fn check(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let expired = w
            .start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            w.start = Some(now);
            w.emitted = 0;
        }
        if w.emitted < self.burst {
            w.emitted += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed = w.suppressed.saturating_add(1);
            None
        }
    }

    /// Lines suppressed since the last one let through.
    pub fn suppressed(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_burst_through_per_window_and_reports_what_it_suppressed() {
        let limiter = RateLimitedWarn::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(limiter.check(at(0)), Some(0));
        assert_eq!(limiter.check(at(10)), Some(0));
        for ms in 20..120 {
            assert_eq!(limiter.check(at(ms)), None);
        }
        assert_eq!(limiter.suppressed(), 100);
        // A new window: the first line carries the count, the second starts from zero.
        assert_eq!(limiter.check(at(1000)), Some(100));
        assert_eq!(limiter.check(at(1001)), Some(0));
        assert_eq!(limiter.check(at(1002)), None);
    }

    #[test]
    fn a_clock_that_goes_backwards_does_not_open_the_gate() {
        let limiter = RateLimitedWarn::new(1, Duration::from_secs(1));
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(limiter.check(t0), Some(0));
        assert_eq!(limiter.check(t0 - Duration::from_secs(5)), None);
    }
}
