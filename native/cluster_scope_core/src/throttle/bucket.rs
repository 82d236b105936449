//! The credit bucket behind every budget (see the module documentation of
//! [`crate::throttle`]): a credit in thousandths of an event ([`UNIT`] is one
//! event), refilled at window boundaries, capped at one window's budget.
//!
//! All arithmetic is in integers, so the bounds hold exactly: in a window
//! at most `cap / UNIT` events are taken, and over `k` window boundaries at
//! most `cap / UNIT + k * refill / UNIT`.

/// One event's worth of credit.
pub const UNIT: u64 = 1_000;

/// What a rate gives per window: the refill at each boundary and the cap,
/// both in thousandths of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Added at each window boundary: `rate * window_ms` thousandths (at
    /// least 1).
    pub refill: u64,
    /// The most the credit holds: `max(floor(rate * window_ms / 1000), 1)`
    /// events.
    pub cap: u64,
}

impl Budget {
    /// The budget of `rate_milli` (thousandths of an event per second) in
    /// windows of `window_ms`.
    pub fn new(rate_milli: u64, window_ms: u64) -> Budget {
        let per_window = rate_milli.saturating_mul(window_ms) / 1_000;
        Budget {
            refill: per_window.max(1),
            cap: (per_window / UNIT).max(1).saturating_mul(UNIT),
        }
    }

    /// The budget of a whole rate (events per second).
    pub fn per_second(rate: u64, window_ms: u64) -> Budget {
        Budget::new(rate.saturating_mul(1_000), window_ms)
    }

    /// Events a window: `cap / UNIT`.
    pub fn events(&self) -> u64 {
        self.cap / UNIT
    }
}

/// A credit and the window it was last refilled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    credit: u64,
    window: u64,
}

impl Bucket {
    /// A full bucket in window `window`.
    pub fn full(budget: Budget, window: u64) -> Bucket {
        Bucket {
            credit: budget.cap,
            window,
        }
    }

    /// The credit (thousandths of an event).
    pub fn credit(&self) -> u64 {
        self.credit
    }

    /// Brings the bucket to window `window`: one refill per boundary crossed,
    /// capped. A window at or before the bucket's own changes nothing but the
    /// cap (which only lowers the credit, when the budget shrank).
    #[inline]
    pub fn advance(&mut self, window: u64, budget: Budget) {
        if window > self.window {
            let added = (window - self.window).saturating_mul(budget.refill);
            self.credit = self.credit.saturating_add(added);
            self.window = window;
        }
        self.credit = self.credit.min(budget.cap);
    }

    /// Takes one event's worth, if there is one.
    #[inline]
    pub fn try_take(&mut self) -> bool {
        if self.credit >= UNIT {
            self.credit -= UNIT;
            true
        } else {
            false
        }
    }

    /// How many window boundaries until one event's worth is there (0 when
    /// it is there now).
    pub fn windows_until_available(&self, budget: Budget) -> u64 {
        if self.credit >= UNIT {
            0
        } else {
            (UNIT - self.credit).div_ceil(budget.refill)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn budgets_of_whole_and_small_rates() {
        let b = Budget::per_second(1_000, 100);
        assert_eq!(
            b,
            Budget {
                refill: 100_000,
                cap: 100_000
            }
        );
        assert_eq!(b.events(), 100);
        // Under one event a window: a budget of 1, refilled over 10 windows.
        let b = Budget::per_second(1, 100);
        assert_eq!(
            b,
            Budget {
                refill: 100,
                cap: UNIT
            }
        );
        assert_eq!(b.events(), 1);
        // 2.5 events a window: 2 kept a window.
        let b = Budget::per_second(25, 100);
        assert_eq!(b.events(), 2);
        assert_eq!(b.refill, 2_500);
        // The smallest effective rate in the shortest window.
        assert_eq!(
            Budget::new(1_000, 1),
            Budget {
                refill: 1,
                cap: UNIT
            }
        );
    }

    #[test]
    fn takes_until_empty_then_refills_at_boundaries() {
        let b = Budget::per_second(30, 100); // 3 a window
        let mut bucket = Bucket::full(b, 0);
        assert!(bucket.try_take() && bucket.try_take() && bucket.try_take());
        assert!(!bucket.try_take());
        assert_eq!(bucket.windows_until_available(b), 1);
        bucket.advance(0, b);
        assert!(!bucket.try_take());
        bucket.advance(5, b);
        assert_eq!(bucket.credit(), b.cap, "capped at one window's budget");
    }

    #[test]
    fn slow_rates_wait_several_windows() {
        let b = Budget::per_second(1, 100);
        let mut bucket = Bucket::full(b, 0);
        assert!(bucket.try_take());
        assert_eq!(bucket.windows_until_available(b), 10);
        bucket.advance(9, b);
        assert!(!bucket.try_take());
        bucket.advance(10, b);
        assert!(bucket.try_take());
    }

    #[test]
    fn a_smaller_budget_lowers_the_credit() {
        let mut bucket = Bucket::full(Budget::per_second(1_000, 100), 0);
        let small = Budget::per_second(10, 100);
        bucket.advance(0, small);
        assert_eq!(bucket.credit(), small.cap);
        bucket.advance(u64::MAX, small);
        assert_eq!(bucket.credit(), small.cap);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Per window at most the budget; in all at most the budget plus one
        /// refill per boundary crossed.
        #[test]
        fn never_more_than_the_budget(
            rate in 1u64..5_000,
            window_ms in 1u64..1_000,
            steps in prop::collection::vec((0u64..3, 0usize..20), 1..200),
        ) {
            let b = Budget::per_second(rate, window_ms);
            let mut bucket = Bucket::full(b, 0);
            let (mut window, mut total, mut in_window) = (0u64, 0u64, 0u64);
            for (advance, tries) in steps {
                if advance > 0 {
                    in_window = 0;
                }
                window += advance;
                bucket.advance(window, b);
                for _ in 0..tries {
                    if bucket.try_take() {
                        in_window += 1;
                        total += 1;
                    }
                }
                prop_assert!(in_window <= b.events());
                prop_assert!(total * UNIT <= b.cap + window * rate * window_ms);
            }
        }
    }
}
