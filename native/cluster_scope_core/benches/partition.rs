//! Timings of the partition subsystem: `cargo bench -p cluster_scope_core
//! --bench partition`.
//!
//! No framework: each case runs a warm-up, then many timed samples
//! (`std::time::Instant`), and prints one line
//!
//! ```text
//! RESULT bench=partition_core case=<case> median_us=<m> p99_us=<p> samples=<k>
//! ```
//!
//! An argument selects the cases whose name contains it (`cargo bench -p
//! cluster_scope_core --bench partition -- classify`).
//!
//! Operations far below a microsecond (a heartbeat, a phi read) are timed in
//! batches and the per-operation time is the batch time divided by its size.

use std::hint::black_box;

use cluster_scope_core::partition::{
    classify, heals, Detectors, DetectorsConfig, Observation, PhiConfig, PhiDetector, Reach,
};

mod common;

fn bench(case: &str, samples: usize, batch: usize, op: impl FnMut()) {
    common::bench("partition_core", common::us(4), case, samples, batch, op);
}

fn names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("node{i}@10.0.{}.{}", i / 250, i % 250 + 1))
        .collect()
}

/// A 600/400 partition seen from node 0, on the big side: the rows of the
/// small side are unknown, the big side reports it unreachable, and the
/// connections to it lose data.
fn split_600_400() -> Observation {
    let n = 1_000;
    let mut obs = Observation::fully_reachable(names(n), 0);
    for i in 0..n {
        for j in 0..n {
            if i < 600 && j >= 600 {
                obs.reach[i][j] = Reach::Unreachable;
            } else if i >= 600 {
                obs.reach[i][j] = Reach::Unknown;
            }
        }
    }
    for j in 600..n {
        obs.net_loss[j] = true;
    }
    obs
}

/// 1,000 nodes, 50 distinct one-way pairs at pseudo-random places.
fn one_way_50() -> Observation {
    let n = 1_000;
    let mut obs = Observation::fully_reachable(names(n), 0);
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut placed = 0;
    while placed < 50 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (a, b) = ((seed % 1_000) as usize, ((seed >> 20) % 1_000) as usize);
        if a != b && obs.reach[a][b] == Reach::Reachable && obs.reach[b][a] == Reach::Reachable {
            obs.reach[a][b] = Reach::Unreachable;
            placed += 1;
        }
    }
    obs
}

fn main() {
    // (a) One heartbeat into a full window.
    let mut detector = PhiDetector::new(PhiConfig::default()).unwrap();
    let mut now = 0.0;
    for _ in 0..1_000 {
        now += 100.0;
        detector.heartbeat(now);
    }
    let batch = 10_000;
    bench("phi_heartbeat", 1_000, batch, || {
        for _ in 0..batch {
            now += 100.0;
            detector.heartbeat(black_box(now));
        }
    });

    // (b) One phi read.
    let last = detector.last_heartbeat_ms().unwrap();
    let mut silence = 0.0;
    bench("phi_read", 1_000, batch, || {
        for _ in 0..batch {
            silence = (silence + 0.37) % 2_000.0;
            black_box(detector.phi(black_box(last + silence)));
        }
    });

    // A heartbeat through the per-peer set (hash lookup included), 1,000 peers.
    let peers = names(1_000);
    let mut set = Detectors::new(DetectorsConfig::default()).unwrap();
    let mut t = 0.0;
    for peer in &peers {
        set.heartbeat(peer, t).unwrap();
    }
    let mut next = 0;
    bench("detectors_heartbeat_1000_peers", 1_000, batch, || {
        for _ in 0..batch {
            t += 0.1;
            set.heartbeat(&peers[next], black_box(t)).unwrap();
            next = (next + 1) % peers.len();
        }
    });
    bench("detectors_all_1000_peers", 200, 1, || {
        black_box(set.all(black_box(t)));
    });

    // (c) 1,000 nodes, all reachable.
    let healthy = Observation::fully_reachable(names(1_000), 0);
    assert_eq!(
        classify(&healthy).unwrap().status.as_str(),
        "healthy",
        "the healthy case classifies as healthy"
    );
    bench("classify_1000_healthy", 300, 1, || {
        black_box(classify(black_box(&healthy)).unwrap());
    });

    // (d) 1,000 nodes split 600/400.
    let split = split_600_400();
    let c = classify(&split).unwrap();
    assert_eq!(c.status.as_str(), "split");
    assert_eq!(c.side.as_str(), "majority");
    bench("classify_1000_split", 300, 1, || {
        black_box(classify(black_box(&split)).unwrap());
    });

    // (e) 1,000 nodes with 50 one-way pairs.
    let one_way = one_way_50();
    let c = classify(&one_way).unwrap();
    assert_eq!(c.status.as_str(), "one_way");
    assert_eq!(c.one_way.len(), 50);
    bench("classify_1000_one_way_50", 300, 1, || {
        black_box(classify(black_box(&one_way)).unwrap());
    });

    // The split healing: which of the 240,000 cut links came back.
    assert_eq!(heals(&split, &healthy).unwrap().len(), 240_000);
    bench("heals_1000_split_to_healthy", 100, 1, || {
        black_box(heals(black_box(&split), black_box(&healthy)).unwrap());
    });
}
