//! The timing loop the core's benches share (no framework): a warm-up of a
//! tenth of the samples, then `samples` timed runs of `op` with
//! `std::time::Instant`, each doing `batch` operations, and one line
//!
//! ```text
//! RESULT bench=<bench> case=<case> median_<unit>=<m> p99_<unit>=<p> samples=<k>
//! ```
//!
//! per case, per operation. The first command-line argument that is not a
//! flag (Cargo passes `--bench`) selects the cases whose name contains it.

// Each bench uses only some of the units.
#![allow(dead_code)]

use std::time::Instant;

/// The unit of a bench's figures, and how many decimals it prints.
#[derive(Clone, Copy)]
pub struct Unit {
    pub name: &'static str,
    pub per_second: f64,
    pub decimals: usize,
}

/// Nanoseconds, one decimal.
pub const NS: Unit = Unit {
    name: "ns",
    per_second: 1e9,
    decimals: 1,
};

/// Microseconds with `decimals` decimals.
pub const fn us(decimals: usize) -> Unit {
    Unit {
        name: "us",
        per_second: 1e6,
        decimals,
    }
}

/// Times `case` and prints its RESULT line (see the module doc).
pub fn bench(
    bench: &str,
    unit: Unit,
    case: &str,
    samples: usize,
    batch: usize,
    mut op: impl FnMut(),
) {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    if filter.is_some_and(|f| !case.contains(&f)) {
        return;
    }
    for _ in 0..(samples / 10).max(1) {
        op();
    }
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            op();
            start.elapsed().as_secs_f64() * unit.per_second / batch as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let p99 = times[((times.len() * 99) / 100).min(times.len() - 1)];
    let (u, d) = (unit.name, unit.decimals);
    println!(
        "RESULT bench={bench} case={case} median_{u}={median:.d$} p99_{u}={p99:.d$} \
         samples={samples}"
    );
}
