//! Throttled tracing: which trace events of a node to keep, a bounded ring
//! of the kept ones, and how much the tracing itself costs the node.
//!
//! An Elixir tracer process receives the VM's trace messages. For each one
//! it asks a [`Session`] whether to keep it ([`Session::admit`], O(1)),
//! formats only the kept ones and pushes them into the session's ring
//! ([`Session::push`], or both at once with [`Session::admit_push`]). When
//! the budget of the current window is spent the answer is
//! [`Decision::Pause`], and the tracer turns the VM's trace flags off until
//! then, so the VM stops producing events at all. Readers page through the
//! ring with a sequence-number cursor ([`Session::read`]).
//!
//! One concept per file:
//!
//! * [`bucket`]: the credit bucket behind the session budget and each
//!   per-key budget ([`Bucket`], [`Budget`]).
//! * [`overhead`]: what the events seen cost this node, and the effective
//!   rate that follows from it ([`OverheadMeter`], [`adapt_rate`]).
//! * [`ring`]: the bounded ring of kept events with sequence numbers
//!   ([`Ring`], [`Event`], [`ReadPage`]).
//! * [`session`]: all of them behind one decision ([`Session`],
//!   [`Decision`], [`Stats`]).
//!
//! # Budget: fixed windows with a capped credit
//!
//! Time is cut into fixed windows of `window_ms`, aligned to the session's
//! first call (its first `now_ms`). The session holds a credit, counted in
//! thousandths of an event: it starts full, at one window's budget
//! (`max(floor(rate * window_ms / 1000), 1)` events); each window boundary
//! adds `rate * window_ms` thousandths, never past that budget; each kept
//! event takes one event's worth. So it is a token bucket whose tokens arrive
//! at window boundaries and whose capacity is one window's budget, and it
//! guarantees, exactly (in integers) and property-tested:
//!
//! * in every window, kept events <= the budget (no refill happens inside a
//!   window, and the credit never exceeds the budget);
//! * over any run, kept <= `rate * elapsed_s + budget`, `elapsed_s` the time
//!   from the first call to the last (the credit starts at one budget and
//!   grows by at most `rate * window_ms / 1000` events a window);
//! * kept <= `max_events`, exactly; after that every event is
//!   [`Decision::Limit`].
//!
//! A rate under one event a window (`rate * window_ms < 1000`) keeps its
//! rate: the budget is 1, and the credit takes several windows to refill.
//! A rate that is not a whole number of events a window keeps
//! `floor(rate * window_ms / 1000)` a window (the fraction is lost at the
//! cap), so the bounds above still hold.
//!
//! Per-key budgets (`per_key_rate`, one key per traced process) are the
//! same bucket, one per key, refilled lazily on the key's next event, in the
//! same windows; at most `max_keys` keys are tracked, and the events of a
//! new key past that are dropped (counted `dropped_keys`). Keys are never
//! forgotten during a session (a session is short-lived; 10,000 keys take
//! about half a megabyte).
//!
//! # Overhead and the effective rate
//!
//! Every event seen (kept or not) costs the node about `event_cost_ns`
//! (calibrated by the caller on this node: producing the trace message,
//! sending it, the tracer receiving it and asking). At each window boundary
//! the fraction of one scheduler that the finished window's events cost is
//! `seen * event_cost_ns / window_ns`. Above `overhead_ceiling` the effective
//! rate is lowered to `rate_eff * ceiling / fraction` (never below 1/s);
//! after a window under half the ceiling it recovers by 10%, up to the
//! configured rate. The budget of a window follows the effective rate.
//!
//! # Time
//!
//! Times are milliseconds of one monotonic clock, as `i64` (the BEAM's
//! monotonic time can be negative). A time earlier than one already seen is
//! taken as that one: time never goes backwards inside a session.
//!
//! Every fallible function returns [`ThrottleError`], whose
//! [`code`](ThrottleError::code) is a stable snake_case name.

pub mod bucket;
pub mod overhead;
pub mod ring;
pub mod session;

use std::fmt;

use crate::error::ErrorCode;

pub use bucket::{Bucket, Budget, UNIT};
pub use overhead::{adapt_rate, Overhead, OverheadMeter, RECOVERY};
pub use ring::{Event, ReadPage, Ring, MAX_EVENT_BYTES, MAX_READ, MAX_READ_BYTES};
pub use session::{Counters, Decision, Session, Stats};

/// Default window length (ms).
pub const DEFAULT_WINDOW_MS: u64 = 100;
/// Default number of keys tracked for per-key budgets.
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// Default number of events the ring holds.
pub const DEFAULT_RING_CAPACITY: usize = 10_000;
/// Default byte cap of the ring (payload bytes): 16 MiB.
pub const DEFAULT_RING_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Default overhead ceiling: 5% of one scheduler.
pub const DEFAULT_OVERHEAD_CEILING: f64 = 0.05;
/// Default cost of one trace event (ns).
pub const DEFAULT_EVENT_COST_NS: f64 = 1_000.0;

/// The largest rate (events per second), session-wide or per key.
pub const MAX_RATE: u64 = 1_000_000;
/// The longest window (ms).
pub const MAX_WINDOW_MS: u64 = 60_000;
/// The largest `max_events`.
pub const MAX_EVENTS: u64 = 10_000_000;
/// The largest `max_keys`.
pub const MAX_KEYS: usize = 1_000_000;
/// The largest ring (events).
pub const MAX_RING_CAPACITY: usize = 1_000_000;
/// The largest ring byte cap: 1 GiB. The smallest is [`MAX_EVENT_BYTES`],
/// so one event always fits.
pub const MAX_RING_BYTES: usize = 1024 * 1024 * 1024;
/// The largest `event_cost_ns`: one second.
pub const MAX_EVENT_COST_NS: f64 = 1e9;

/// What a session is configured with; [`ThrottleConfig::new`] gives the
/// defaults, [`ThrottleConfig::validate`] checks every field.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleConfig {
    /// Events kept per second, 1..=[`MAX_RATE`].
    pub rate: u64,
    /// Window length in ms, 1..=[`MAX_WINDOW_MS`].
    pub window_ms: u64,
    /// Events kept in all, 1..=[`MAX_EVENTS`].
    pub max_events: u64,
    /// Events kept per second and key, 1..=[`MAX_RATE`]; `None`: no
    /// per-key budget.
    pub per_key_rate: Option<u64>,
    /// Keys tracked for per-key budgets, 1..=[`MAX_KEYS`].
    pub max_keys: usize,
    /// Events the ring holds, 1..=[`MAX_RING_CAPACITY`].
    pub ring_capacity: usize,
    /// Payload bytes the ring holds, [`MAX_EVENT_BYTES`]..=[`MAX_RING_BYTES`].
    pub ring_max_bytes: usize,
    /// Fraction of one scheduler above which the effective rate is
    /// lowered, `0 < x <= 1`.
    pub overhead_ceiling: f64,
    /// Cost of one trace event on this node (ns), `0 < x <=`
    /// [`MAX_EVENT_COST_NS`].
    pub event_cost_ns: f64,
}

impl ThrottleConfig {
    /// `rate` and `max_events` with every other field at its default.
    pub fn new(rate: u64, max_events: u64) -> Self {
        ThrottleConfig {
            rate,
            window_ms: DEFAULT_WINDOW_MS,
            max_events,
            per_key_rate: None,
            max_keys: DEFAULT_MAX_KEYS,
            ring_capacity: DEFAULT_RING_CAPACITY,
            ring_max_bytes: DEFAULT_RING_MAX_BYTES,
            overhead_ceiling: DEFAULT_OVERHEAD_CEILING,
            event_cost_ns: DEFAULT_EVENT_COST_NS,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ThrottleError> {
        let range = |field, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ThrottleError::option(
                    field,
                    format!("expected an integer in {lo}..={hi}, got {v}"),
                ))
            }
        };
        range("rate", self.rate, 1, MAX_RATE)?;
        range("window_ms", self.window_ms, 1, MAX_WINDOW_MS)?;
        range("max_events", self.max_events, 1, MAX_EVENTS)?;
        if let Some(r) = self.per_key_rate {
            range("per_key_rate", r, 1, MAX_RATE)?;
        }
        range("max_keys", self.max_keys as u64, 1, MAX_KEYS as u64)?;
        range(
            "ring_capacity",
            self.ring_capacity as u64,
            1,
            MAX_RING_CAPACITY as u64,
        )?;
        range(
            "ring_max_bytes",
            self.ring_max_bytes as u64,
            MAX_EVENT_BYTES as u64,
            MAX_RING_BYTES as u64,
        )?;
        let c = self.overhead_ceiling;
        if !(c.is_finite() && c > 0.0 && c <= 1.0) {
            return Err(ThrottleError::option(
                "overhead_ceiling",
                format!("expected a number with 0 < x <= 1, got {c}"),
            ));
        }
        let e = self.event_cost_ns;
        if !(e.is_finite() && e > 0.0 && e <= MAX_EVENT_COST_NS) {
            return Err(ThrottleError::option(
                "event_cost_ns",
                format!("expected a number with 0 < x <= {MAX_EVENT_COST_NS}, got {e}"),
            ));
        }
        Ok(())
    }
}

/// Why a throttle call refused its input.
#[derive(Debug, Clone, PartialEq)]
pub enum ThrottleError {
    /// A configuration field is out of range; `field` is its name.
    InvalidOption {
        field: &'static str,
        message: String,
    },
    /// An argument of a call is out of range (a read `limit`); `field` is
    /// its name.
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// An event's payload is over [`MAX_EVENT_BYTES`]; nothing was pushed
    /// (nor admitted, for [`Session::admit_push`]).
    TooLarge { bytes: usize, limit: usize },
}

impl ThrottleError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ThrottleError::InvalidOption { .. } => ErrorCode::InvalidOption,
            ThrottleError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            ThrottleError::TooLarge { .. } => ErrorCode::TooLarge,
        }
    }

    /// The field an option or argument error names, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ThrottleError::InvalidOption { field, .. }
            | ThrottleError::InvalidArgument { field, .. } => Some(field),
            ThrottleError::TooLarge { .. } => None,
        }
    }

    /// A [`ThrottleError::InvalidOption`].
    pub fn option(field: &'static str, message: impl Into<String>) -> Self {
        ThrottleError::InvalidOption {
            field,
            message: message.into(),
        }
    }

    /// A [`ThrottleError::InvalidArgument`].
    pub fn argument(field: &'static str, message: impl Into<String>) -> Self {
        ThrottleError::InvalidArgument {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for ThrottleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThrottleError::InvalidOption { field, message } => {
                write!(f, "invalid option {field}: {message}")
            }
            ThrottleError::InvalidArgument { field, message } => write!(f, "{field}: {message}"),
            ThrottleError::TooLarge { bytes, limit } => {
                write!(f, "an event of {bytes} bytes is over the limit of {limit}")
            }
        }
    }
}

impl std::error::Error for ThrottleError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_snake_case() {
        let errs = [
            ThrottleError::option("rate", "x"),
            ThrottleError::argument("limit", "x"),
            ThrottleError::TooLarge {
                bytes: 70_000,
                limit: MAX_EVENT_BYTES,
            },
        ];
        let codes: Vec<_> = errs.iter().map(ThrottleError::code).collect();
        assert_eq!(codes, ["invalid_option", "invalid_argument", "too_large"]);
        for e in &errs {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(errs[0].field(), Some("rate"));
        assert_eq!(errs[2].field(), None);
        assert_eq!(errs[0].to_string(), "invalid option rate: x");
    }

    #[test]
    fn defaults_are_valid() {
        let c = ThrottleConfig::new(1_000, 100_000);
        assert_eq!(c.window_ms, 100);
        assert_eq!(c.ring_capacity, 10_000);
        assert_eq!(c.ring_max_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_keys, 10_000);
        assert_eq!(c.per_key_rate, None);
        c.validate().unwrap();
    }

    #[test]
    fn every_bad_field_is_named() {
        let base = ThrottleConfig::new(1_000, 100);
        type Edit = Box<dyn Fn(&mut ThrottleConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("rate", Box::new(|c| c.rate = 0)),
            ("rate", Box::new(|c| c.rate = MAX_RATE + 1)),
            ("window_ms", Box::new(|c| c.window_ms = 0)),
            ("window_ms", Box::new(|c| c.window_ms = 60_001)),
            ("max_events", Box::new(|c| c.max_events = 0)),
            ("max_events", Box::new(|c| c.max_events = MAX_EVENTS + 1)),
            ("per_key_rate", Box::new(|c| c.per_key_rate = Some(0))),
            (
                "per_key_rate",
                Box::new(|c| c.per_key_rate = Some(MAX_RATE + 1)),
            ),
            ("max_keys", Box::new(|c| c.max_keys = 0)),
            ("max_keys", Box::new(|c| c.max_keys = MAX_KEYS + 1)),
            ("ring_capacity", Box::new(|c| c.ring_capacity = 0)),
            (
                "ring_capacity",
                Box::new(|c| c.ring_capacity = MAX_RING_CAPACITY + 1),
            ),
            (
                "ring_max_bytes",
                Box::new(|c| c.ring_max_bytes = MAX_EVENT_BYTES - 1),
            ),
            (
                "ring_max_bytes",
                Box::new(|c| c.ring_max_bytes = MAX_RING_BYTES + 1),
            ),
            ("overhead_ceiling", Box::new(|c| c.overhead_ceiling = 0.0)),
            ("overhead_ceiling", Box::new(|c| c.overhead_ceiling = 1.5)),
            (
                "overhead_ceiling",
                Box::new(|c| c.overhead_ceiling = f64::NAN),
            ),
            ("event_cost_ns", Box::new(|c| c.event_cost_ns = 0.0)),
            ("event_cost_ns", Box::new(|c| c.event_cost_ns = -1.0)),
            (
                "event_cost_ns",
                Box::new(|c| c.event_cost_ns = f64::INFINITY),
            ),
        ];
        for (field, edit) in cases {
            let mut c = base.clone();
            edit(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(e.code(), "invalid_option");
            assert_eq!(e.field(), Some(field), "{c:?}");
            assert!(Session::new(c).is_err());
        }
        let mut edge = base;
        edge.overhead_ceiling = 1.0;
        edge.rate = MAX_RATE;
        edge.window_ms = MAX_WINDOW_MS;
        edge.ring_max_bytes = MAX_EVENT_BYTES;
        edge.per_key_rate = Some(1);
        edge.validate().unwrap();
    }
}
