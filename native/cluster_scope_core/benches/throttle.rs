//! Timings of the throttle subsystem: `cargo bench -p cluster_scope_core
//! --bench throttle`.
//!
//! No framework: each case runs a warm-up, then many timed samples
//! (`std::time::Instant`) of a batch of calls, and prints one line
//!
//! ```text
//! RESULT bench=throttle_core case=<case> median_ns=<m> p99_ns=<p> samples=<k>
//! ```
//!
//! per call. An argument selects the cases whose name contains it.

use std::hint::black_box;

use cluster_scope_core::throttle::{Session, ThrottleConfig};

mod common;

fn bench(case: &str, samples: usize, batch: usize, op: impl FnMut()) {
    common::bench("throttle_core", common::NS, case, samples, batch, op);
}

/// A session that keeps everything it is asked about (huge rate and
/// limits, no overhead adaptation), so every call takes the keep path.
fn keep_all(per_key: bool) -> Session {
    let mut c = ThrottleConfig::new(1_000_000, 10_000_000);
    c.window_ms = 60_000;
    c.overhead_ceiling = 1.0;
    c.event_cost_ns = 1e-3;
    if per_key {
        c.per_key_rate = Some(1_000_000);
    }
    Session::new(c).unwrap()
}

fn main() {
    let batch = 10_000;
    let mut now = 0i64;

    // Keep path, no per-key budget. The session is replaced before it
    // reaches max_events.
    let mut s = keep_all(false);
    let mut n = 0u64;
    bench("admit_keep", 200, batch, || {
        if n + batch as u64 > 9_000_000 {
            s = keep_all(false);
            n = 0;
        }
        for i in 0..batch {
            black_box(s.admit(black_box(now), i as u64));
        }
        n += batch as u64;
    });

    // Keep path with per-key budgets over 1,000 keys.
    let mut s = keep_all(true);
    let mut n = 0u64;
    bench("admit_keep_per_key_1000_keys", 200, batch, || {
        if n + batch as u64 > 9_000_000 {
            s = keep_all(true);
            n = 0;
        }
        for i in 0..batch {
            black_box(s.admit(black_box(now), (i % 1_000) as u64));
        }
        n += batch as u64;
    });

    // Pause path: a spent window (the common case under load).
    let mut s = Session::new(ThrottleConfig::new(10, 10_000_000)).unwrap();
    bench("admit_pause", 200, batch, || {
        for i in 0..batch {
            black_box(s.admit(black_box(now), i as u64));
        }
    });

    // Admit and push a 200-byte event into a full ring of 10,000 (every
    // push evicts one).
    let event = vec![b'x'; 200];
    let mut s = keep_all(false);
    let mut n = 0u64;
    bench("admit_push_200_bytes", 200, batch, || {
        if n + batch as u64 > 9_000_000 {
            s = keep_all(false);
            n = 0;
        }
        for i in 0..batch {
            now += 1;
            black_box(
                s.admit_push(black_box(now / 1_000), now, i as u64, black_box(&event))
                    .unwrap(),
            );
        }
        n += batch as u64;
    });

    // Reading pages of 1,000 200-byte events.
    let s = {
        let mut s = keep_all(false);
        for i in 0..10_000 {
            s.push_bytes(i, 0, &event).unwrap();
        }
        s
    };
    bench("read_1000", 200, 1, || {
        black_box(s.read(black_box(5_000), 1_000).unwrap());
    });
}
