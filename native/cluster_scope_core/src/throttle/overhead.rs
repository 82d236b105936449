//! What tracing costs this node, and the effective rate that follows.
//!
//! Every event seen costs about `event_cost_ns` (a calibration by the
//! caller); the fraction of one scheduler a window's events cost is
//! `seen * event_cost_ns / window_ns`. [`OverheadMeter`] counts the events
//! of the current window, and at each boundary gives the fraction of the
//! window that finished; [`adapt_rate`] turns that fraction into the next
//! effective rate. Both are O(1) whatever the number of windows crossed.

/// Recovery factor of the effective rate after a window under half the
/// ceiling (+10% a window).
pub const RECOVERY: f64 = 1.1;

/// Windows of recovery computed at once at most (1.1^1000 is past any
/// rate: the cap is reached long before).
const MAX_RECOVERY_STEPS: u64 = 1_000;

/// The overhead of a session: fractions of one scheduler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overhead {
    /// The last complete window (0 before the first boundary, and after a
    /// window that saw nothing).
    pub last_window: f64,
    /// Every complete window since the session's first call.
    pub average: f64,
    /// Events seen in the current (incomplete) window.
    pub current_seen: u64,
}

/// Counts events per window and reports the fraction they cost.
#[derive(Debug, Clone)]
pub struct OverheadMeter {
    cost_ns: f64,
    window_ns: f64,
    seen_in_window: u64,
    last_fraction: f64,
    complete_windows: u64,
    seen_complete: u64,
}

impl OverheadMeter {
    /// A meter for events of `cost_ns` each in windows of `window_ms`.
    pub fn new(cost_ns: f64, window_ms: u64) -> Self {
        OverheadMeter {
            cost_ns,
            window_ns: window_ms as f64 * 1e6,
            seen_in_window: 0,
            last_fraction: 0.0,
            complete_windows: 0,
            seen_complete: 0,
        }
    }

    /// One event seen in the current window.
    #[inline]
    pub fn record(&mut self) {
        self.seen_in_window += 1;
    }

    /// The fraction `seen` events cost in one window.
    pub fn fraction(&self, seen: u64) -> f64 {
        seen as f64 * self.cost_ns / self.window_ns
    }

    /// Closes the current window and the `passed - 1` empty ones after it
    /// (`passed >= 1`), and returns the fraction of the one that had events.
    pub fn roll(&mut self, passed: u64) -> f64 {
        let f = self.fraction(self.seen_in_window);
        self.seen_complete += self.seen_in_window;
        self.complete_windows = self.complete_windows.saturating_add(passed);
        self.seen_in_window = 0;
        self.last_fraction = if passed == 1 { f } else { 0.0 };
        f
    }

    /// The overhead so far.
    pub fn overhead(&self) -> Overhead {
        let average = if self.complete_windows == 0 {
            0.0
        } else {
            self.fraction(self.seen_complete) / self.complete_windows as f64
        };
        Overhead {
            last_window: self.last_fraction,
            average,
            current_seen: self.seen_in_window,
        }
    }
}

/// The effective rate (thousandths of an event per second) after a window
/// whose events cost `fraction` of a scheduler, followed by `empty_after`
/// windows without events; and whether it was lowered.
///
/// Over `ceiling`: `rate * ceiling / fraction`, never under 1/s (1,000).
/// Under half the ceiling (and for each empty window): +10%, never over
/// `configured`.
pub fn adapt_rate(
    rate: u64,
    configured: u64,
    ceiling: f64,
    fraction: f64,
    empty_after: u64,
) -> (u64, bool) {
    let floor = 1_000.min(configured);
    let mut steps = empty_after;
    let mut r = rate;
    let mut lowered = false;
    if fraction > ceiling {
        let lower = ((r as f64) * ceiling / fraction) as u64;
        let lower = lower.clamp(floor, r);
        lowered = lower < r;
        r = lower;
    } else if fraction < ceiling / 2.0 {
        steps = steps.saturating_add(1);
    }
    if steps > 0 && r < configured {
        let grown = (r as f64) * RECOVERY.powi(steps.min(MAX_RECOVERY_STEPS) as i32);
        let grown = if grown >= configured as f64 {
            configured
        } else {
            (grown as u64).max(r + 1)
        };
        r = grown.min(configured);
    }
    (r.min(configured).max(floor), lowered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_of_a_scheduler() {
        // 100 ms windows, 1 us an event: 5,000 events are 5%.
        let mut m = OverheadMeter::new(1_000.0, 100);
        for _ in 0..5_000 {
            m.record();
        }
        assert_eq!(m.overhead().current_seen, 5_000);
        let f = m.roll(1);
        assert!((f - 0.05).abs() < 1e-12, "{f}");
        let o = m.overhead();
        assert!((o.last_window - 0.05).abs() < 1e-12);
        assert!((o.average - 0.05).abs() < 1e-12);
        // Then three windows, the first with 1,000 events, two empty.
        for _ in 0..1_000 {
            m.record();
        }
        m.roll(3);
        let o = m.overhead();
        assert_eq!(o.last_window, 0.0, "the last complete window was empty");
        assert!((o.average - 0.06 / 4.0).abs() < 1e-12, "{}", o.average);
    }

    #[test]
    fn nothing_before_the_first_boundary() {
        let m = OverheadMeter::new(1_000.0, 100);
        assert_eq!(
            m.overhead(),
            Overhead {
                last_window: 0.0,
                average: 0.0,
                current_seen: 0
            }
        );
    }

    #[test]
    fn over_the_ceiling_lowers_multiplicatively() {
        // 10% against a 5% ceiling: halved.
        assert_eq!(
            adapt_rate(1_000_000, 1_000_000, 0.05, 0.10, 0),
            (500_000, true)
        );
        // Never under 1/s.
        assert_eq!(adapt_rate(2_000, 1_000_000, 0.05, 100.0, 0), (1_000, true));
        assert_eq!(adapt_rate(1_000, 1_000_000, 0.05, 100.0, 0), (1_000, false));
    }

    #[test]
    fn recovers_slowly_under_half_the_ceiling() {
        assert_eq!(
            adapt_rate(500_000, 1_000_000, 0.05, 0.01, 0),
            (550_000, false)
        );
        // Between half and the full ceiling: unchanged.
        assert_eq!(
            adapt_rate(500_000, 1_000_000, 0.05, 0.04, 0),
            (500_000, false)
        );
        // Empty windows count as windows under half the ceiling.
        assert_eq!(
            adapt_rate(500_000, 1_000_000, 0.05, 0.04, 2),
            (605_000, false)
        );
        // Up to the configured rate only, even after ages.
        assert_eq!(
            adapt_rate(900_000, 1_000_000, 0.05, 0.0, 0),
            (990_000, false)
        );
        assert_eq!(
            adapt_rate(990_000, 1_000_000, 0.05, 0.0, 0),
            (1_000_000, false)
        );
        assert_eq!(
            adapt_rate(1_000, 1_000_000, 0.05, 0.0, u64::MAX),
            (1_000_000, false)
        );
        // Always moves up while under the configured rate.
        assert_eq!(adapt_rate(1_000, 1_005, 0.05, 0.0, 0), (1_005, false));
        // Already at the configured rate.
        assert_eq!(adapt_rate(7_000, 7_000, 0.05, 0.0, 9), (7_000, false));
    }
}
