//! One HdrHistogram with a validated configuration and a saturated count.

use std::io::Cursor;

use hdrhistogram::serialization::{
    DeserializeError, Deserializer, Serializer, V2DeflateSerializer, V2Serializer,
};

use super::{v2, Format, HistogramConfig, MetricsError, MAX_QUANTILES, MAX_SERIALIZED_BYTES};

/// Summary figures of a histogram. All zero when it is empty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Values recorded (saturated ones included).
    pub count: u64,
    /// The lowest recorded value, at the histogram's precision (the lowest
    /// value equivalent to it).
    pub min: u64,
    /// The highest recorded value, at the histogram's precision (the highest
    /// value equivalent to it).
    pub max: u64,
    pub mean: f64,
    /// Population standard deviation.
    pub stdev: f64,
    /// Values above the highest trackable value, clamped to it.
    pub saturated: u64,
}

/// One histogram: not shared between threads by itself (see
/// [`super::ShardedHistogram`]). Every method is bounded by the size of the
/// counts array ([`HistogramConfig::counts_bytes`] / 8), and most stop at the
/// highest recorded value.
#[derive(Debug, Clone)]
pub struct Histogram {
    config: HistogramConfig,
    inner: hdrhistogram::Histogram<u64>,
    saturated: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new(config: HistogramConfig) -> Self {
        // A validated configuration always builds (HistogramConfig::new tried).
        let inner = config
            .build()
            .expect("a validated HistogramConfig always builds");
        Histogram {
            config,
            inner,
            saturated: 0,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> HistogramConfig {
        self.config
    }

    /// Records one value; a value above the highest trackable one is clamped
    /// to it and counted as saturated.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `value` `n` times (nothing when `n` is 0).
    #[inline]
    pub fn record_n(&mut self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        let value = if value > self.config.highest() {
            self.saturated = self.saturated.saturating_add(n);
            self.config.highest()
        } else {
            value
        };
        // In range (clamped above), so this cannot fail or clamp again.
        self.inner.saturating_record_n(value, n);
    }

    /// Records every value of `values`.
    pub fn record_all(&mut self, values: impl IntoIterator<Item = u64>) {
        for value in values {
            self.record(value);
        }
    }

    /// Records a batch of values given as consecutive little-endian `u64`s.
    /// Returns how many were recorded; a slice whose length is not a multiple
    /// of 8 records nothing and is an [`MetricsError::InvalidBatch`].
    pub fn record_le_bytes(&mut self, bytes: &[u8]) -> Result<usize, MetricsError> {
        check_batch(bytes)?;
        self.record_all(le_values(bytes));
        Ok(bytes.len() / 8)
    }

    /// The values at several quantiles (each in `0.0..=1.0`), in the order
    /// given, in one pass over the counts. An empty histogram gives zeros.
    ///
    /// The value at quantile `q` is the highest value equivalent (at the
    /// configured precision) to the smallest recorded value with at least
    /// `q * count` values at or below it; `0.0` gives the lowest equivalent
    /// of the minimum.
    pub fn quantiles(&self, quantiles: &[f64]) -> Result<Vec<u64>, MetricsError> {
        let order = check_quantiles(quantiles)?;
        let sorted = self
            .inner
            .value_at_quantiles(order.iter().map(|&i| quantiles[i]));
        let mut out = vec![0; quantiles.len()];
        for (&i, value) in order.iter().zip(sorted) {
            out[i] = value;
        }
        Ok(out)
    }

    /// Count, min, max, mean, standard deviation and saturated count. One
    /// walk over the recorded values (HdrHistogram's own `mean` and `stdev`
    /// would take three).
    pub fn stats(&self) -> Stats {
        let total = self.inner.len();
        if total == 0 {
            return Stats {
                count: 0,
                min: 0,
                max: 0,
                mean: 0.0,
                stdev: 0.0,
                saturated: self.saturated,
            };
        }
        // (value, count) of every distinct value, each value taken as the
        // middle of its equivalence range, as HdrHistogram's mean does.
        let recorded: Vec<(f64, f64)> = self
            .inner
            .iter_recorded()
            .map(|v| {
                (
                    self.inner.median_equivalent(v.value_iterated_to()) as f64,
                    v.count_at_value() as f64,
                )
            })
            .collect();
        let n = total as f64;
        let mean = recorded.iter().map(|(v, c)| v * c).sum::<f64>() / n;
        let variance = recorded
            .iter()
            .map(|(v, c)| (v - mean) * (v - mean) * c)
            .sum::<f64>()
            / n;
        Stats {
            count: total,
            min: self.inner.min(),
            max: self.inner.max(),
            mean,
            stdev: variance.sqrt(),
            saturated: self.saturated,
        }
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// Empties the histogram (configuration unchanged).
    pub fn reset(&mut self) {
        self.inner.reset();
        self.saturated = 0;
    }

    /// Adds every value of `other` to this histogram. When the two have the
    /// same configuration this adds the counts arrays; otherwise each of
    /// `other`'s distinct values is recorded at its own precision, and those
    /// above this histogram's highest value are clamped and counted as
    /// saturated, like [`Histogram::record`]. Never fails.
    pub fn merge(&mut self, other: &Histogram) {
        self.saturated = self.saturated.saturating_add(other.saturated);
        if other.inner.is_empty() {
            return;
        }
        // Same configuration, or every value fits: HdrHistogram adds (and
        // checks the range before it changes anything).
        if (other.config == self.config || other.inner.max() <= self.config.highest())
            && self.inner.add(&other.inner).is_ok()
        {
            return;
        }
        let highest = self.config.highest();
        let other_top = other.config.highest();
        for v in other.inner.iter_recorded() {
            let (value, count) = (v.value_iterated_to(), v.count_at_value());
            if value > highest {
                // Values `other` had clamped already are counted once.
                let already = if other.inner.equivalent(value, other_top) {
                    other.saturated.min(count)
                } else {
                    0
                };
                self.saturated = self.saturated.saturating_add(count - already);
                self.inner.saturating_record_n(highest, count);
            } else {
                self.inner.saturating_record_n(value, count);
            }
        }
    }

    /// HdrHistogram's V2 form: [`Format::Compressed`] (a deflate stream, what
    /// other HdrHistogram ports exchange) or [`Format::Uncompressed`] (larger,
    /// but about ten times cheaper to write and three times cheaper to read).
    pub fn serialize(&self, format: Format) -> Result<Vec<u8>, MetricsError> {
        let mut out = Vec::new();
        let written = match format {
            Format::Compressed => V2DeflateSerializer::new()
                .serialize(&self.inner, &mut out)
                .map_err(|e| format!("{e:?}")),
            Format::Uncompressed => V2Serializer::new()
                .serialize(&self.inner, &mut out)
                .map_err(|e| format!("{e:?}")),
        };
        written.map_err(|message| MetricsError::SerializeFailed { message })?;
        Ok(out)
    }

    /// Reads a histogram written by [`Histogram::serialize`] (or any
    /// HdrHistogram V2 histogram, compressed or not, whose configuration
    /// [`HistogramConfig::new`] accepts). See the module documentation for
    /// what it trusts.
    pub fn deserialize(bytes: &[u8]) -> Result<Histogram, MetricsError> {
        Self::deserialize_with(&mut Deserializer::new(), bytes)
    }

    fn deserialize_with(
        deserializer: &mut Deserializer,
        bytes: &[u8],
    ) -> Result<Histogram, MetricsError> {
        let inner = read::<u64>(deserializer, bytes).map_err(|e| match e {
            ReadError::Invalid(e) => e,
            // Every count fits 64 bits.
            ReadError::CountsTooLarge => MetricsError::InvalidSerialized {
                message: "a count does not fit 64 bits".into(),
            },
        })?;
        let config = config_of(&inner)?;
        Ok(Histogram {
            config,
            inner,
            saturated: 0,
        })
    }

    /// Reads several serialized histograms and merges them into one with the
    /// first one's configuration (see [`Histogram::merge`] for the others').
    /// The error of a bad input names its position.
    ///
    /// The inputs of the first one's configuration (the usual case) are
    /// decoded straight into one counts array (see `metrics/v2.rs`): no
    /// histogram, counts array or inflate state per input, and the result is
    /// built once at the end. Any other input is read as a histogram and
    /// merged like [`Histogram::merge`] does. The result is the same as
    /// deserializing each input and merging them in order (the property tests
    /// check it), and so are the inputs refused (the first bad one's error).
    ///
    /// Lists of at least 64 KiB in all are split between two threads (when
    /// the machine has two cores; inflating is most of the cost), each with
    /// its own counts array; the arrays are added at the end.
    pub fn merge_serialized<B: AsRef<[u8]> + Sync>(
        inputs: &[B],
    ) -> Result<Histogram, MetricsError> {
        let Some(first) = inputs.first() else {
            return Err(MetricsError::Empty {
                what: "histograms to merge",
            });
        };
        check_size(first.as_ref())?;
        let config = v2::Reader::new()
            .config_of(first.as_ref())
            .map_err(|e| at_position(e, 0))?;
        let threads = merge_threads(inputs);
        let mut parts = if threads <= 1 {
            vec![merge_part(inputs, 0, config)?]
        } else {
            let chunk = inputs.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let spawned: Vec<_> = inputs
                    .chunks(chunk)
                    .enumerate()
                    .skip(1)
                    .map(|(n, part)| scope.spawn(move || merge_part(part, n * chunk, config)))
                    .collect();
                let mut parts = vec![merge_part(&inputs[..chunk], 0, config)];
                for handle in spawned {
                    // merge_part does not panic; if it did, so does this.
                    parts.push(
                        handle
                            .join()
                            .unwrap_or_else(|e| std::panic::resume_unwind(e)),
                    );
                }
                // The first bad input's error (parts are in input order).
                parts.into_iter().collect::<Result<Vec<_>, _>>()
            })?
        };
        let (mut counts, mut others) = parts.remove(0);
        for (more_counts, more_others) in parts {
            counts.add_counts(&more_counts);
            match (others.as_mut(), more_others) {
                (Some(o), Some(m)) => o.merge(&m),
                (None, m) => others = m,
                (Some(_), None) => {}
            }
        }
        let mut out = Histogram::new(config);
        for (index, count) in counts.non_zero() {
            // The lowest value of the index: recorded at that same index.
            out.inner.saturating_record_n(counts.value_at(index), count);
        }
        if let Some(others) = others {
            out.merge(&others);
        }
        keep_counts(counts);
        Ok(out)
    }

    /// What [`Histogram::merge_serialized`] computes, the generic way:
    /// deserialize each input and merge it. The reference of the tests.
    #[cfg(test)]
    pub(crate) fn merge_serialized_generic<B: AsRef<[u8]>>(
        inputs: &[B],
    ) -> Result<Histogram, MetricsError> {
        let mut deserializer = Deserializer::new();
        let mut merged: Option<Histogram> = None;
        for (i, bytes) in inputs.iter().enumerate() {
            let h = Self::deserialize_with(&mut deserializer, bytes.as_ref())
                .map_err(|e| at_position(e, i))?;
            match merged.as_mut() {
                None => merged = Some(h),
                Some(m) => m.merge(&h),
            }
        }
        merged.ok_or(MetricsError::Empty {
            what: "histograms to merge",
        })
    }
}

/// A list of serialized histograms of at least this many bytes in all is
/// merged by several threads (below, starting a thread costs more than it
/// saves).
const PARALLEL_MIN_BYTES: usize = 64 * 1024;
/// The most threads one [`Histogram::merge_serialized`] uses.
const MAX_MERGE_THREADS: usize = 2;
/// Inputs per thread, at least.
const MIN_INPUTS_PER_THREAD: usize = 8;

/// How many threads merge `inputs`.
fn merge_threads<B: AsRef<[u8]>>(inputs: &[B]) -> usize {
    let bytes: usize = inputs.iter().map(|b| b.as_ref().len()).sum();
    if bytes < PARALLEL_MIN_BYTES {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores
        .min(MAX_MERGE_THREADS)
        .min(inputs.len() / MIN_INPUTS_PER_THREAD)
        .max(1)
}

// A reader (inflate state and buffer) and a counts array kept by each thread
// between merges: fresh ones are mappings of hundreds of KiB, and mapping,
// faulting in and unmapping them in a process of many threads (the BEAM:
// every unmap is a TLB shootdown) cost more than the merge itself.
thread_local! {
    static SPARE: std::cell::RefCell<(Option<v2::Reader>, Option<v2::Counts>)> =
        const { std::cell::RefCell::new((None, None)) };
}

fn spare() -> (Option<v2::Reader>, Option<v2::Counts>) {
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        (s.0.take(), s.1.take())
    })
}

fn keep_reader(reader: v2::Reader) {
    SPARE.with(|s| s.borrow_mut().0 = Some(reader));
}

fn keep_counts(counts: v2::Counts) {
    SPARE.with(|s| s.borrow_mut().1 = Some(counts));
}

/// One thread's share of a merge: the counts of the inputs of `config`, and
/// the others merged into a histogram of `config`. `offset` is the position
/// of `inputs[0]` in the whole list (for errors).
fn merge_part<B: AsRef<[u8]>>(
    inputs: &[B],
    offset: usize,
    config: HistogramConfig,
) -> Result<(v2::Counts, Option<Histogram>), MetricsError> {
    let (reader, counts) = spare();
    let mut reader = reader.unwrap_or_else(v2::Reader::new);
    let mut counts = match counts {
        Some(c) => c.reset_for(config)?,
        None => v2::Counts::new(config)?,
    };
    let result = merge_into(inputs, offset, config, &mut reader, &mut counts);
    keep_reader(reader);
    result.map(|others| (counts, others))
}

fn merge_into<B: AsRef<[u8]>>(
    inputs: &[B],
    offset: usize,
    config: HistogramConfig,
    reader: &mut v2::Reader,
    counts: &mut v2::Counts,
) -> Result<Option<Histogram>, MetricsError> {
    let mut others: Option<Histogram> = None;
    let mut deserializer: Option<Deserializer> = None;
    for (i, bytes) in inputs.iter().enumerate() {
        let bytes = bytes.as_ref();
        check_size(bytes)?;
        let at = |e| at_position(e, offset + i);
        match reader.add(bytes, counts).map_err(at)? {
            v2::Step::Added => {}
            v2::Step::Other => {
                let deserializer = deserializer.get_or_insert_with(Deserializer::new);
                let h = Histogram::deserialize_with(deserializer, bytes).map_err(at)?;
                others
                    .get_or_insert_with(|| Histogram::new(config))
                    .merge(&h);
            }
        }
    }
    Ok(others)
}

/// Refuses a serialized histogram over [`MAX_SERIALIZED_BYTES`].
fn check_size(bytes: &[u8]) -> Result<(), MetricsError> {
    if bytes.len() > MAX_SERIALIZED_BYTES {
        return Err(MetricsError::TooLarge {
            what: "serialized histogram (bytes)",
            limit: MAX_SERIALIZED_BYTES,
            actual: bytes.len(),
        });
    }
    Ok(())
}

enum ReadError {
    /// A count does not fit the counter type asked for.
    CountsTooLarge,
    Invalid(MetricsError),
}

/// Reads one serialized histogram with `T` counters.
fn read<T: hdrhistogram::Counter>(
    deserializer: &mut Deserializer,
    bytes: &[u8],
) -> Result<hdrhistogram::Histogram<T>, ReadError> {
    check_size(bytes).map_err(ReadError::Invalid)?;
    deserializer
        .deserialize(&mut Cursor::new(bytes))
        .map_err(|e| match e {
            DeserializeError::UnsuitableCounterType => ReadError::CountsTooLarge,
            e => ReadError::Invalid(MetricsError::InvalidSerialized {
                message: e.to_string(),
            }),
        })
}

/// The configuration of a deserialized histogram, checked like any other.
fn config_of<T: hdrhistogram::Counter>(
    h: &hdrhistogram::Histogram<T>,
) -> Result<HistogramConfig, MetricsError> {
    HistogramConfig::new(h.low(), h.high(), u32::from(h.sigfig())).map_err(|e| {
        MetricsError::InvalidSerialized {
            message: e.to_string(),
        }
    })
}

/// Names the position of a bad input in a list.
fn at_position(e: MetricsError, i: usize) -> MetricsError {
    match e {
        MetricsError::InvalidSerialized { message } => MetricsError::InvalidSerialized {
            message: format!("histogram {i} of the list: {message}"),
        },
        other => other,
    }
}

/// Checks a batch's length.
pub(crate) fn check_batch(bytes: &[u8]) -> Result<(), MetricsError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(MetricsError::InvalidBatch { bytes: bytes.len() });
    }
    Ok(())
}

/// The values of a batch whose length is a multiple of 8.
pub(crate) fn le_values(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(8).map(|chunk| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        u64::from_le_bytes(word)
    })
}

/// Validates quantiles and returns their positions sorted by value.
pub(crate) fn check_quantiles(quantiles: &[f64]) -> Result<Vec<usize>, MetricsError> {
    if quantiles.len() > MAX_QUANTILES {
        return Err(MetricsError::TooLarge {
            what: "number of quantiles",
            limit: MAX_QUANTILES,
            actual: quantiles.len(),
        });
    }
    if let Some((index, &value)) = quantiles
        .iter()
        .enumerate()
        .find(|(_, q)| !(0.0..=1.0).contains(*q))
    {
        return Err(MetricsError::InvalidQuantile { index, value });
    }
    let mut order: Vec<usize> = (0..quantiles.len()).collect();
    // No NaN is left, so the comparison is total.
    order.sort_by(|&a, &b| quantiles[a].total_cmp(&quantiles[b]));
    Ok(order)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn latency() -> Histogram {
        Histogram::new(HistogramConfig::LATENCY_US)
    }

    /// The exact quantile of sorted data, as HdrHistogram defines it: the
    /// smallest value with at least `ceil(q * n)` (at least 1) values at or
    /// below it.
    pub(crate) fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    /// Whether `got` is within the precision of `sigfig` figures of `exact`:
    /// HdrHistogram reports the highest value equivalent to the exact one,
    /// which is at most `exact * 10^-sigfig` above it (plus one unit for the
    /// integer bucket edges), never below it.
    pub(crate) fn within_precision(got: u64, exact: u64, sigfig: u8) -> bool {
        let slack = (exact as f64 / 10f64.powi(i32::from(sigfig))).ceil() as u64 + 1;
        got >= exact && got <= exact + slack
    }

    #[test]
    fn records_and_answers_quantiles() {
        let mut h = latency();
        h.record_all(1..=1000);
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantiles(&[0.5, 0.0, 1.0]).unwrap(), vec![500, 1, 1000]);
        let s = h.stats();
        assert_eq!((s.count, s.min, s.max, s.saturated), (1000, 1, 1000, 0));
        assert!((s.mean - 500.5).abs() < 0.5, "{}", s.mean);
        assert!((s.stdev - 288.67).abs() < 1.0, "{}", s.stdev);
    }

    #[test]
    fn empty_histogram_gives_zeros() {
        let h = latency();
        assert_eq!(h.quantiles(&[0.0, 0.5, 1.0]).unwrap(), vec![0, 0, 0]);
        assert_eq!(
            h.stats(),
            Stats {
                count: 0,
                min: 0,
                max: 0,
                mean: 0.0,
                stdev: 0.0,
                saturated: 0
            }
        );
        assert_eq!(h.quantiles(&[]).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn values_above_the_range_are_clamped_and_counted() {
        let config = HistogramConfig::new(1, 1000, 3).unwrap();
        let mut h = Histogram::new(config);
        h.record(5);
        h.record(u64::MAX);
        h.record_n(2000, 3);
        let s = h.stats();
        assert_eq!((s.count, s.saturated, s.max), (5, 4, 1000));
        assert_eq!(h.quantiles(&[1.0]).unwrap(), vec![1000]);
        h.reset();
        assert_eq!(h.stats().saturated, 0);
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn record_n_zero_is_a_no_op() {
        let mut h = latency();
        h.record_n(10, 0);
        h.record_n(u64::MAX, 0);
        assert_eq!(h.stats().count, 0);
        assert_eq!(h.stats().saturated, 0);
    }

    #[test]
    fn batches_are_little_endian_u64s() {
        let mut h = latency();
        let bytes: Vec<u8> = [3u64, 7, 7, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(h.record_le_bytes(&bytes).unwrap(), 4);
        assert_eq!(h.count(), 4);
        assert_eq!(h.stats().saturated, 1);
        assert_eq!(
            h.record_le_bytes(&bytes[..7]),
            Err(MetricsError::InvalidBatch { bytes: 7 })
        );
        assert_eq!(h.count(), 4);
        assert_eq!(h.record_le_bytes(&[]).unwrap(), 0);
    }

    #[test]
    fn bad_quantiles_are_named() {
        let h = latency();
        assert_eq!(
            h.quantiles(&[0.5, 1.5]),
            Err(MetricsError::InvalidQuantile {
                index: 1,
                value: 1.5
            })
        );
        assert!(matches!(
            h.quantiles(&[f64::NAN]),
            Err(MetricsError::InvalidQuantile { index: 0, .. })
        ));
        assert!(h.quantiles(&[-0.1]).is_err());
        assert!(matches!(
            h.quantiles(&vec![0.5; MAX_QUANTILES + 1]),
            Err(MetricsError::TooLarge { .. })
        ));
    }

    #[test]
    fn merge_of_other_configs_clamps() {
        let mut small = Histogram::new(HistogramConfig::new(1, 1000, 2).unwrap());
        let mut big = latency();
        big.record_all([10, 100, 5000, 1_000_000]);
        small.merge(&big);
        let s = small.stats();
        assert_eq!((s.count, s.saturated), (4, 2));
        // 1000 at 2 figures: the highest value equivalent to it.
        assert!((1000..=1010).contains(&s.max), "{}", s.max);
        // And the other way round: a smaller range fits in a larger one.
        let mut wide = latency();
        wide.merge(&small);
        assert_eq!(wide.count(), 4);
        assert_eq!(wide.stats().saturated, 2);
    }

    #[test]
    fn serialized_form_is_v2_compressed() {
        let mut h = latency();
        h.record_all([1, 2, 3, 1000, 1_000_000]);
        let bytes = h.serialize(Format::Compressed).unwrap();
        // V2 compressed cookie, big-endian.
        assert_eq!(&bytes[..4], &[0x1c, 0x84, 0x93, 0x14]);
        assert!(bytes.len() < 200, "{}", bytes.len());
        let back = Histogram::deserialize(&bytes).unwrap();
        assert_eq!(back.config(), h.config());
        assert_eq!(back.stats(), h.stats());
    }

    #[test]
    fn uncompressed_form_reads_back_too() {
        let mut h = latency();
        h.record_all([1, 2, 3, 1000, 1_000_000]);
        let bytes = h.serialize(Format::Uncompressed).unwrap();
        // V2 (uncompressed) cookie, big-endian.
        assert_eq!(&bytes[..4], &[0x1c, 0x84, 0x93, 0x13]);
        assert_eq!(Histogram::deserialize(&bytes).unwrap().stats(), h.stats());
    }

    #[test]
    fn merge_serialized_merges_and_names_bad_inputs() {
        let mut a = latency();
        a.record_all([10, 20]);
        let mut b = Histogram::new(HistogramConfig::new(1, 1000, 2).unwrap());
        b.record_all([30, 2000]);
        let inputs = [
            a.serialize(Format::Compressed).unwrap(),
            b.serialize(Format::Uncompressed).unwrap(),
        ];
        let merged = Histogram::merge_serialized(&inputs).unwrap();
        assert_eq!(merged.config(), a.config());
        assert_eq!(merged.count(), 4);
        let e = Histogram::merge_serialized(&[inputs[0].clone(), b"junk".to_vec()]).unwrap_err();
        assert_eq!(e.code(), "invalid_serialized");
        assert!(e.to_string().contains("histogram 1 of the list"), "{e}");
        let none: [Vec<u8>; 0] = [];
        assert_eq!(
            Histogram::merge_serialized(&none).unwrap_err().code(),
            "empty"
        );
    }

    #[test]
    fn merge_serialized_takes_the_64_bit_path_when_counts_are_large() {
        let mut a = latency();
        a.record_n(10, u64::from(u32::MAX) + 5);
        let mut b = latency();
        b.record_n(10, 3);
        b.record(20);
        let mut c = latency();
        c.record_n(30, u64::from(u32::MAX) - 1);
        for inputs in [[&a, &b], [&b, &a], [&c, &b]] {
            let bins: Vec<Vec<u8>> = inputs
                .iter()
                .map(|h| h.serialize(Format::Compressed).unwrap())
                .collect();
            let merged = Histogram::merge_serialized(&bins).unwrap();
            assert_eq!(
                merged.count(),
                inputs[0].count() + inputs[1].count(),
                "{inputs:?}"
            );
            assert_eq!(
                merged.stats().max,
                inputs[0].stats().max.max(inputs[1].stats().max)
            );
        }
    }

    #[test]
    fn deserialize_refuses_garbage() {
        let e = Histogram::deserialize(b"not a histogram").unwrap_err();
        assert_eq!(e.code(), "invalid_serialized");
        assert_eq!(
            Histogram::deserialize(&[]).unwrap_err().code(),
            "invalid_serialized"
        );
        let big = vec![0u8; MAX_SERIALIZED_BYTES + 1];
        assert_eq!(
            Histogram::deserialize(&big).unwrap_err().code(),
            "too_large"
        );
        // A valid histogram, truncated.
        let mut h = latency();
        h.record_all(1..100);
        let bytes = h.serialize(Format::Compressed).unwrap();
        // (The zlib checksum at the very end is not read, so cut earlier.)
        for cut in [4, 8, 12, bytes.len() / 2] {
            assert!(
                Histogram::deserialize(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    /// Asserts that two histograms are the same to every public reader:
    /// configuration, stats (saturated count included) and every recorded
    /// value with its count.
    pub(crate) fn assert_same(a: &Histogram, b: &Histogram) {
        assert_eq!(a.config(), b.config());
        assert_eq!(a.stats(), b.stats());
        let recorded = |h: &Histogram| -> Vec<(u64, u64)> {
            h.inner
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect()
        };
        assert_eq!(recorded(a), recorded(b));
        // (hdrhistogram's quantile walk asserts in debug builds when the
        // counts near u64::MAX; the recorded values above cover them.)
        if a.count() < 1 << 62 {
            let qs = [0.0, 0.5, 0.9, 0.99, 0.999, 1.0];
            assert_eq!(a.quantiles(&qs).unwrap(), b.quantiles(&qs).unwrap());
        }
    }

    /// The error's position in the list ("histogram i of the list"), if any.
    fn position(e: &MetricsError) -> Option<String> {
        let m = e.to_string();
        let at = m.find("histogram ")?;
        let end = m[at..].find(" of the list")?;
        Some(m[at..at + end].to_string())
    }

    /// The fast merge against the generic one: the same histogram, or the
    /// same error (code and position).
    pub(crate) fn assert_merges_like_generic<B: AsRef<[u8]> + Sync>(inputs: &[B]) {
        let fast = Histogram::merge_serialized(inputs);
        let generic = Histogram::merge_serialized_generic(inputs);
        match (&fast, &generic) {
            (Ok(a), Ok(b)) => assert_same(a, b),
            (Err(a), Err(b)) => {
                assert_eq!(a.code(), b.code(), "{a} / {b}");
                assert_eq!(position(a), position(b), "{a} / {b}");
            }
            _ => panic!("fast {fast:?}\ngeneric {generic:?}"),
        }
    }

    fn ser(values: &[u64], config: HistogramConfig, format: Format) -> Vec<u8> {
        let mut h = Histogram::new(config);
        h.record_all(values.iter().copied());
        h.serialize(format).unwrap()
    }

    /// A V2 (uncompressed) histogram written by hand: header fields and the
    /// counts' numbers (ZigZag LEB128, as the format says).
    fn v2_by_hand(
        payload_len: Option<u32>,
        figures: u32,
        low: u64,
        high: u64,
        numbers: &[i64],
    ) -> Vec<u8> {
        let mut payload = Vec::new();
        for &n in numbers {
            let mut z = ((n << 1) ^ (n >> 63)) as u64;
            for _ in 0..8 {
                if z < 0x80 {
                    break;
                }
                payload.push((z as u8) | 0x80);
                z >>= 7;
            }
            // The last byte: all 8 bits in the 9th.
            payload.push(z as u8);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&0x1c84_9313u32.to_be_bytes());
        out.extend_from_slice(&payload_len.unwrap_or(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&figures.to_be_bytes());
        out.extend_from_slice(&low.to_be_bytes());
        out.extend_from_slice(&high.to_be_bytes());
        out.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// The V2 compressed form of a V2 form.
    fn compress(v2: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(v2).unwrap();
        let stream = z.finish().unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(&0x1c84_9314u32.to_be_bytes());
        out.extend_from_slice(&(stream.len() as u32).to_be_bytes());
        out.extend_from_slice(&stream);
        out
    }

    #[test]
    fn value_at_is_hdrhistograms_index_layout() {
        for config in [
            HistogramConfig::LATENCY_US,
            HistogramConfig::new(1, 1000, 2).unwrap(),
            HistogramConfig::new(1000, 1_000_000, 2).unwrap(),
            HistogramConfig::new(7, 7 * 1024 + 3, 5).unwrap(),
            HistogramConfig::new(1, u64::MAX, 3).unwrap(),
            HistogramConfig::new((1 << 45) - 1, 1 << 50, 2).unwrap(),
        ] {
            let counts = v2::Counts::new(config).unwrap();
            let len = config.counts_bytes().unwrap() / 8;
            let mut h = Histogram::new(config);
            let mut last = None;
            for i in 0..len {
                let v = counts.value_at(i);
                // The lowest value of its own bucket, and above the last.
                assert_eq!(h.inner.lowest_equivalent(v), v, "{config:?} index {i}");
                assert!(last.is_none_or(|l| v > l), "{config:?} index {i}");
                last = Some(v);
                h.inner.saturating_record_n(v, 1);
            }
            // One value per index: every index was reached once.
            assert_eq!(h.inner.iter_recorded().count(), len, "{config:?}");
        }
    }

    #[test]
    fn fast_merge_equals_generic_on_edge_cases() {
        let l = HistogramConfig::LATENCY_US;
        let narrow = HistogramConfig::new(1, 100_000, 3).unwrap();
        let coarse = HistogramConfig::new(1, 3_600_000_000, 2).unwrap();
        let wide = HistogramConfig::new(1, u64::MAX, 3).unwrap();
        let c = Format::Compressed;
        let u = Format::Uncompressed;
        let cases: Vec<Vec<Vec<u8>>> = vec![
            // Empty ones.
            vec![ser(&[], l, c)],
            vec![ser(&[], l, u), ser(&[], l, c)],
            vec![ser(&[], l, c), ser(&[5], l, u)],
            // One value, the lowest, zero, the highest, past the highest.
            vec![ser(&[1], l, c)],
            vec![ser(&[0], l, c), ser(&[0, 0], l, u)],
            vec![ser(&[3_600_000_000], l, c), ser(&[u64::MAX], l, u)],
            vec![ser(&[u64::MAX, 1], wide, c), ser(&[u64::MAX - 1], wide, u)],
            // Other configurations: narrower first (clamping), wider first,
            // fewer figures, both ways round, mixed with the first's.
            vec![ser(&[5, 50_000], narrow, c), ser(&[7, 1_000_000_000], l, c)],
            vec![
                ser(&[5, 1 << 40], l, u),
                ser(&[70, 1 << 41], wide, c),
                ser(&[9], l, c),
            ],
            vec![ser(&[1234, 99_999], coarse, c), ser(&[1234, 99_999], l, c)],
            vec![
                ser(&[1234, 99_999], l, c),
                ser(&[1234, 99_999], coarse, u),
                ser(&[3], l, c),
            ],
        ];
        for inputs in &cases {
            assert_merges_like_generic(inputs);
        }
    }

    #[test]
    fn fast_merge_equals_generic_with_huge_counts() {
        let mut a = latency();
        a.record_n(10, i64::MAX as u64);
        a.record_n(20, 3);
        let mut b = latency();
        b.record_n(10, i64::MAX as u64);
        b.record_n(10_000, i64::MAX as u64);
        let inputs: Vec<Vec<u8>> = [&a, &b, &a]
            .iter()
            .map(|h| h.serialize(Format::Compressed).unwrap())
            .collect();
        assert_merges_like_generic(&inputs);
        let merged = Histogram::merge_serialized(&inputs).unwrap();
        assert_eq!(merged.count(), u64::MAX);
    }

    #[test]
    fn fast_merge_equals_generic_when_threaded() {
        // Over 64 KiB in all: split between threads. A bad input late in
        // the list, and one of another configuration, must still be found.
        let mut inputs: Vec<Vec<u8>> = (0..40u64)
            .map(|i| {
                let values: Vec<u64> = (0..3000)
                    .map(|k| 10 + (k * 7919 + i * 31) % 20_000)
                    .collect();
                ser(&values, HistogramConfig::LATENCY_US, Format::Uncompressed)
            })
            .collect();
        assert!(inputs.iter().map(Vec::len).sum::<usize>() > PARALLEL_MIN_BYTES);
        assert_merges_like_generic(&inputs);
        inputs[33] = ser(
            &[5, 1 << 33],
            HistogramConfig::new(1, 1 << 34, 2).unwrap(),
            Format::Compressed,
        );
        assert_merges_like_generic(&inputs);
        inputs[37] = b"junk".to_vec();
        assert_merges_like_generic(&inputs);
        inputs[2].truncate(100);
        assert_merges_like_generic(&inputs);
        let e = Histogram::merge_serialized(&inputs).unwrap_err();
        assert!(e.to_string().contains("histogram 2 of the list"), "{e}");
    }

    #[test]
    fn fast_merge_equals_generic_on_hand_written_inputs() {
        let l = HistogramConfig::LATENCY_US;
        let len = (l.counts_bytes().unwrap() / 8) as i64;
        let good = ser(&[10, 20, 20], l, Format::Compressed);
        let by_hand = |numbers: &[i64]| v2_by_hand(None, 3, 1, 3_600_000_000, numbers);
        let cases: Vec<Vec<u8>> = vec![
            // Counts, single zeros and runs.
            by_hand(&[0, 3, -5, 1, 0, 0, 2]),
            // Zeros past the end of the array: accepted.
            by_hand(&[-(len - 1), 4, 0, 0, -1000]),
            // A non-zero count past the end: refused.
            by_hand(&[-len, 1]),
            by_hand(&[-(len - 1), 1, 1]),
            // The longest run, and one past i64.
            by_hand(&[i64::MIN + 1]),
            by_hand(&[i64::MAX]),
            // A payload length over what is there, and under it (the rest
            // ignored), and zero.
            v2_by_hand(Some(1000), 3, 1, 3_600_000_000, &[1, 2, 3]),
            v2_by_hand(Some(2), 3, 1, 3_600_000_000, &[1, 2, 300]),
            v2_by_hand(Some(0), 3, 1, 3_600_000_000, &[1, 2, 300]),
            // A number cut in the middle.
            v2_by_hand(Some(2), 3, 1, 3_600_000_000, &[1, 300]),
            // Bad header fields.
            v2_by_hand(None, 0, 1, 3_600_000_000, &[1]),
            v2_by_hand(None, 6, 1, 3_600_000_000, &[1]),
            v2_by_hand(None, 300, 1, 3_600_000_000, &[1]),
            v2_by_hand(None, 3, 0, 3_600_000_000, &[1]),
            v2_by_hand(None, 3, 10, 15, &[1]),
            v2_by_hand(None, 5, 1, u64::MAX, &[1]),
        ];
        for case in &cases {
            let compressed = compress(case);
            for input in [case, &compressed] {
                assert_merges_like_generic(std::slice::from_ref(input));
                assert_merges_like_generic(&[good.clone(), input.clone()]);
                assert_merges_like_generic(&[input.clone(), good.clone()]);
            }
        }
        // A compressed payload longer than any histogram of its
        // configuration needs (valid: zero counts only past the end).
        let zeros = vec![0i64; (len as usize) * 10];
        let long = compress(&by_hand(&zeros));
        assert_merges_like_generic(&[good.clone(), long.clone()]);
        assert_merges_like_generic(&[long, good.clone()]);
        // Bad fields the hand-writer cannot write: offset, ratio, cookie.
        let mut offset = by_hand(&[1]);
        offset[11] = 1;
        let mut ratio = by_hand(&[1]);
        ratio[32] ^= 0x40;
        let mut cookie = by_hand(&[1]);
        cookie[3] = 0x15;
        for bad in [offset, ratio, cookie] {
            assert_merges_like_generic(&[good.clone(), bad.clone()]);
            assert_merges_like_generic(&[good.clone(), compress(&bad)]);
        }
        // Compressed: a bad inner cookie, a wrong length, trailing bytes,
        // a bad checksum.
        let mut inner = compress(&by_hand(&[1]));
        inner[3] = 0x13;
        let mut stated = good.clone();
        stated[7] = stated[7].wrapping_add(40);
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"trailing");
        let mut checksum = good.clone();
        let last = checksum.len() - 1;
        checksum[last] ^= 0xff;
        for odd in [inner, stated, trailing, checksum] {
            assert_merges_like_generic(&[good.clone(), odd.clone()]);
            assert_merges_like_generic(&[odd, good.clone()]);
        }
    }

    #[test]
    fn fast_merge_equals_generic_on_every_truncation_and_flip() {
        let l = HistogramConfig::LATENCY_US;
        let good = ser(&[10, 20, 20, 4000, 1 << 20], l, Format::Compressed);
        for format in [Format::Compressed, Format::Uncompressed] {
            let bytes = ser(&[1, 2, 2, 1000, 123_456, 1 << 30], l, format);
            for cut in 0..bytes.len() {
                assert_merges_like_generic(&[good.clone(), bytes[..cut].to_vec()]);
                assert_merges_like_generic(&[bytes[..cut].to_vec(), good.clone()]);
            }
            for at in 0..bytes.len() {
                for bit in [0x01, 0x10, 0x80] {
                    let mut flipped = bytes.clone();
                    flipped[at] ^= bit;
                    assert_merges_like_generic(&[good.clone(), flipped.clone()]);
                    assert_merges_like_generic(&[flipped, good.clone()]);
                }
            }
        }
    }

    fn value() -> impl Strategy<Value = u64> {
        // Latency-like values over several orders of magnitude, and some
        // beyond the range.
        prop_oneof![
            8 => 1u64..1_000,
            8 => 1u64..10_000_000,
            1 => 3_000_000_000u64..=u64::MAX,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn quantiles_are_within_precision_of_exact(
            values in prop::collection::vec(1u64..100_000_000, 1..2000),
            sigfig in 1u32..=4,
            qs in prop::collection::vec(0.0f64..=1.0, 1..8),
        ) {
            let config = HistogramConfig::new(1, 3_600_000_000, sigfig).unwrap();
            let mut h = Histogram::new(config);
            h.record_all(values.iter().copied());
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let got = h.quantiles(&qs).unwrap();
            for (q, got) in qs.iter().zip(got) {
                let exact = exact_quantile(&sorted, *q);
                prop_assert!(
                    within_precision(got, exact, sigfig as u8),
                    "q={} got={} exact={} sigfig={}", q, got, exact, sigfig
                );
            }
            let s = h.stats();
            prop_assert!(within_precision(s.max, sorted[sorted.len() - 1], sigfig as u8));
            prop_assert!(s.min <= sorted[0]);
            prop_assert_eq!(s.count, values.len() as u64);
        }

        #[test]
        fn merging_equals_recording_everything_into_one(
            parts in prop::collection::vec(prop::collection::vec(value(), 0..300), 1..6),
        ) {
            let mut merged = latency();
            let mut one = latency();
            for part in &parts {
                let mut h = latency();
                h.record_all(part.iter().copied());
                merged.merge(&h);
                one.record_all(part.iter().copied());
            }
            prop_assert_eq!(merged.stats(), one.stats());
            let qs = [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0];
            prop_assert_eq!(merged.quantiles(&qs).unwrap(), one.quantiles(&qs).unwrap());
        }

        #[test]
        fn serialization_round_trips_exactly(
            values in prop::collection::vec(value(), 0..1000),
            sigfig in 1u32..=5,
        ) {
            let config = HistogramConfig::new(1, 3_600_000_000, sigfig).unwrap();
            let mut h = Histogram::new(config);
            h.record_all(values.iter().copied());
            let back = Histogram::deserialize(&h.serialize(Format::Compressed).unwrap()).unwrap();
            prop_assert_eq!(back.config(), h.config());
            let (a, b) = (h.stats(), back.stats());
            // The saturated count is local; everything else travels.
            prop_assert_eq!((a.count, a.min, a.max), (b.count, b.min, b.max));
            prop_assert_eq!(b.saturated, 0);
            let qs = [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0];
            prop_assert_eq!(h.quantiles(&qs).unwrap(), back.quantiles(&qs).unwrap());
        }

        #[test]
        fn merge_serialized_equals_merging_one_by_one(
            parts in prop::collection::vec(prop::collection::vec(value(), 0..200), 1..6),
            narrow_first in any::<bool>(),
        ) {
            let mut by_one: Option<Histogram> = None;
            let mut bins = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                // Sometimes a first histogram of a narrower range, so that
                // later values pass it and are clamped (the 64-bit path).
                let mut h = if i == 0 && narrow_first {
                    Histogram::new(HistogramConfig::new(1, 100_000, 3).unwrap())
                } else {
                    latency()
                };
                h.record_all(part.iter().copied());
                let format = if i % 2 == 0 { Format::Compressed } else { Format::Uncompressed };
                let bin = h.serialize(format).unwrap();
                let back = Histogram::deserialize(&bin).unwrap();
                match by_one.as_mut() {
                    None => by_one = Some(back),
                    Some(m) => m.merge(&back),
                }
                bins.push(bin);
            }
            let by_one = by_one.unwrap();
            let merged = Histogram::merge_serialized(&bins).unwrap();
            prop_assert_eq!(merged.config(), by_one.config());
            let (a, b) = (merged.stats(), by_one.stats());
            prop_assert_eq!((a.count, a.min, a.max), (b.count, b.min, b.max));
            let qs = [0.0, 0.5, 0.9, 0.99, 0.999, 1.0];
            prop_assert_eq!(merged.quantiles(&qs).unwrap(), by_one.quantiles(&qs).unwrap());
        }

        #[test]
        fn fast_merge_equals_generic(
            parts in prop::collection::vec(
                (prop::collection::vec(value(), 0..300), 0u8..8, any::<bool>()),
                1..8,
            ),
            corrupt in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>(), any::<bool>())),
        ) {
            let configs = [
                HistogramConfig::LATENCY_US,
                HistogramConfig::new(1, 100_000, 3).unwrap(),
                HistogramConfig::new(1, 3_600_000_000, 2).unwrap(),
                HistogramConfig::new(1, u64::MAX, 3).unwrap(),
            ];
            let mut bins: Vec<Vec<u8>> = parts
                .iter()
                .map(|(values, pick, compressed)| {
                    // Mostly the latency configuration.
                    let config = configs.get(usize::from(*pick).saturating_sub(4)).copied()
                        .unwrap_or(HistogramConfig::LATENCY_US);
                    let format = if *compressed { Format::Compressed } else { Format::Uncompressed };
                    ser(values, config, format)
                })
                .collect();
            if let Some((which, at, byte, truncate)) = corrupt {
                let bin = &mut bins[which.index(parts.len())];
                if !bin.is_empty() {
                    let at = at.index(bin.len());
                    if truncate {
                        bin.truncate(at);
                    } else {
                        bin[at] ^= byte.max(1);
                    }
                }
            }
            assert_merges_like_generic(&bins);
        }

        #[test]
        fn batch_equals_one_by_one(values in prop::collection::vec(value(), 0..500)) {
            let mut batch = latency();
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            prop_assert_eq!(batch.record_le_bytes(&bytes).unwrap(), values.len());
            let mut single = latency();
            single.record_all(values.iter().copied());
            prop_assert_eq!(batch.stats(), single.stats());
        }
    }
}
