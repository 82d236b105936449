//! A histogram many threads record into at once.
//!
//! # Design, and why
//!
//! Every BEAM scheduler thread may record into one histogram at the same
//! time. One `Mutex<Histogram>` would make them take turns on one lock and
//! pass its cache line from core to core on every record. Two ways out were
//! measured on the 2-core machine this runs on (the `measure_alternatives`
//! test, `cargo test --release -p cluster_scope_core -- --ignored --nocapture
//! measure_alternatives`):
//!
//! * **full shards**: N `Mutex<Histogram>`, a recorder locks the one of its
//!   thread, a read merges the N. Records never meet, but each shard is a
//!   whole counts array (184 KiB for 1 us..1 h at 3 figures), so memory is N
//!   times larger, and every read first copies and adds N arrays (tens of
//!   microseconds).
//! * **buffered shards** (this type): N small buffers of [`BUFFER_LEN`]
//!   values, one per thread (a `parking_lot::Mutex<Vec<u64>>` each, on its
//!   own cache line), in front of ONE histogram. A record locks its thread's
//!   buffer (uncontended: a compare-and-swap on a line that core owns) and
//!   appends; once per [`BUFFER_LEN`] values the buffer is emptied into the
//!   histogram under its lock. A read empties every buffer into the
//!   histogram, then reads it in place: no copy, no merge.
//!
//! Measured (2 cores, 5 M latency-like records per thread; "ns" is wall
//! clock divided by all the records made):
//!
//! | | 1 thread | 2 threads | 4 quantiles | memory |
//! |---|---|---|---|---|
//! | single lock | 9.1 ns | 15.9 ns | 5.9 us | 184 KiB |
//! | full shards (4) | 8.6 ns | 4.7 ns | 27.9 us | up to 4 x 184 KiB |
//! | buffered shards (4) | 9.2 ns | 8.7 ns | 4.0 us | 184 KiB + 2 KiB per thread |
//!
//! Full shards scale best when threads do nothing but record, because the
//! buffered design still funnels every value through one histogram (about 5
//! ns of work each, under its lock). But a record from Elixir costs about
//! 60 ns of NIF call around those few nanoseconds, so on the BEAM the one
//! histogram is busy a small fraction of the time: two processes recording
//! into one histogram take the same 60 ns per call as two recording into two
//! (measured). Buffered shards were chosen for what the BEAM does see: reads
//! seven times cheaper than full shards (no merge on read), one counts array
//! instead of one per thread (an operation's histogram would otherwise cost
//! up to 4 x 184 KiB here, 16 x on an 8-core host), and no single lock shared
//! by all recorders.
//!
//! A thread's buffer is picked from a per-thread number handed out round
//! robin on its first record (`thread_local`), masked to the shard count
//! (a power of two, by default twice the cores, at most [`MAX_SHARDS`]), so
//! each scheduler thread of a node has its own buffer as long as there are no
//! more recording threads than shards; when two share one, they only share
//! that small lock.
//!
//! Reads are exact: every value recorded before a read began is in it. A read
//! is not a snapshot of one instant across threads (a value recorded while
//! the read drains the buffers may or may not be counted).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

use super::histogram::{check_batch, check_quantiles, le_values};
use super::{Format, Histogram, HistogramConfig, MetricsError, Stats};

/// Values a per-thread buffer holds before it is emptied into the histogram.
pub const BUFFER_LEN: usize = 256;
/// The most shards (per-thread buffers) a histogram has.
pub const MAX_SHARDS: usize = 64;
/// Batch values recorded per acquisition of the histogram's lock, so a huge
/// batch never holds it for more than some tens of microseconds at a time.
const BATCH_CHUNK: usize = 4096;

/// The default number of shards: twice the available cores as a power of
/// two, between 2 and [`MAX_SHARDS`] (each costs [`BUFFER_LEN`] * 8 bytes
/// once its thread has recorded).
///
/// Computed once: `available_parallelism` reads cgroup files on Linux, which
/// costs hundreds of microseconds.
pub fn default_shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores * 2).next_power_of_two().clamp(2, MAX_SHARDS)
    })
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_HINT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A number for this thread, handed out round robin on first use.
#[inline]
fn thread_hint() -> usize {
    THREAD_HINT.with(|hint| {
        let n = hint.get();
        if n != usize::MAX {
            return n;
        }
        let n = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % (1 << 20);
        hint.set(n);
        n
    })
}

/// One per-thread buffer, alone on its cache lines.
#[repr(align(128))]
struct Shard(Mutex<Vec<u64>>);

/// A histogram that many threads record into at once; see the module
/// documentation. Every method takes `&self`.
pub struct ShardedHistogram {
    config: HistogramConfig,
    shards: Box<[Shard]>,
    mask: usize,
    main: Mutex<Histogram>,
}

impl std::fmt::Debug for ShardedHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedHistogram")
            .field("config", &self.config)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl ShardedHistogram {
    /// An empty histogram with [`default_shards`] shards.
    pub fn new(config: HistogramConfig) -> Self {
        Self::with_shards(config, default_shards())
    }

    /// An empty histogram with `shards` shards (rounded up to a power of two,
    /// between 1 and [`MAX_SHARDS`]).
    pub fn with_shards(config: HistogramConfig, shards: usize) -> Self {
        Self::from_histogram(Histogram::new(config), shards)
    }

    /// A sharded histogram holding `histogram`'s values.
    pub fn from_histogram(histogram: Histogram, shards: usize) -> Self {
        let n = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        ShardedHistogram {
            config: histogram.config(),
            shards: (0..n).map(|_| Shard(Mutex::new(Vec::new()))).collect(),
            mask: n - 1,
            main: Mutex::new(histogram),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> HistogramConfig {
        self.config
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Records one value (clamped like [`Histogram::record`]). Appends to this
    /// thread's buffer; one call in [`BUFFER_LEN`] also empties it into the
    /// histogram.
    #[inline]
    pub fn record(&self, value: u64) {
        let mut buffer = self.shards[thread_hint() & self.mask].0.lock();
        if buffer.capacity() == 0 {
            buffer.reserve_exact(BUFFER_LEN);
        }
        buffer.push(value);
        if buffer.len() >= BUFFER_LEN {
            self.main.lock().record_all(buffer.drain(..));
        }
    }

    /// Records `value` `n` times, straight into the histogram (one lock).
    pub fn record_n(&self, value: u64, n: u64) {
        if n > 0 {
            self.main.lock().record_n(value, n);
        }
    }

    /// Records a batch of little-endian `u64`s (see
    /// [`Histogram::record_le_bytes`]), taking the histogram's lock once per
    /// 4096 values so that other threads never wait long.
    pub fn record_le_bytes(&self, bytes: &[u8]) -> Result<usize, MetricsError> {
        check_batch(bytes)?;
        for chunk in bytes.chunks(BATCH_CHUNK * 8) {
            self.main.lock().record_all(le_values(chunk));
        }
        Ok(bytes.len() / 8)
    }

    /// Runs `f` on the histogram once every buffer has been emptied into it.
    pub fn read<R>(&self, f: impl FnOnce(&mut Histogram) -> R) -> R {
        for shard in self.shards.iter() {
            let mut buffer = shard.0.lock();
            if !buffer.is_empty() {
                self.main.lock().record_all(buffer.drain(..));
            }
        }
        f(&mut self.main.lock())
    }

    /// See [`Histogram::quantiles`].
    pub fn quantiles(&self, quantiles: &[f64]) -> Result<Vec<u64>, MetricsError> {
        // Validate before draining: a bad call costs nothing.
        check_quantiles(quantiles)?;
        self.read(|h| h.quantiles(quantiles))
    }

    /// See [`Histogram::stats`].
    pub fn stats(&self) -> Stats {
        self.read(|h| h.stats())
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.read(|h| h.count())
    }

    /// A copy of the histogram with every value recorded so far.
    pub fn snapshot(&self) -> Histogram {
        self.read(|h| h.clone())
    }

    /// Empties every buffer and the histogram.
    pub fn reset(&self) {
        for shard in self.shards.iter() {
            shard.0.lock().clear();
        }
        self.main.lock().reset();
    }

    /// Adds `other`'s values (see [`Histogram::merge`]).
    pub fn merge_histogram(&self, other: &Histogram) {
        self.main.lock().merge(other);
    }

    /// Adds `other`'s values. `other` may be `self` (which doubles every
    /// count). Takes a copy of `other` first, so no two histograms' locks are
    /// ever held together.
    pub fn merge(&self, other: &ShardedHistogram) {
        let copy = other.snapshot();
        self.merge_histogram(&copy);
    }

    /// See [`Histogram::serialize`]. Works on a copy, so recorders never wait
    /// for the encoder (a deflate stream costs a few hundred microseconds).
    pub fn serialize(&self, format: Format) -> Result<Vec<u8>, MetricsError> {
        self.snapshot().serialize(format)
    }
}

#[cfg(test)]
mod tests {
    use super::super::histogram::tests::latency;
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::time::Instant;

    fn sharded(shards: usize) -> ShardedHistogram {
        ShardedHistogram::with_shards(HistogramConfig::LATENCY_US, shards)
    }

    #[test]
    fn shard_counts_are_powers_of_two() {
        assert_eq!(sharded(3).shards(), 4);
        assert_eq!(sharded(0).shards(), 1);
        assert_eq!(sharded(1000).shards(), MAX_SHARDS);
        let n = default_shards();
        assert!(n.is_power_of_two() && (2..=MAX_SHARDS).contains(&n));
    }

    #[test]
    fn reads_see_buffered_values() {
        let h = sharded(4);
        h.record(10);
        h.record(20);
        assert_eq!(h.count(), 2);
        assert_eq!(h.quantiles(&[0.0, 1.0]).unwrap(), vec![10, 20]);
        h.record_n(30, 3);
        assert_eq!(h.stats().count, 5);
        h.reset();
        assert_eq!(h.count(), 0);
        h.record(7);
        assert_eq!(h.snapshot().count(), 1);
    }

    #[test]
    fn bad_input_is_refused_before_work() {
        let h = sharded(2);
        assert!(matches!(
            h.record_le_bytes(&[1, 2, 3]),
            Err(MetricsError::InvalidBatch { bytes: 3 })
        ));
        assert!(matches!(
            h.quantiles(&[2.0]),
            Err(MetricsError::InvalidQuantile { .. })
        ));
    }

    #[test]
    fn merge_with_itself_doubles() {
        let h = sharded(2);
        h.record_le_bytes(&[5u64, 6, 7].map(u64::to_le_bytes).concat())
            .unwrap();
        h.merge(&h);
        assert_eq!(h.count(), 6);
    }

    #[test]
    fn many_threads_lose_nothing() {
        let h = Arc::new(sharded(2));
        let threads = 4;
        let per_thread = 100_000u64;
        std::thread::scope(|s| {
            for t in 0..threads {
                let h = Arc::clone(&h);
                s.spawn(move || {
                    for i in 0..per_thread {
                        h.record(1 + (i * 7 + t) % 10_000);
                        if i.is_multiple_of(10_000) {
                            // Readers in the middle of recording.
                            let _ = h.quantiles(&[0.5]);
                        }
                    }
                });
            }
        });
        assert_eq!(h.count(), threads * per_thread);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn sharded_equals_unsharded(
            values in prop::collection::vec(
                prop_oneof![1u64..100_000, 1u64..10_000_000_000], 0..2000),
            threads in 1usize..4,
            shards in 1usize..8,
            batch_every in 0usize..5,
        ) {
            let h = sharded(shards);
            // Spread the values over threads (and over record, record_n and
            // batches) so that several buffers and flushes are involved.
            std::thread::scope(|s| {
                for chunk in values.chunks(values.len() / threads + 1) {
                    let h = &h;
                    s.spawn(move || {
                        for (i, part) in chunk.chunks(7).enumerate() {
                            if batch_every > 0 && i.is_multiple_of(batch_every) {
                                let bytes: Vec<u8> =
                                    part.iter().flat_map(|v| v.to_le_bytes()).collect();
                                h.record_le_bytes(&bytes).unwrap();
                            } else if part.len() == 1 {
                                h.record_n(part[0], 1);
                            } else {
                                part.iter().for_each(|&v| h.record(v));
                            }
                        }
                    });
                }
            });
            let mut one = latency();
            one.record_all(values.iter().copied());
            prop_assert_eq!(h.stats(), one.stats());
            let qs = [0.0, 0.5, 0.9, 0.99, 0.999, 1.0];
            prop_assert_eq!(h.quantiles(&qs).unwrap(), one.quantiles(&qs).unwrap());
            let back = Histogram::deserialize(&h.serialize(Format::Compressed).unwrap()).unwrap();
            prop_assert_eq!(back.quantiles(&qs).unwrap(), one.quantiles(&qs).unwrap());
        }
    }

    // ---------------------------------------------------------------------
    // Measurement of the alternatives (run by hand, in release mode).
    // ---------------------------------------------------------------------

    /// The alternative with whole histograms as shards, for comparison only.
    struct FullShards {
        shards: Box<[FullShard]>,
        mask: usize,
    }

    #[repr(align(128))]
    struct FullShard(Mutex<Option<Histogram>>);

    impl FullShards {
        fn new(n: usize) -> Self {
            FullShards {
                shards: (0..n).map(|_| FullShard(Mutex::new(None))).collect(),
                mask: n - 1,
            }
        }

        fn record(&self, value: u64) {
            let mut shard = self.shards[thread_hint() & self.mask].0.lock();
            shard.get_or_insert_with(latency).record(value);
        }

        fn quantiles(&self, qs: &[f64]) -> Vec<u64> {
            let mut merged: Option<Histogram> = None;
            for shard in self.shards.iter() {
                if let Some(h) = shard.0.lock().as_ref() {
                    match merged.as_mut() {
                        None => merged = Some(h.clone()),
                        Some(m) => m.merge(h),
                    }
                }
            }
            merged.unwrap_or_else(latency).quantiles(qs).unwrap()
        }
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Latency-like: mostly 10 us .. 10 ms, a tail to 1 s.
    fn latency_value(state: &mut u64) -> u64 {
        let r = xorshift(state);
        if r.is_multiple_of(100) {
            1 + r % 1_000_000
        } else {
            10 + r % 10_000
        }
    }

    /// ns per record with `threads` threads recording `per_thread` each.
    fn time_records(threads: usize, per_thread: usize, record: &(dyn Fn(u64) + Sync)) -> f64 {
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                    for _ in 0..per_thread {
                        record(latency_value(&mut state));
                    }
                });
            }
        });
        start.elapsed().as_nanos() as f64 / (threads * per_thread) as f64
    }

    fn time_reads(reads: usize, read: &dyn Fn()) -> f64 {
        let start = Instant::now();
        for _ in 0..reads {
            read();
        }
        start.elapsed().as_nanos() as f64 / reads as f64 / 1000.0
    }

    #[test]
    #[ignore = "measurement: run with --release --ignored --nocapture"]
    fn measure_alternatives() {
        let per_thread = 5_000_000;
        let qs = [0.5, 0.9, 0.99, 0.999];
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("cores: {cores}, {per_thread} records per thread");

        let single = Mutex::new(latency());
        let full = FullShards::new(default_shards());
        let buffered = sharded(default_shards());
        for threads in [1, 2] {
            let ns_single = time_records(threads, per_thread, &|v| single.lock().record(v));
            let ns_full = time_records(threads, per_thread, &|v| full.record(v));
            let ns_buffered = time_records(threads, per_thread, &|v| buffered.record(v));
            println!(
                "record, {threads} thread(s): single lock {ns_single:.1} ns, \
                 full shards {ns_full:.1} ns, buffered shards {ns_buffered:.1} ns \
                 (per record, wall clock / records)"
            );
        }
        // Reads after recording (buffers partly full, as in real use).
        buffered.record(5);
        let us_single = time_reads(2_000, &|| {
            single.lock().quantiles(&qs).unwrap();
        });
        let us_full = time_reads(2_000, &|| {
            full.quantiles(&qs);
        });
        let us_buffered = time_reads(2_000, &|| {
            buffered.record(5);
            buffered.quantiles(&qs).unwrap();
        });
        println!(
            "4 quantiles: single lock {us_single:.2} us, full shards {us_full:.2} us, \
             buffered shards {us_buffered:.2} us"
        );
        let counts = HistogramConfig::LATENCY_US.counts_bytes().unwrap();
        println!(
            "memory for 1 us..1 h at 3 figures: single {counts} B, full shards up to {} B, \
             buffered {} B + {} B per recording thread",
            counts * default_shards(),
            counts,
            BUFFER_LEN * 8
        );
        // 10,000 latency-like values per histogram: the shape of one
        // operation's latencies on one node.
        for format in [Format::Compressed, Format::Uncompressed] {
            let many: Vec<Vec<u8>> = (0..100u64)
                .map(|i| {
                    let mut h = latency();
                    let mut state = i + 1;
                    for _ in 0..10_000 {
                        h.record(latency_value(&mut state));
                    }
                    h.serialize(format).unwrap()
                })
                .collect();
            let mut one = latency();
            one.record_all(1..10_000);
            let us_ser = time_reads(200, &|| {
                one.serialize(format).unwrap();
            });
            let us_de = time_reads(200, &|| {
                Histogram::deserialize(&many[0]).unwrap();
            });
            let us_merge = time_reads(20, &|| {
                Histogram::merge_serialized(&many).unwrap();
            });
            println!(
                "{format:?}: serialize {us_ser:.1} us, deserialize {us_de:.1} us ({} bytes), \
                 merge 100: {:.2} ms",
                many[0].len(),
                us_merge / 1000.0
            );
        }
    }
}
