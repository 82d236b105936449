//! Throttled-tracing NIFs: a session resource around
//! `cluster_scope_core::throttle::Session` behind a `parking_lot` mutex,
//! and term conversion only. Budgets, the overhead adaptation, the ring and
//! its cursor are the core's.
//!
//! # Costs and schedulers
//!
//! Every call runs on a normal scheduler and holds the session's lock for
//! the whole call (one tracer process calls it; readers rarely contend).
//!
//! * `throttle_new/1`: validates the options and allocates an empty session
//!   (the ring grows with use): a few microseconds.
//! * `throttle_admit/3`: O(1), one lock, one hash lookup with per-key
//!   budgets: 5-8 ns in the core (`benches/throttle.rs`), about 60 ns a
//!   call from Elixir (100,000 calls in a loop, loop cost removed; 2-core
//!   x86-64).
//! * `throttle_push/4`, `throttle_admit_push/5`: O(size of the event): one
//!   copy of at most 64 KiB; a 200-byte event: 25 ns in the core, about
//!   80 ns a call from Elixir.
//!   An event over 64 KiB is refused, `{:error, {:too_large, detail}}` (not
//!   truncated: a cut term would be misleading; the tracer formats with
//!   limits), and counted `too_large`; `throttle_admit_push/5` refuses it
//!   before admitting it.
//! * `throttle_read/3`: O(limit), limit 1..=1000, and it stops before
//!   256 KiB of payload (at least one event), so it copies at most 256 KiB:
//!   50 us for 1,000 events of 200 bytes, 100-700 us for 1 MiB measured
//!   (the first use of a fresh large binary costs most), hence the cap. The
//!   page's payloads are copied into one binary and each event's binary is
//!   a sub-binary of it (one allocation instead of one per event; an event
//!   kept by the reader keeps its page's binary alive, at most 256 KiB).
//! * `throttle_stats/1`, `throttle_overhead/2`, `throttle_set_rate/2`: O(1).
//!
//! # Shapes
//!
//! * `throttle_new(opts)` -> `{:ok, ref}`; opts is a map with atom keys
//!   `rate` and `max_events` (required), `window_ms`, `per_key_rate`,
//!   `max_keys`, `ring_capacity`, `ring_max_bytes` (integers),
//!   `overhead_ceiling`, `event_cost_ns` (numbers); unknown keys are ignored,
//!   `nil` is absent.
//! * `throttle_admit(ref, now_ms, key)` -> `:keep | :drop | {:pause,
//!   until_ms} | :limit`.
//! * `throttle_push(ref, ts_us, key, binary)` -> `:ok`.
//! * `throttle_admit_push(ref, now_ms, ts_us, key, binary)` -> as admit.
//! * `throttle_read(ref, after_seq, limit)` -> `{:ok, [{seq, ts_us, key,
//!   binary}], next_seq, missed}`.
//! * `throttle_stats(ref)` -> a map (see [`stats_term`]).
//! * `throttle_overhead(ref, now_ms)` -> `%{last_window: f, average: f,
//!   current_seen: n}` (closes the windows that ended by `now_ms`).
//! * `throttle_set_rate(ref, rate)` -> `:ok`.
//!
//! # Errors
//!
//! Never an exception for bad input: `{:error, {code, detail}}` (through
//! `crate::error`) with code `:invalid_option` (a bad or missing option, a
//! bad rate for set_rate), `:invalid_argument` (`session`, `now_ms`, `key`,
//! `ts_us`, `event`, `after_seq`, `limit`) or `:too_large`; the detail starts
//! with the option's or argument's name. Every atom comes from a fixed list.

use cluster_scope_core::throttle::{Decision, Session, Stats, ThrottleConfig, ThrottleError};
use parking_lot::Mutex;
use rustler::types::atom;
use rustler::{Atom, Binary, Encoder, Env, NewBinary, ResourceArc, Term, TermType};

use crate::error::error;

mod atoms {
    rustler::atoms! {
        // Decisions.
        keep,
        drop,
        pause,
        limit,
        // Option names.
        rate,
        window_ms,
        max_events,
        per_key_rate,
        max_keys,
        ring_capacity,
        ring_max_bytes,
        overhead_ceiling,
        event_cost_ns,
        // Stats.
        too_large,
        seen,
        kept,
        dropped_rate,
        dropped_key,
        dropped_keys,
        dropped_limit,
        evicted,
        pauses,
        rate_lowered,
        pushed,
        effective_rate,
        budget,
        keys,
        overhead_last,
        overhead_avg,
        ring_len,
        ring_bytes,
        first_seq,
        last_seq,
        done,
        paused_until,
        last_window,
        average,
        current_seen,
    }
}

/// A session. Freed when the last reference to it is garbage collected.
pub struct ThrottleResource(Mutex<Session>);

#[rustler::resource_impl]
impl rustler::Resource for ThrottleResource {}

/// The session behind `term`, borrowed for the call (no reference count
/// traffic on the hot path).
fn session<'a>(term: Term<'a>) -> Result<&'a ThrottleResource, ThrottleError> {
    term.decode::<&ThrottleResource>().map_err(|_| {
        ThrottleError::argument("session", "is not a throttle session (throttle_new/1)")
    })
}

fn int<'a, T: rustler::Decoder<'a>>(
    term: Term<'a>,
    field: &'static str,
) -> Result<T, ThrottleError> {
    term.decode::<T>()
        .map_err(|_| ThrottleError::argument(field, "expected an integer in range"))
}

fn event_bytes<'a>(term: Term<'a>) -> Result<Binary<'a>, ThrottleError> {
    term.decode::<Binary>()
        .map_err(|_| ThrottleError::argument("event", "expected a binary"))
}

/// The arguments of an event to store: its session, time, key and bytes.
type EventArgs<'a> = (&'a ThrottleResource, i64, u64, Binary<'a>);

fn event_args<'a>(
    s: Term<'a>,
    ts_us: Term<'a>,
    key: Term<'a>,
    bytes: Term<'a>,
) -> Result<EventArgs<'a>, ThrottleError> {
    Ok((
        session(s)?,
        int(ts_us, "ts_us")?,
        int(key, "key")?,
        event_bytes(bytes)?,
    ))
}

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

fn is_nil(term: Term<'_>) -> bool {
    Atom::from_term(term).is_ok_and(|a| a == atom::nil())
}

/// The value of `key` in the options map, absent when missing or `nil`.
fn opt<'a>(opts: Term<'a>, key: Atom) -> Option<Term<'a>> {
    opts.map_get(key).ok().filter(|v| !is_nil(*v))
}

fn config(opts: Term<'_>) -> Result<ThrottleConfig, ThrottleError> {
    if opts.get_type() != TermType::Map {
        return Err(ThrottleError::option("opts", "expected a map"));
    }
    let uint = |key: Atom, field: &'static str| {
        opt(opts, key)
            .map(|t| {
                t.decode::<u64>()
                    .map_err(|_| ThrottleError::option(field, "expected a positive integer"))
            })
            .transpose()
    };
    let size = |key: Atom, field: &'static str| {
        uint(key, field)?
            .map(|v| {
                usize::try_from(v)
                    .map_err(|_| ThrottleError::option(field, "expected a positive integer"))
            })
            .transpose()
    };
    let number = |key: Atom, field: &'static str| {
        opt(opts, key)
            .map(|t| {
                t.decode::<f64>()
                    .or_else(|_| t.decode::<i64>().map(|i| i as f64))
                    .map_err(|_| ThrottleError::option(field, "expected a number"))
            })
            .transpose()
    };
    let rate =
        uint(atoms::rate(), "rate")?.ok_or_else(|| ThrottleError::option("rate", "is required"))?;
    let max_events = uint(atoms::max_events(), "max_events")?
        .ok_or_else(|| ThrottleError::option("max_events", "is required"))?;
    let mut c = ThrottleConfig::new(rate, max_events);
    if let Some(v) = uint(atoms::window_ms(), "window_ms")? {
        c.window_ms = v;
    }
    c.per_key_rate = uint(atoms::per_key_rate(), "per_key_rate")?;
    if let Some(v) = size(atoms::max_keys(), "max_keys")? {
        c.max_keys = v;
    }
    if let Some(v) = size(atoms::ring_capacity(), "ring_capacity")? {
        c.ring_capacity = v;
    }
    if let Some(v) = size(atoms::ring_max_bytes(), "ring_max_bytes")? {
        c.ring_max_bytes = v;
    }
    if let Some(v) = number(atoms::overhead_ceiling(), "overhead_ceiling")? {
        c.overhead_ceiling = v;
    }
    if let Some(v) = number(atoms::event_cost_ns(), "event_cost_ns")? {
        c.event_cost_ns = v;
    }
    Ok(c)
}

// ---------------------------------------------------------------------------
// NIFs
// ---------------------------------------------------------------------------

/// `throttle_new/1`: `{:ok, ref}` or `{:error, {:invalid_option, detail}}`.
#[rustler::nif]
fn throttle_new<'a>(env: Env<'a>, opts: Term<'a>) -> Term<'a> {
    match config(opts).and_then(Session::new) {
        Ok(s) => (
            atom::ok(),
            ResourceArc::new(ThrottleResource(Mutex::new(s))),
        )
            .encode(env),
        Err(e) => error(env, e),
    }
}

/// `throttle_admit/3`: `:keep | :drop | {:pause, until_ms} | :limit`.
#[rustler::nif]
fn throttle_admit<'a>(env: Env<'a>, s: Term<'a>, now_ms: Term<'a>, key: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ThrottleError> {
        let res = session(s)?;
        let now_ms: i64 = int(now_ms, "now_ms")?;
        let key: u64 = int(key, "key")?;
        let d = res.0.lock().admit(now_ms, key);
        Ok(d)
    })();
    match result {
        Ok(d) => decision(env, d),
        Err(e) => error(env, e),
    }
}

/// `throttle_push/4`: `:ok` or `{:error, {:too_large, detail}}`.
#[rustler::nif]
fn throttle_push<'a>(
    env: Env<'a>,
    s: Term<'a>,
    ts_us: Term<'a>,
    key: Term<'a>,
    bytes: Term<'a>,
) -> Term<'a> {
    let result = (|| -> Result<_, ThrottleError> {
        let (res, ts_us, key, bin) = event_args(s, ts_us, key, bytes)?;
        let r = res
            .0
            .lock()
            .push_bytes(ts_us, key, bin.as_slice())
            .map(|_| ());
        r
    })();
    match result {
        Ok(()) => atom::ok().encode(env),
        Err(e) => error(env, e),
    }
}

/// `throttle_admit_push/5`: the decision of `throttle_admit/3`; on `:keep`
/// the binary is copied into the ring. `{:error, {:too_large, detail}}`
/// (not admitted) for a binary over 64 KiB.
#[rustler::nif]
fn throttle_admit_push<'a>(
    env: Env<'a>,
    s: Term<'a>,
    now_ms: Term<'a>,
    ts_us: Term<'a>,
    key: Term<'a>,
    bytes: Term<'a>,
) -> Term<'a> {
    let result = (|| -> Result<_, ThrottleError> {
        let now_ms: i64 = int(now_ms, "now_ms")?;
        let (res, ts_us, key, bin) = event_args(s, ts_us, key, bytes)?;
        let d = res.0.lock().admit_push(now_ms, ts_us, key, bin.as_slice());
        d
    })();
    match result {
        Ok(d) => decision(env, d),
        Err(e) => error(env, e),
    }
}

/// `throttle_read/3`: `{:ok, [{seq, ts_us, key, binary}], next_seq,
/// missed}`.
#[rustler::nif]
fn throttle_read<'a>(env: Env<'a>, s: Term<'a>, after: Term<'a>, limit: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ThrottleError> {
        let res = session(s)?;
        let after: u64 = int(after, "after_seq")?;
        let limit: u64 = limit
            .decode()
            .map_err(|_| ThrottleError::argument("limit", "expected an integer in 1..=1000"))?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let guard = res.0.lock();
        let page = guard.read(after, limit)?;
        // One binary for the whole page, one sub-binary per event: a single
        // allocation and copy (at most 256 KiB) instead of one per event.
        let total: usize = page.events.iter().map(|(_, e)| e.bytes.len()).sum();
        let mut all = NewBinary::new(env, total);
        let mut at = 0;
        for (_, e) in &page.events {
            all.as_mut_slice()[at..at + e.bytes.len()].copy_from_slice(&e.bytes);
            at += e.bytes.len();
        }
        let all = Binary::from(all);
        let mut at = 0;
        let mut events: Vec<Term<'a>> = Vec::with_capacity(page.events.len());
        for (seq, e) in &page.events {
            let len = e.bytes.len();
            let bin = all
                .make_subbinary(at, len)
                .map_err(|_| ThrottleError::argument("limit", "page binary"))?;
            at += len;
            events.push((*seq, e.ts_us, e.key, bin).encode(env));
        }
        Ok((events, page.next, page.missed))
    })();
    match result {
        Ok((events, next, missed)) => (atom::ok(), events, next, missed).encode(env),
        Err(e) => error(env, e),
    }
}

/// `throttle_stats/1`: a map (see [`stats_term`]).
#[rustler::nif]
fn throttle_stats<'a>(env: Env<'a>, s: Term<'a>) -> Term<'a> {
    match session(s) {
        Ok(res) => {
            let st = res.0.lock().stats();
            stats_term(env, &st)
        }
        Err(e) => error(env, e),
    }
}

/// `throttle_overhead/2`: `%{last_window: f, average: f, current_seen: n}`
/// as of `now_ms`.
#[rustler::nif]
fn throttle_overhead<'a>(env: Env<'a>, s: Term<'a>, now_ms: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ThrottleError> {
        let res = session(s)?;
        let now_ms: i64 = int(now_ms, "now_ms")?;
        let o = res.0.lock().overhead(now_ms);
        Ok(o)
    })();
    match result {
        Ok(o) => rustler::term_map!(env, {
            atoms::last_window() => o.last_window,
            atoms::average() => o.average,
            atoms::current_seen() => o.current_seen,
        }),
        Err(e) => error(env, e),
    }
}

/// `throttle_set_rate/2`: `:ok` or `{:error, {:invalid_option, detail}}`.
#[rustler::nif]
fn throttle_set_rate<'a>(env: Env<'a>, s: Term<'a>, rate: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ThrottleError> {
        let res = session(s)?;
        let rate: u64 = rate
            .decode()
            .map_err(|_| ThrottleError::option("rate", "expected a positive integer"))?;
        let r = res.0.lock().set_rate(rate);
        r
    })();
    match result {
        Ok(()) => atom::ok().encode(env),
        Err(e) => error(env, e),
    }
}

// ---------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------

fn decision(env: Env<'_>, d: Decision) -> Term<'_> {
    match d {
        Decision::Keep => atoms::keep().encode(env),
        Decision::Drop => atoms::drop().encode(env),
        Decision::Pause { until_ms } => (atoms::pause(), until_ms).encode(env),
        Decision::Limit => atoms::limit().encode(env),
    }
}

/// `%{seen, kept, dropped_rate, dropped_key, dropped_keys, dropped_limit,
/// evicted, pauses, rate_lowered, too_large, pushed, rate, effective_rate,
/// budget, window_ms, max_events, per_key_rate, keys, overhead_last,
/// overhead_avg, ring_len, ring_bytes, first_seq, last_seq, done,
/// paused_until}`; `per_key_rate`, `first_seq` and `paused_until` may be
/// `nil`, the effective rate and overheads are floats.
fn stats_term<'a>(env: Env<'a>, st: &Stats) -> Term<'a> {
    let c = &st.counters;
    let nil = || atom::nil().encode(env);
    let or_nil = |v: Option<u64>| v.map_or_else(nil, |v| v.encode(env));
    let pairs: [(Atom, Term<'a>); 26] = [
        (atoms::seen(), c.seen.encode(env)),
        (atoms::kept(), c.kept.encode(env)),
        (atoms::dropped_rate(), c.dropped_rate.encode(env)),
        (atoms::dropped_key(), c.dropped_key.encode(env)),
        (atoms::dropped_keys(), c.dropped_keys.encode(env)),
        (atoms::dropped_limit(), c.dropped_limit.encode(env)),
        (atoms::evicted(), st.evicted.encode(env)),
        (atoms::pauses(), c.pauses.encode(env)),
        (atoms::rate_lowered(), c.rate_lowered.encode(env)),
        (atoms::too_large(), c.too_large.encode(env)),
        (atoms::pushed(), st.pushed.encode(env)),
        (atoms::rate(), st.rate.encode(env)),
        (atoms::effective_rate(), st.effective_rate.encode(env)),
        (atoms::budget(), st.budget.encode(env)),
        (atoms::window_ms(), st.window_ms.encode(env)),
        (atoms::max_events(), st.max_events.encode(env)),
        (atoms::per_key_rate(), or_nil(st.per_key_rate)),
        (atoms::keys(), st.keys.encode(env)),
        (atoms::overhead_last(), st.overhead.last_window.encode(env)),
        (atoms::overhead_avg(), st.overhead.average.encode(env)),
        (atoms::ring_len(), st.ring_len.encode(env)),
        (atoms::ring_bytes(), st.ring_bytes.encode(env)),
        (atoms::first_seq(), or_nil(st.first_seq)),
        (atoms::last_seq(), st.last_seq.encode(env)),
        (atoms::done(), st.done.encode(env)),
        (
            atoms::paused_until(),
            st.paused_until.map_or_else(nil, |v| v.encode(env)),
        ),
    ];
    let keys: Vec<Term<'a>> = pairs.iter().map(|(k, _)| k.encode(env)).collect();
    let values: Vec<Term<'a>> = pairs.iter().map(|(_, v)| *v).collect();
    // Distinct keys: this cannot fail.
    Term::map_from_term_arrays(env, &keys, &values).unwrap_or_else(|_| Term::map_new(env))
}
