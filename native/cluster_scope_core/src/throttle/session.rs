//! A throttled tracing session: the budgets, the overhead meter and the ring
//! behind one decision per event (see [`crate::throttle`] for the rules).

use super::bucket::{Bucket, Budget};
use super::overhead::{adapt_rate, Overhead, OverheadMeter};
use super::ring::{check_size, Event, ReadPage, Ring};
use super::{ThrottleConfig, ThrottleError, MAX_RATE};
use crate::procs::WordMap;

/// What to do with one trace event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep it: format it and push it.
    Keep,
    /// Drop it: its key spent its budget (or is one key too many).
    Drop,
    /// Drop it: the window's budget is spent. Turn tracing off until
    /// `until_ms`, the start of the first window with budget again.
    Pause { until_ms: i64 },
    /// Drop it: `max_events` were kept; the session is done.
    Limit,
}

/// Every count of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events asked about.
    pub seen: u64,
    /// Events kept.
    pub kept: u64,
    /// Dropped because the window's budget was spent.
    pub dropped_rate: u64,
    /// Dropped because their key's budget was spent.
    pub dropped_key: u64,
    /// Dropped because their key was new and `max_keys` keys were tracked.
    pub dropped_keys: u64,
    /// Dropped because `max_events` were kept.
    pub dropped_limit: u64,
    /// Pauses asked for (one per distinct `until_ms`).
    pub pauses: u64,
    /// Windows after which the effective rate was lowered for overhead.
    pub rate_lowered: u64,
    /// Pushes refused as too large.
    pub too_large: u64,
}

/// Everything a session reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub counters: Counters,
    /// Events overwritten in the ring before being read.
    pub evicted: u64,
    /// Events pushed into the ring in all.
    pub pushed: u64,
    /// The configured rate (events per second).
    pub rate: u64,
    /// The effective rate (events per second), lowered for overhead.
    pub effective_rate: f64,
    /// Events a window at the effective rate.
    pub budget: u64,
    pub window_ms: u64,
    pub max_events: u64,
    pub per_key_rate: Option<u64>,
    /// Keys tracked.
    pub keys: usize,
    pub overhead: Overhead,
    pub ring_len: usize,
    pub ring_bytes: usize,
    /// The oldest sequence number held, if any.
    pub first_seq: Option<u64>,
    /// The last sequence number pushed, 0 before the first.
    pub last_seq: u64,
    /// Whether `max_events` were kept.
    pub done: bool,
    /// The end of the pause last asked for, if it is still ahead of the
    /// session's clock.
    pub paused_until: Option<i64>,
}

/// One session. Not thread-safe by itself: the NIF keeps it behind a lock.
#[derive(Debug, Clone)]
pub struct Session {
    config: ThrottleConfig,
    /// The first time seen (window 0 starts there).
    start_ms: Option<i64>,
    /// The latest time seen.
    now_ms: i64,
    /// The current window's index.
    window: u64,
    /// Effective rate in thousandths of an event per second.
    rate_milli: u64,
    budget: Budget,
    bucket: Bucket,
    key_budget: Option<Budget>,
    keys: WordMap<u64, Bucket>,
    meter: OverheadMeter,
    ring: Ring,
    counters: Counters,
    paused_until: Option<i64>,
}

impl Session {
    /// A session, or the first bad field of `config`.
    pub fn new(config: ThrottleConfig) -> Result<Session, ThrottleError> {
        config.validate()?;
        let rate_milli = config.rate * 1_000;
        let budget = Budget::new(rate_milli, config.window_ms);
        Ok(Session {
            start_ms: None,
            now_ms: 0,
            window: 0,
            rate_milli,
            budget,
            bucket: Bucket::full(budget, 0),
            key_budget: config
                .per_key_rate
                .map(|r| Budget::per_second(r, config.window_ms)),
            keys: WordMap::default(),
            meter: OverheadMeter::new(config.event_cost_ns, config.window_ms),
            ring: Ring::new(config.ring_capacity, config.ring_max_bytes),
            counters: Counters::default(),
            paused_until: None,
            config,
        })
    }

    /// The configuration (with the rate last set).
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Moves the clock to `now_ms` (never backwards), closing the windows
    /// that ended: the overhead of the finished one adapts the effective
    /// rate, and the budget refills.
    fn advance(&mut self, now_ms: i64) {
        let start = match self.start_ms {
            Some(start) => start,
            None => {
                self.start_ms = Some(now_ms);
                self.now_ms = now_ms;
                now_ms
            }
        };
        self.now_ms = self.now_ms.max(now_ms);
        let elapsed = (self.now_ms as i128 - start as i128) as u128;
        let window = u64::try_from(elapsed / u128::from(self.config.window_ms)).unwrap_or(u64::MAX);
        if window <= self.window {
            return;
        }
        let passed = window - self.window;
        self.window = window;
        let fraction = self.meter.roll(passed);
        let (rate, lowered) = adapt_rate(
            self.rate_milli,
            self.config.rate * 1_000,
            self.config.overhead_ceiling,
            fraction,
            passed - 1,
        );
        if lowered {
            self.counters.rate_lowered += 1;
        }
        self.set_rate_milli(rate);
        self.bucket.advance(window, self.budget);
    }

    fn set_rate_milli(&mut self, rate_milli: u64) {
        if rate_milli != self.rate_milli {
            self.rate_milli = rate_milli;
            self.budget = Budget::new(rate_milli, self.config.window_ms);
        }
    }

    /// The start of window `window` (saturating at the ends of `i64`).
    fn window_start(&self, window: u64) -> i64 {
        let start = self.start_ms.unwrap_or(self.now_ms) as i128;
        let t = start + window as i128 * self.config.window_ms as i128;
        t.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Whether to keep one event about `key` seen at `now_ms`. O(1).
    pub fn admit(&mut self, now_ms: i64, key: u64) -> Decision {
        self.advance(now_ms);
        self.counters.seen += 1;
        self.meter.record();
        if self.counters.kept >= self.config.max_events {
            self.counters.dropped_limit += 1;
            return Decision::Limit;
        }
        if self.bucket.credit() < super::UNIT {
            self.counters.dropped_rate += 1;
            let n = self.bucket.windows_until_available(self.budget);
            let until_ms = self.window_start(self.window.saturating_add(n));
            if self.paused_until != Some(until_ms) {
                self.counters.pauses += 1;
                self.paused_until = Some(until_ms);
            }
            return Decision::Pause { until_ms };
        }
        if let Some(kb) = self.key_budget {
            let window = self.window;
            let tracked = self.keys.len();
            match self.keys.get_mut(&key) {
                Some(b) => {
                    b.advance(window, kb);
                    if !b.try_take() {
                        self.counters.dropped_key += 1;
                        return Decision::Drop;
                    }
                }
                None if tracked >= self.config.max_keys => {
                    self.counters.dropped_keys += 1;
                    return Decision::Drop;
                }
                None => {
                    let mut b = Bucket::full(kb, window);
                    b.try_take();
                    self.keys.insert(key, b);
                }
            }
        }
        self.bucket.try_take();
        self.counters.kept += 1;
        Decision::Keep
    }

    /// Pushes a kept event into the ring; its sequence number, or
    /// `TooLarge` (counted, nothing pushed).
    pub fn push(&mut self, event: Event) -> Result<u64, ThrottleError> {
        self.ring.push(event).inspect_err(|_| {
            self.counters.too_large += 1;
        })
    }

    /// [`Session::push`] of a copy of `bytes` (checked before it is
    /// copied).
    pub fn push_bytes(&mut self, ts_us: i64, key: u64, bytes: &[u8]) -> Result<u64, ThrottleError> {
        if let Err(e) = check_size(bytes.len()) {
            self.counters.too_large += 1;
            return Err(e);
        }
        self.push(Event {
            ts_us,
            key,
            bytes: bytes.to_vec(),
        })
    }

    /// [`Session::admit`], and on [`Decision::Keep`] a copy of `bytes`
    /// pushed. An event over the size limit is refused before it is
    /// admitted (nothing counted but `too_large`).
    pub fn admit_push(
        &mut self,
        now_ms: i64,
        ts_us: i64,
        key: u64,
        bytes: &[u8],
    ) -> Result<Decision, ThrottleError> {
        if let Err(e) = check_size(bytes.len()) {
            self.counters.too_large += 1;
            return Err(e);
        }
        let d = self.admit(now_ms, key);
        if d == Decision::Keep {
            self.ring.push(Event {
                ts_us,
                key,
                bytes: bytes.to_vec(),
            })?;
        }
        Ok(d)
    }

    /// Up to `limit` (1..=1000) events after sequence number `after`.
    pub fn read(&self, after: u64, limit: usize) -> Result<ReadPage<'_>, ThrottleError> {
        self.ring.read(after, limit)
    }

    /// Changes the configured rate (1..=1,000,000 events per second). A
    /// session not slowed for overhead takes it as its effective rate; a
    /// slowed one keeps its lower effective rate (under the new one) and
    /// recovers towards the new rate.
    pub fn set_rate(&mut self, rate: u64) -> Result<(), ThrottleError> {
        if !(1..=MAX_RATE).contains(&rate) {
            return Err(ThrottleError::option(
                "rate",
                format!("expected an integer in 1..={MAX_RATE}, got {rate}"),
            ));
        }
        let slowed = self.rate_milli < self.config.rate * 1_000;
        let new = if slowed {
            self.rate_milli.min(rate * 1_000)
        } else {
            rate * 1_000
        };
        self.config.rate = rate;
        self.set_rate_milli(new);
        // The credit never holds more than the (new) budget.
        self.bucket.advance(self.window, self.budget);
        Ok(())
    }

    /// The overhead as of `now_ms` (closing the windows that ended).
    pub fn overhead(&mut self, now_ms: i64) -> Overhead {
        self.advance(now_ms);
        self.meter.overhead()
    }

    /// The effective rate (events per second).
    pub fn effective_rate(&self) -> f64 {
        self.rate_milli as f64 / 1_000.0
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Everything, as of the last call that took a time.
    pub fn stats(&self) -> Stats {
        Stats {
            counters: self.counters,
            evicted: self.ring.evicted(),
            pushed: self.ring.pushed(),
            rate: self.config.rate,
            effective_rate: self.effective_rate(),
            budget: self.budget.events(),
            window_ms: self.config.window_ms,
            max_events: self.config.max_events,
            per_key_rate: self.config.per_key_rate,
            keys: self.keys.len(),
            overhead: self.meter.overhead(),
            ring_len: self.ring.len(),
            ring_bytes: self.ring.bytes(),
            first_seq: self.ring.first_seq(),
            last_seq: self.ring.last_seq(),
            done: self.counters.kept >= self.config.max_events,
            paused_until: self.paused_until.filter(|&t| t > self.now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_EVENT_BYTES, UNIT};
    use super::*;
    use proptest::prelude::*;

    fn config(rate: u64, max_events: u64) -> ThrottleConfig {
        let mut c = ThrottleConfig::new(rate, max_events);
        // No overhead adaptation unless a test asks for it.
        c.overhead_ceiling = 1.0;
        c.event_cost_ns = 1.0;
        c
    }

    fn session(c: ThrottleConfig) -> Session {
        Session::new(c).unwrap()
    }

    #[test]
    fn keeps_the_window_budget_then_pauses_to_the_next_window() {
        // 100/s in 100 ms windows: 10 a window. Windows start at 1000.
        let mut s = session(config(100, 1_000));
        for i in 0..10 {
            assert_eq!(s.admit(1_000 + i, 1), Decision::Keep);
        }
        assert_eq!(s.admit(1_050, 1), Decision::Pause { until_ms: 1_100 });
        assert_eq!(s.admit(1_099, 2), Decision::Pause { until_ms: 1_100 });
        let c = *s.counters();
        assert_eq!((c.seen, c.kept, c.dropped_rate, c.pauses), (12, 10, 2, 1));
        assert_eq!(s.stats().paused_until, Some(1_100));
        assert_eq!(s.admit(1_100, 1), Decision::Keep);
        assert_eq!(s.stats().paused_until, None);
        for _ in 0..9 {
            assert_eq!(s.admit(1_150, 1), Decision::Keep);
        }
        assert_eq!(s.admit(1_199, 1), Decision::Pause { until_ms: 1_200 });
        assert_eq!(s.counters().pauses, 2);
    }

    #[test]
    fn slow_rates_pause_for_several_windows() {
        // 1/s in 100 ms windows: one event, then a pause of a second.
        let mut s = session(config(1, 1_000));
        assert_eq!(s.admit(0, 1), Decision::Keep);
        assert_eq!(s.admit(10, 1), Decision::Pause { until_ms: 1_000 });
        assert_eq!(s.admit(950, 1), Decision::Pause { until_ms: 1_000 });
        assert_eq!(s.counters().pauses, 1);
        assert_eq!(s.admit(1_000, 1), Decision::Keep);
        assert_eq!(s.stats().budget, 1);
    }

    #[test]
    fn time_never_goes_backwards() {
        let mut s = session(config(10, 1_000)); // 1 a window
        assert_eq!(s.admit(500, 1), Decision::Keep);
        assert_eq!(s.admit(100, 1), Decision::Pause { until_ms: 600 });
        // Negative monotonic times are fine.
        let mut s = session(config(10, 1_000));
        assert_eq!(s.admit(-1_000_000, 1), Decision::Keep);
        assert_eq!(s.admit(-999_950, 1), Decision::Pause { until_ms: -999_900 });
        assert_eq!(s.admit(i64::MAX, 1), Decision::Keep);
        assert_eq!(s.admit(i64::MAX, 1), Decision::Pause { until_ms: i64::MAX });
    }

    #[test]
    fn max_events_is_exact_and_final() {
        let mut s = session(config(1_000_000, 5));
        for _ in 0..5 {
            assert_eq!(s.admit(0, 1), Decision::Keep);
        }
        for t in [0, 1_000, 100_000] {
            assert_eq!(s.admit(t, 1), Decision::Limit);
        }
        let st = s.stats();
        assert!(st.done);
        assert_eq!((st.counters.kept, st.counters.dropped_limit), (5, 3));
    }

    #[test]
    fn per_key_budgets() {
        let mut c = config(1_000, 1_000); // 100 a window
        c.per_key_rate = Some(20); // 2 a window and key
        c.max_keys = 2;
        let mut s = session(c);
        assert_eq!(s.admit(0, 7), Decision::Keep);
        assert_eq!(s.admit(1, 7), Decision::Keep);
        assert_eq!(s.admit(2, 7), Decision::Drop);
        assert_eq!(s.admit(3, 8), Decision::Keep);
        // A third key is one too many.
        assert_eq!(s.admit(4, 9), Decision::Drop);
        // Next window: key 7 again.
        assert_eq!(s.admit(100, 7), Decision::Keep);
        assert_eq!(s.admit(100, 9), Decision::Drop);
        let c = *s.counters();
        assert_eq!((c.kept, c.dropped_key, c.dropped_keys), (4, 1, 2));
        assert_eq!(s.stats().keys, 2);
    }

    #[test]
    fn a_paused_session_spends_no_key_budget() {
        let mut c = config(10, 1_000); // 1 a window
        c.per_key_rate = Some(10);
        let mut s = session(c);
        assert_eq!(s.admit(0, 1), Decision::Keep);
        assert_eq!(s.admit(1, 2), Decision::Pause { until_ms: 100 });
        assert_eq!(s.admit(100, 2), Decision::Keep);
    }

    #[test]
    fn overhead_lowers_then_recovers_the_rate() {
        // 100 ms windows, 10 us an event: 500 events a window are 5%.
        let mut c = ThrottleConfig::new(100_000, 10_000_000);
        c.event_cost_ns = 10_000.0;
        c.overhead_ceiling = 0.05;
        let mut s = session(c);
        // Window 0 sees 1,000 events (10%): the rate is halved at 100.
        for i in 0..1_000 {
            s.admit(i % 100, i as u64);
        }
        let o = s.overhead(100);
        assert!((o.last_window - 0.10).abs() < 1e-9, "{o:?}");
        assert_eq!(s.effective_rate(), 50_000.0);
        assert_eq!(s.counters().rate_lowered, 1);
        assert_eq!(s.stats().budget, 5_000);
        // A quiet window: +10%.
        s.admit(150, 1);
        s.overhead(200);
        assert_eq!(s.effective_rate(), 55_000.0);
        // A long quiet time: back to the configured rate, never over it.
        let o = s.overhead(100_000);
        assert_eq!(s.effective_rate(), 100_000.0);
        assert_eq!(o.last_window, 0.0);
        assert!(o.average > 0.0 && o.average < 0.01, "{o:?}");
    }

    #[test]
    fn never_below_one_per_second() {
        let mut c = ThrottleConfig::new(10, 10_000_000);
        c.event_cost_ns = 1e9;
        c.overhead_ceiling = 0.01;
        let mut s = session(c);
        for w in 0..20 {
            s.admit(w * 100, 1);
        }
        assert_eq!(s.effective_rate(), 1.0);
        assert_eq!(s.stats().budget, 1);
    }

    #[test]
    fn set_rate_changes_the_budget() {
        let mut s = session(config(100, 1_000));
        s.set_rate(10).unwrap();
        assert_eq!(s.stats().budget, 1);
        assert_eq!(s.admit(0, 1), Decision::Keep);
        assert_eq!(s.admit(0, 1), Decision::Pause { until_ms: 100 });
        s.set_rate(1_000).unwrap();
        assert_eq!(s.stats().rate, 1_000);
        assert_eq!(s.effective_rate(), 1_000.0);
        assert_eq!(s.admit(100, 1), Decision::Keep);
        for r in [0, MAX_RATE + 1] {
            assert_eq!(s.set_rate(r).unwrap_err().field(), Some("rate"));
        }
    }

    #[test]
    fn admit_push_pushes_only_kept_events() {
        let mut s = session(config(10, 2)); // 1 a window, 2 in all
        assert_eq!(s.admit_push(0, 5, 1, b"one").unwrap(), Decision::Keep);
        assert!(matches!(
            s.admit_push(1, 6, 1, b"two").unwrap(),
            Decision::Pause { .. }
        ));
        let big = vec![0u8; MAX_EVENT_BYTES + 1];
        assert_eq!(s.admit_push(2, 7, 1, &big).unwrap_err().code(), "too_large");
        assert_eq!(s.admit_push(100, 8, 2, b"three").unwrap(), Decision::Keep);
        assert_eq!(s.admit_push(200, 9, 2, b"four").unwrap(), Decision::Limit);
        let p = s.read(0, 10).unwrap();
        let got: Vec<_> = p
            .events
            .iter()
            .map(|(q, e)| (*q, e.ts_us, e.key, e.bytes.as_slice()))
            .collect();
        assert_eq!(got, [(1, 5, 1, &b"one"[..]), (2, 8, 2, &b"three"[..])]);
        let st = s.stats();
        assert_eq!(st.counters.seen, 4, "the refused event was not seen");
        assert_eq!(st.counters.too_large, 1);
        assert_eq!((st.pushed, st.first_seq, st.last_seq), (2, Some(1), 2));
        assert_eq!(st.ring_bytes, 8);
    }

    #[test]
    fn push_counts_evictions_and_refusals() {
        let mut c = config(10, 2);
        c.ring_capacity = 2;
        let mut s = session(c);
        for i in 0..5 {
            s.push(Event {
                ts_us: i,
                key: 0,
                bytes: vec![1],
            })
            .unwrap();
        }
        let big = Event {
            ts_us: 0,
            key: 0,
            bytes: vec![0; MAX_EVENT_BYTES + 1],
        };
        assert!(s.push(big).is_err());
        let big = vec![0u8; MAX_EVENT_BYTES + 1];
        assert_eq!(s.push_bytes(0, 0, &big).unwrap_err().code(), "too_large");
        assert_eq!(s.push_bytes(0, 0, b"x").unwrap(), 6);
        let st = s.stats();
        assert_eq!((st.evicted, st.ring_len, st.counters.too_large), (4, 2, 2));
        assert_eq!(s.read(0, 1_000).unwrap().missed, 4);
    }

    /// Steps of a random run: a time increment and a key.
    fn steps() -> impl Strategy<Value = Vec<(i64, u64)>> {
        prop::collection::vec(
            (
                prop_oneof![Just(0i64), 0i64..5, 0i64..300, 0i64..5_000],
                0u64..8,
            ),
            1..2_000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever the arrival times: per window at most the budget, in
        /// all at most rate * elapsed + budget and at most max_events; per
        /// key and window at most the key budget, and per key at most its
        /// rate * its elapsed time + its budget. With the overhead
        /// adaptation on (it only ever lowers the rate).
        #[test]
        fn budgets_are_never_exceeded(
            rate in 1u64..2_000,
            window_ms in 1u64..500,
            max_events in 1u64..3_000,
            per_key in prop::option::of(1u64..200),
            ceiling in 0.01f64..1.0,
            cost in 1.0f64..1e6,
            start in -1_000_000i64..1_000_000,
            steps in steps(),
        ) {
            let mut c = ThrottleConfig::new(rate, max_events);
            c.window_ms = window_ms;
            c.per_key_rate = per_key;
            c.overhead_ceiling = ceiling;
            c.event_cost_ns = cost;
            let mut s = session(c);
            let budget = Budget::per_second(rate, window_ms).events();
            let key_budget = per_key.map(|r| Budget::per_second(r, window_ms).events());
            let mut now = start;
            // The session's windows start at its first call.
            let mut origin = None;
            let mut window = 0u64;
            let mut in_window = 0u64;
            let mut kept = 0u64;
            // Per key: (first keep time, kept in all, window, kept in it).
            let mut keys: std::collections::HashMap<u64, (i64, u64, u64, u64)> =
                Default::default();
            for (dt, key) in steps {
                now += dt;
                let start = *origin.get_or_insert(now);
                let w = ((now - start) as u64) / window_ms;
                if w != window {
                    window = w;
                    in_window = 0;
                }
                let d = s.admit(now, key);
                if let Decision::Pause { until_ms } = d {
                    prop_assert!(until_ms > now);
                    prop_assert_eq!((until_ms - start) % window_ms as i64, 0);
                }
                if d != Decision::Keep {
                    continue;
                }
                kept += 1;
                in_window += 1;
                prop_assert!(in_window <= budget, "{} in window {}", in_window, window);
                prop_assert!(kept <= max_events);
                let elapsed = (now - start) as u64;
                prop_assert!(kept * UNIT <= rate * elapsed + budget * UNIT);
                if let (Some(r), Some(kb)) = (per_key, key_budget) {
                    let e = keys.entry(key).or_insert((now, 0, w, 0));
                    if e.2 != w {
                        e.2 = w;
                        e.3 = 0;
                    }
                    e.1 += 1;
                    e.3 += 1;
                    prop_assert!(e.3 <= kb);
                    // From the start of the key's first window.
                    let first_w = (e.0 - start) as u64 / window_ms;
                    let key_elapsed = elapsed - first_w * window_ms;
                    prop_assert!(e.1 * UNIT <= r * key_elapsed + kb * UNIT);
                }
            }
            let c = *s.counters();
            prop_assert_eq!(c.kept, kept);
            prop_assert_eq!(
                c.seen,
                c.kept + c.dropped_rate + c.dropped_key + c.dropped_keys + c.dropped_limit
            );
            prop_assert!(s.effective_rate() >= 1.0 && s.effective_rate() <= rate as f64);
        }

        /// Changing the rate at run time: per window never more than the
        /// budget of the largest rate set, in all never more than that
        /// budget plus the largest rate times the elapsed time.
        #[test]
        fn set_rate_keeps_the_bounds(
            rate in 1u64..2_000,
            window_ms in 1u64..300,
            steps in prop::collection::vec(
                (0i64..200, prop::option::weighted(0.05, 1u64..2_000)), 1..1_500),
        ) {
            let mut c = config(rate, 10_000_000);
            c.window_ms = window_ms;
            let mut s = session(c);
            let mut max_rate = rate;
            let (mut now, mut window, mut in_window, mut kept) = (0i64, 0u64, 0u64, 0u64);
            let mut first = None;
            for (dt, new_rate) in steps {
                now += dt;
                if let Some(r) = new_rate {
                    s.set_rate(r).unwrap();
                    max_rate = max_rate.max(r);
                    prop_assert_eq!(s.effective_rate(), r as f64);
                }
                let origin = *first.get_or_insert(now);
                let w = (now - origin) as u64 / window_ms;
                if w != window {
                    window = w;
                    in_window = 0;
                }
                if s.admit(now, 0) == Decision::Keep {
                    kept += 1;
                    in_window += 1;
                    let budget = Budget::per_second(max_rate, window_ms).events();
                    prop_assert!(in_window <= budget);
                    let elapsed = (now - origin) as u64;
                    prop_assert!(kept * UNIT <= max_rate * elapsed + budget * UNIT);
                }
            }
        }
    }
}
