//! Timings of merging serialized histograms: `cargo bench -p
//! cluster_scope_core --bench histograms`.
//!
//! No framework: each case runs a warm-up, then timed samples
//! (`std::time::Instant`), and prints one line
//!
//! ```text
//! RESULT bench=histograms_core case=<case> median_us=<m> p99_us=<p> samples=<k>
//! ```
//!
//! The inputs are the Elixir bench's (bench/histograms.exs): 100 latency
//! histograms (1 us..1 h, 3 figures) of 10,000 values each, mostly 10 us..
//! 10 ms and 1% up to 1 s. `generic` is the reference: deserialize each
//! input and merge it. An argument selects the cases whose name contains it.

use std::hint::black_box;

use cluster_scope_core::metrics::{Format, Histogram, HistogramConfig};

mod common;

fn bench(case: &str, samples: usize, op: impl FnMut()) {
    common::bench("histograms_core", common::us(1), case, samples, 1, op);
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// Latency-like: mostly 10 us .. 10 ms, 1% up to 1 s.
fn latency_value(state: &mut u64) -> u64 {
    let r = xorshift(state);
    if r.is_multiple_of(100) {
        1 + r % 1_000_000
    } else {
        10 + r % 10_000
    }
}

fn inputs(format: Format) -> Vec<Vec<u8>> {
    (0..100u64)
        .map(|i| {
            let mut h = Histogram::new(HistogramConfig::LATENCY_US);
            let mut state = 0x9E37_79B9_7F4A_7C15 ^ (i + 1);
            for _ in 0..10_000 {
                h.record(latency_value(&mut state));
            }
            h.serialize(format).unwrap()
        })
        .collect()
}

fn generic(inputs: &[Vec<u8>]) -> Histogram {
    let mut merged = Histogram::deserialize(&inputs[0]).unwrap();
    for bytes in &inputs[1..] {
        merged.merge(&Histogram::deserialize(bytes).unwrap());
    }
    merged
}

fn main() {
    for (name, format) in [
        ("compressed", Format::Compressed),
        ("uncompressed", Format::Uncompressed),
    ] {
        let many = inputs(format);
        let fast = Histogram::merge_serialized(&many).unwrap();
        assert_eq!(fast.stats(), generic(&many).stats());
        bench(&format!("merge100_{name}"), 200, || {
            black_box(Histogram::merge_serialized(black_box(&many)).unwrap());
        });
        bench(&format!("generic_merge100_{name}"), 20, || {
            black_box(generic(black_box(&many)));
        });
        bench(&format!("deserialize1_{name}"), 500, || {
            black_box(Histogram::deserialize(black_box(&many[0])).unwrap());
        });
    }
}
