//! The phi-accrual failure detector (Hayashibara et al., 2004), as Akka
//! uses it.
//!
//! Instead of a yes/no verdict after a fixed timeout, the detector answers
//! with a suspicion level φ that grows continuously with the silence since
//! the last heartbeat, scaled by how regular the heartbeats have been:
//!
//! ```text
//! φ(t) = -log10(1 - F(t - t_last))
//! ```
//!
//! where `F` is the cumulative distribution of a normal law fitted to the
//! recent inter-arrival intervals: mean `μ + acceptable_pause_ms`, standard
//! deviation `max(σ, min_std_dev_ms)`. φ = 1 means a 10 % chance that a
//! heartbeat still arrives, φ = 8 one in 10⁸. Callers pick a threshold
//! (Akka's default is 8; Cassandra uses 8 to 12).
//!
//! # The normal CDF
//!
//! `1 - F(y)` for a standard normal `y` is approximated by the logistic
//! function `1 / (1 + e^g)` with `g(y) = 1.5976·y + 0.070566·y³` (Bowling et
//! al., 2009; Akka uses the same approximation, maximum error about 1.4e-4
//! in `F`). φ is then `log10(1 + e^g) = softplus(g) / ln 10`, which this
//! module evaluates as `max(g, 0) + ln(1 + e^-|g|)`: no overflow for a long
//! silence (where `1 - F` underflows to 0 and a naive `-log10` gives
//! infinity) and no cancellation for a short one. φ is capped at [`MAX_PHI`],
//! reached after minutes of silence at ordinary heartbeat rates.
//!
//! Every step of the computation is monotonic, so φ never decreases while
//! the silence grows.
//!
//! # History
//!
//! The detector keeps the last `window` inter-arrival intervals in a ring
//! buffer, with their running sum and sum of squares. Intervals are stored as
//! whole microseconds and the sums are exact integers, so a heartbeat costs
//! O(1) whatever the window, and the mean and variance never drift however
//! long the detector runs. Intervals are capped at [`MAX_INTERVAL_MS`] (about
//! 115 days), which keeps the sums exact.
//!
//! Before the first heartbeat φ is 0: nothing is expected yet. The first
//! heartbeat seeds the history with two intervals,
//! `first_interval_estimate_ms ∓ first_interval_estimate_ms / 4` (mean: the
//! estimate, deviation: a quarter of it), so that φ is meaningful from the
//! first beat on; real intervals push the seeds out of the window.

use super::PartitionError;

/// Default [`PhiConfig::window`]: intervals kept.
pub const DEFAULT_WINDOW: usize = 200;
/// Default [`PhiConfig::min_std_dev_ms`].
pub const DEFAULT_MIN_STD_DEV_MS: f64 = 50.0;
/// Default [`PhiConfig::acceptable_pause_ms`].
pub const DEFAULT_ACCEPTABLE_PAUSE_MS: f64 = 200.0;
/// Default [`PhiConfig::first_interval_estimate_ms`].
pub const DEFAULT_FIRST_INTERVAL_ESTIMATE_MS: f64 = 150.0;

/// Largest [`PhiConfig::window`] accepted (800 KB of history per peer).
pub const MAX_WINDOW: usize = 100_000;
/// Longest interval recorded, and the largest duration setting accepted, in
/// milliseconds (10¹⁰ ms, about 115 days). Longer intervals are recorded as
/// this; the bound keeps the integer sums of a full window exact.
pub const MAX_INTERVAL_MS: f64 = 1.0e10;
/// The highest φ reported: a finite stand-in for "certainly dead".
pub const MAX_PHI: f64 = 1.0e6;

const MAX_INTERVAL_US: u64 = 10_000_000_000_000;

// Coefficients of the logistic approximation of the normal tail.
const LOGISTIC_LINEAR: f64 = 1.5976;
const LOGISTIC_CUBIC: f64 = 0.070566;

/// Settings of a [`PhiDetector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhiConfig {
    /// How many of the latest inter-arrival intervals are kept, 1 to
    /// [`MAX_WINDOW`]. Default 200.
    pub window: usize,
    /// Floor of the standard deviation, in ms, finite and above 0: very
    /// regular heartbeats would otherwise make the slightest delay look
    /// fatal. Default 50.
    pub min_std_dev_ms: f64,
    /// Silence tolerated on top of the mean interval before suspicion grows
    /// (garbage collection, scheduling hiccups), in ms, finite and at least
    /// 0. Default 200.
    pub acceptable_pause_ms: f64,
    /// The interval assumed before any was measured, in ms, above 0 and at
    /// most [`MAX_INTERVAL_MS`]. Default 150.
    pub first_interval_estimate_ms: f64,
}

impl Default for PhiConfig {
    fn default() -> Self {
        PhiConfig {
            window: DEFAULT_WINDOW,
            min_std_dev_ms: DEFAULT_MIN_STD_DEV_MS,
            acceptable_pause_ms: DEFAULT_ACCEPTABLE_PAUSE_MS,
            first_interval_estimate_ms: DEFAULT_FIRST_INTERVAL_ESTIMATE_MS,
        }
    }
}

impl PhiConfig {
    /// Checks every setting; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), PartitionError> {
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err(PartitionError::config(
                "window",
                format!(
                    "is {}, must be between 1 and {MAX_WINDOW} intervals",
                    self.window
                ),
            ));
        }
        if !(self.min_std_dev_ms.is_finite()
            && self.min_std_dev_ms > 0.0
            && self.min_std_dev_ms <= MAX_INTERVAL_MS)
        {
            return Err(PartitionError::config(
                "min_std_dev_ms",
                format!(
                    "is {}, must be above 0 and at most {MAX_INTERVAL_MS} ms",
                    self.min_std_dev_ms
                ),
            ));
        }
        if !(self.acceptable_pause_ms.is_finite()
            && self.acceptable_pause_ms >= 0.0
            && self.acceptable_pause_ms <= MAX_INTERVAL_MS)
        {
            return Err(PartitionError::config(
                "acceptable_pause_ms",
                format!(
                    "is {}, must be between 0 and {MAX_INTERVAL_MS} ms",
                    self.acceptable_pause_ms
                ),
            ));
        }
        if !(self.first_interval_estimate_ms.is_finite()
            && self.first_interval_estimate_ms > 0.0
            && self.first_interval_estimate_ms <= MAX_INTERVAL_MS)
        {
            return Err(PartitionError::config(
                "first_interval_estimate_ms",
                format!(
                    "is {}, must be above 0 and at most {MAX_INTERVAL_MS} ms",
                    self.first_interval_estimate_ms
                ),
            ));
        }
        Ok(())
    }
}

/// The failure detector of one peer. See the module documentation.
#[derive(Debug, Clone)]
pub struct PhiDetector {
    config: PhiConfig,
    /// Ring buffer of intervals in µs; grows to `config.window`, then the
    /// slot at `oldest` is overwritten.
    intervals: Vec<u64>,
    oldest: usize,
    /// Exact sums over `intervals`. With at most `MAX_WINDOW` intervals of
    /// at most `MAX_INTERVAL_US`, `len · sum_sq` stays below 10³⁷ < 2¹²⁸.
    sum: u128,
    sum_sq: u128,
    last_heartbeat_ms: Option<f64>,
}

impl PhiDetector {
    /// A detector that has heard nothing yet.
    pub fn new(config: PhiConfig) -> Result<Self, PartitionError> {
        config.validate()?;
        Ok(PhiDetector {
            config,
            intervals: Vec::new(),
            oldest: 0,
            sum: 0,
            sum_sq: 0,
            last_heartbeat_ms: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &PhiConfig {
        &self.config
    }

    /// Records a heartbeat that arrived at `now_ms`. O(1).
    ///
    /// The first heartbeat seeds the history (see the module documentation);
    /// each later one records the interval since the previous one. A
    /// timestamp that is not finite, or earlier than the last heartbeat (a
    /// late duplicate, or a clock that is not monotonic), carries no news
    /// and is ignored.
    pub fn heartbeat(&mut self, now_ms: f64) {
        if !now_ms.is_finite() {
            return;
        }
        match self.last_heartbeat_ms {
            None => {
                let estimate = self.config.first_interval_estimate_ms;
                if self.config.window >= 2 {
                    self.record(estimate - estimate / 4.0);
                    self.record(estimate + estimate / 4.0);
                } else {
                    self.record(estimate);
                }
            }
            Some(last) if now_ms < last => return,
            Some(last) => {
                // One late beat (a pause, a reconnection) must not widen the
                // distribution for the next `window` beats: an interval
                // counts as at most three times the current mean.
                let cap = (self.mean_ms() * 3.0).max(self.config.first_interval_estimate_ms);
                self.record((now_ms - last).min(cap));
            }
        }
        self.last_heartbeat_ms = Some(now_ms);
    }

    fn record(&mut self, interval_ms: f64) {
        // `as` saturates, and the interval is never negative here.
        let interval = ((interval_ms * 1000.0).round() as u64).min(MAX_INTERVAL_US);
        let square = u128::from(interval) * u128::from(interval);
        if self.intervals.len() < self.config.window {
            self.intervals.push(interval);
        } else {
            let old = std::mem::replace(&mut self.intervals[self.oldest], interval);
            self.sum -= u128::from(old);
            self.sum_sq -= u128::from(old) * u128::from(old);
            self.oldest = (self.oldest + 1) % self.config.window;
        }
        self.sum += u128::from(interval);
        self.sum_sq += square;
    }

    /// The suspicion level at `now_ms`: 0 before the first heartbeat, then
    /// growing with the silence since the last one, at most [`MAX_PHI`].
    /// A `now_ms` before the last heartbeat (or NaN) counts as no silence.
    pub fn phi(&self, now_ms: f64) -> f64 {
        let Some(last) = self.last_heartbeat_ms else {
            return 0.0;
        };
        let elapsed = now_ms - last;
        let elapsed = if elapsed > 0.0 { elapsed } else { 0.0 };
        let mean = self.mean_ms() + self.config.acceptable_pause_ms;
        // The spread assumed is at least the floor and at most half the mean
        // interval: however irregular the recent history (reconnections,
        // pauses), a peer silent for a few intervals is still suspected.
        let ceiling = (self.mean_ms() / 2.0).max(self.config.min_std_dev_ms);
        let std_dev = self
            .std_dev_ms()
            .max(self.config.min_std_dev_ms)
            .min(ceiling);
        phi_of(elapsed, mean, std_dev)
    }

    /// When the last heartbeat arrived, if any did.
    pub fn last_heartbeat_ms(&self) -> Option<f64> {
        self.last_heartbeat_ms
    }

    /// How many intervals the history holds (seeds included), at most
    /// `window`.
    pub fn samples(&self) -> usize {
        self.intervals.len()
    }

    /// Mean of the recorded intervals in ms (0 before the first heartbeat).
    pub fn mean_ms(&self) -> f64 {
        if self.intervals.is_empty() {
            return 0.0;
        }
        self.sum as f64 / self.intervals.len() as f64 / 1000.0
    }

    /// Population standard deviation of the recorded intervals in ms, before
    /// the `min_std_dev_ms` floor (0 before the first heartbeat).
    pub fn std_dev_ms(&self) -> f64 {
        let n = self.intervals.len() as u128;
        if n == 0 {
            return 0.0;
        }
        // n·Σx² - (Σx)² = n²·variance, exactly, and never negative.
        let scaled = n * self.sum_sq - self.sum * self.sum;
        (scaled as f64).sqrt() / n as f64 / 1000.0
    }
}

/// φ after `elapsed_ms` of silence for intervals of the given mean and
/// standard deviation (`std_dev_ms` > 0). Non-decreasing in `elapsed_ms`.
pub fn phi_of(elapsed_ms: f64, mean_ms: f64, std_dev_ms: f64) -> f64 {
    let y = (elapsed_ms - mean_ms) / std_dev_ms;
    // y³ from |y| so that each rounding step is monotonic in y.
    let magnitude = y.abs();
    let cube = magnitude * magnitude * magnitude;
    let cube = if y < 0.0 { -cube } else { cube };
    let g = LOGISTIC_LINEAR * y + LOGISTIC_CUBIC * cube;
    // softplus(g) = ln(1 + e^g), without overflow or cancellation.
    let softplus = g.max(0.0) + (-g.abs()).exp().ln_1p();
    let phi = softplus / std::f64::consts::LN_10;
    if phi.is_nan() {
        // Only reachable with a NaN input; a NaN must not leak to callers.
        return 0.0;
    }
    phi.min(MAX_PHI)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn detector() -> PhiDetector {
        PhiDetector::new(PhiConfig::default()).unwrap()
    }

    #[test]
    fn an_irregular_history_still_suspects_within_bounded_silence() {
        // Intervals alternating 100 and 600 ms (mean 350, std 250): the
        // assumed spread is at most half the mean, so 3 s of silence is
        // suspected however irregular the history was.
        let mut d = detector();
        let mut t = 0.0;
        for i in 0..200 {
            t += if i % 2 == 0 { 100.0 } else { 600.0 };
            d.heartbeat(t);
        }
        assert!(d.std_dev_ms() > d.mean_ms() / 2.0);
        assert!(d.phi(t + 3_000.0) >= 8.0, "{}", d.phi(t + 3_000.0));
    }

    #[test]
    fn one_long_gap_does_not_blunt_detection() {
        // 100 regular beats, one 5 s gap (a pause or a reconnection), then
        // regular beats again: a later silence is suspected as fast as if the
        // gap had been at most three intervals.
        let mut with_gap = detector();
        let mut reference = detector();
        let mut t = 0.0;
        for _ in 0..100 {
            t += 100.0;
            with_gap.heartbeat(t);
            reference.heartbeat(t);
        }
        with_gap.heartbeat(t + 5_000.0);
        reference.heartbeat(t + 300.0);
        let (mut tg, mut tr) = (t + 5_000.0, t + 300.0);
        for _ in 0..20 {
            tg += 100.0;
            tr += 100.0;
            with_gap.heartbeat(tg);
            reference.heartbeat(tr);
        }
        assert!((with_gap.std_dev_ms() - reference.std_dev_ms()).abs() < 1.0);
        assert!(
            with_gap.phi(tg + 800.0) >= 8.0,
            "{}",
            with_gap.phi(tg + 800.0)
        );
    }

    /// A detector that heard `beats` heartbeats `interval` ms apart, the
    /// last one at the returned time.
    fn steady(interval: f64, beats: usize) -> (PhiDetector, f64) {
        let mut d = detector();
        let mut t = 1_000.0;
        d.heartbeat(t);
        for _ in 1..beats {
            t += interval;
            d.heartbeat(t);
        }
        (d, t)
    }

    /// The silence after which φ first reaches `threshold`, to 1 ms.
    fn silence_to_reach(d: &PhiDetector, last: f64, threshold: f64) -> f64 {
        (0..100_000)
            .map(f64::from)
            .find(|ms| d.phi(last + ms) >= threshold)
            .expect("threshold reached")
    }

    #[test]
    fn defaults() {
        let c = PhiConfig::default();
        assert_eq!(c.window, 200);
        assert_eq!(c.min_std_dev_ms, 50.0);
        assert_eq!(c.acceptable_pause_ms, 200.0);
        assert_eq!(c.first_interval_estimate_ms, 150.0);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = [
            (
                PhiConfig {
                    window: 0,
                    ..PhiConfig::default()
                },
                "window",
            ),
            (
                PhiConfig {
                    window: MAX_WINDOW + 1,
                    ..PhiConfig::default()
                },
                "window",
            ),
            (
                PhiConfig {
                    min_std_dev_ms: 0.0,
                    ..PhiConfig::default()
                },
                "min_std_dev_ms",
            ),
            (
                PhiConfig {
                    min_std_dev_ms: f64::NAN,
                    ..PhiConfig::default()
                },
                "min_std_dev_ms",
            ),
            (
                PhiConfig {
                    acceptable_pause_ms: -1.0,
                    ..PhiConfig::default()
                },
                "acceptable_pause_ms",
            ),
            (
                PhiConfig {
                    acceptable_pause_ms: f64::INFINITY,
                    ..PhiConfig::default()
                },
                "acceptable_pause_ms",
            ),
            (
                PhiConfig {
                    first_interval_estimate_ms: 0.0,
                    ..PhiConfig::default()
                },
                "first_interval_estimate_ms",
            ),
            (
                PhiConfig {
                    first_interval_estimate_ms: 1e11,
                    ..PhiConfig::default()
                },
                "first_interval_estimate_ms",
            ),
        ];
        for (config, field) in bad {
            let err = PhiDetector::new(config).unwrap_err();
            assert_eq!(err.code(), "invalid_config");
            assert!(
                matches!(&err, PartitionError::InvalidConfig { field: f, .. } if *f == field),
                "{err}"
            );
            assert!(err.to_string().contains(field), "{err}");
        }
        // Zero pause is allowed.
        let ok = PhiConfig {
            acceptable_pause_ms: 0.0,
            window: 1,
            ..PhiConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn phi_is_zero_before_any_heartbeat() {
        let d = detector();
        assert_eq!(d.phi(0.0), 0.0);
        assert_eq!(d.phi(1e12), 0.0);
        assert_eq!(d.last_heartbeat_ms(), None);
        assert_eq!(d.samples(), 0);
        assert_eq!(d.mean_ms(), 0.0);
        assert_eq!(d.std_dev_ms(), 0.0);
    }

    #[test]
    fn first_heartbeat_seeds_the_history() {
        let mut d = detector();
        d.heartbeat(500.0);
        assert_eq!(d.last_heartbeat_ms(), Some(500.0));
        assert_eq!(d.samples(), 2);
        assert_eq!(d.mean_ms(), 150.0);
        assert_eq!(d.std_dev_ms(), 37.5);
        // Meaningful at once: low right after the beat, high after a long
        // silence.
        assert!(d.phi(600.0) < 0.1);
        assert!(d.phi(500.0 + 2_000.0) > 8.0);
    }

    #[test]
    fn window_of_one_seeds_with_the_estimate() {
        let mut d = PhiDetector::new(PhiConfig {
            window: 1,
            ..PhiConfig::default()
        })
        .unwrap();
        d.heartbeat(0.0);
        assert_eq!((d.samples(), d.mean_ms(), d.std_dev_ms()), (1, 150.0, 0.0));
        d.heartbeat(80.0);
        assert_eq!((d.samples(), d.mean_ms()), (1, 80.0));
    }

    #[test]
    fn the_window_keeps_the_latest_intervals() {
        let mut d = PhiDetector::new(PhiConfig {
            window: 4,
            ..PhiConfig::default()
        })
        .unwrap();
        let mut t = 0.0;
        d.heartbeat(t);
        for interval in [10.0, 20.0, 30.0, 40.0, 50.0, 60.0] {
            t += interval;
            d.heartbeat(t);
        }
        assert_eq!(d.samples(), 4);
        assert_eq!(d.mean_ms(), 45.0);
        // Population deviation of 30, 40, 50, 60.
        assert!((d.std_dev_ms() - 125.0_f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn sums_stay_exact_over_many_heartbeats() {
        let mut d = detector();
        let mut t = 0.0;
        d.heartbeat(t);
        // A huge interval, then a million regular ones push it out.
        t += 9.0e9;
        d.heartbeat(t);
        for i in 0..1_000_000 {
            t += if i % 2 == 0 { 90.0 } else { 110.0 };
            d.heartbeat(t);
        }
        assert_eq!(d.samples(), 200);
        assert_eq!(d.mean_ms(), 100.0);
        assert_eq!(d.std_dev_ms(), 10.0);
    }

    #[test]
    fn stale_and_non_finite_heartbeats_are_ignored() {
        let mut d = detector();
        d.heartbeat(f64::NAN);
        assert_eq!(d.last_heartbeat_ms(), None);
        d.heartbeat(1_000.0);
        d.heartbeat(900.0);
        d.heartbeat(f64::INFINITY);
        assert_eq!(d.last_heartbeat_ms(), Some(1_000.0));
        assert_eq!(d.samples(), 2);
        // A time before the last heartbeat is no silence at all.
        assert_eq!(d.phi(0.0), d.phi(1_000.0));
        assert_eq!(d.phi(f64::NAN), d.phi(1_000.0));
    }

    #[test]
    fn regular_heartbeats_keep_phi_low() {
        let mut d = detector();
        let mut t = 0.0;
        d.heartbeat(t);
        for _ in 0..1_000 {
            // Checked just before each beat: the worst moment.
            assert!(d.phi(t + 100.0) < 0.01, "phi {}", d.phi(t + 100.0));
            t += 100.0;
            d.heartbeat(t);
        }
    }

    #[test]
    fn jitter_of_30_ms_raises_no_suspicion() {
        let mut d = detector();
        let mut t = 0.0;
        d.heartbeat(t);
        // A deterministic pseudo-random jitter in [-30, +30] ms.
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut worst: f64 = 0.0;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let jitter = (seed % 61) as f64 - 30.0;
            let next = t + 100.0 + jitter;
            worst = worst.max(d.phi(next));
            t = next;
            d.heartbeat(t);
        }
        assert!(worst < 0.1, "worst phi {worst}");
        assert!(d.std_dev_ms() > 10.0 && d.std_dev_ms() < 25.0);
    }

    #[test]
    fn silence_raises_phi_monotonically() {
        let (d, last) = steady(100.0, 500);
        let mut previous = d.phi(last);
        for ms in 1..5_000 {
            let phi = d.phi(last + f64::from(ms));
            assert!(phi >= previous, "phi fell at {ms} ms: {previous} -> {phi}");
            previous = phi;
        }
        assert!(previous > 1_000.0);
    }

    #[test]
    fn phi_crosses_8_after_well_under_a_second_at_100_ms_beats() {
        let (d, last) = steady(100.0, 500);
        assert_eq!((d.mean_ms(), d.std_dev_ms()), (100.0, 0.0));
        let at_8 = silence_to_reach(&d, last, 8.0);
        assert!((500.0..=1_200.0).contains(&at_8), "crossed 8 at {at_8} ms");
        // The figures reported in the documentation of the NIF.
        assert_eq!(at_8, 562.0);
        assert_eq!(silence_to_reach(&d, last, 10.0), 590.0);
        assert_eq!(silence_to_reach(&d, last, 12.0), 615.0);
    }

    #[test]
    fn phi_figures_at_200_ms_beats() {
        let (d, last) = steady(200.0, 500);
        assert_eq!(silence_to_reach(&d, last, 8.0), 662.0);
        assert_eq!(silence_to_reach(&d, last, 10.0), 690.0);
        assert_eq!(silence_to_reach(&d, last, 12.0), 715.0);
    }

    #[test]
    fn phi_is_finite_and_capped_for_huge_silences() {
        let (d, last) = steady(100.0, 10);
        for silence in [1e4, 1e6, 1e9, 1e15, 1e300, f64::MAX] {
            let phi = d.phi(last + silence);
            assert!(phi.is_finite() && phi <= MAX_PHI, "{silence}: {phi}");
        }
        assert_eq!(d.phi(f64::INFINITY), MAX_PHI);
        assert_eq!(d.phi(last + 1e9), MAX_PHI);
    }

    #[test]
    fn phi_of_matches_the_normal_tail() {
        // At the mean, 1 - F = 1/2: φ = log10 2.
        assert!((phi_of(300.0, 300.0, 50.0) - 2f64.log10()).abs() < 1e-12);
        // Three deviations above: 1 - F ≈ 1.35e-3, φ ≈ 2.87 (logistic
        // approximation within a few percent).
        let phi = phi_of(450.0, 300.0, 50.0);
        assert!((phi - 2.87).abs() < 0.05, "{phi}");
        // Far below the mean: no suspicion at all.
        assert!(phi_of(0.0, 1e6, 1.0) < 1e-300);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn phi_is_monotonic_in_elapsed_time(
            intervals in prop::collection::vec(1.0f64..2_000.0, 0..300),
            a in 0.0f64..1e7,
            b in 0.0f64..1e7,
        ) {
            let mut d = detector();
            let mut t = 0.0;
            d.heartbeat(t);
            for interval in intervals {
                t += interval;
                d.heartbeat(t);
            }
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            let (p1, p2) = (d.phi(t + early), d.phi(t + late));
            prop_assert!(p1 <= p2, "phi({early}) = {p1} > phi({late}) = {p2}");
            prop_assert!(p1 >= 0.0 && p2.is_finite() && p2 <= MAX_PHI);
        }

        #[test]
        fn phi_of_is_monotonic(
            mean in 0.0f64..1e6,
            std in 1e-3f64..1e5,
            a in -1e9f64..1e9,
            b in -1e9f64..1e9,
        ) {
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(phi_of(early, mean, std) <= phi_of(late, mean, std));
        }

        #[test]
        fn mean_and_std_match_a_direct_computation(
            intervals in prop::collection::vec(0u32..100_000, 1..400),
            window in 1usize..64,
        ) {
            let mut d = PhiDetector::new(PhiConfig { window, ..PhiConfig::default() }).unwrap();
            let mut t = 0.0;
            d.heartbeat(t);
            for &us in &intervals {
                t += f64::from(us) / 1000.0;
                d.heartbeat(t);
            }
            // Compare only once the seeds are gone.
            if intervals.len() >= window {
                let kept: Vec<f64> = intervals[intervals.len() - window..]
                    .iter()
                    .map(|&us| f64::from(us) / 1000.0)
                    .collect();
                let n = kept.len() as f64;
                let mean = kept.iter().sum::<f64>() / n;
                let var = kept.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                prop_assert_eq!(d.samples(), window);
                // Timestamps are sums of floats: allow their rounding.
                prop_assert!((d.mean_ms() - mean).abs() < 1e-3);
                prop_assert!((d.std_dev_ms() - var.sqrt()).abs() < 1e-2);
            }
        }
    }
}
