//! Latency histograms on the `hdrhistogram` crate, for every operation's
//! duration and for callers' own measurements, mergeable across a cluster.
//!
//! * [`Histogram`] is one HdrHistogram (64-bit counts) with a fixed range and
//!   precision, plus a count of saturated values. It is the unit that is
//!   merged, queried and serialized.
//! * [`ShardedHistogram`] is what many threads record into at once (the NIF's
//!   resource): recorders append to small per-thread buffers and only touch
//!   the shared histogram once per [`BUFFER_LEN`] values; readers drain the
//!   buffers first, so every read sees every value recorded before it began.
//!
//! # Range, precision and saturation
//!
//! A [`HistogramConfig`] fixes the lowest discernible value (at least 1), the
//! highest trackable value (at least twice the lowest) and 1 to 5 significant
//! figures: every value is kept to that many decimal digits (3 figures: within
//! 0.1%), and a quantile is the highest value equivalent to the recorded one
//! at that precision.
//!
//! A value above the highest trackable value is **clamped** to it and counted
//! in [`Stats::saturated`]: it still counts in every quantile (as the highest
//! value), so a histogram never under-reports a tail, and the saturated count
//! says how many values were cut. The saturated count is local: the V2 format
//! has no field for it, so a serialized histogram carries its saturated values
//! only as counts at the highest value. Merging a histogram whose values pass
//! this one's range clamps them the same way.
//!
//! # Serialized form
//!
//! [`Histogram::serialize`] writes HdrHistogram's V2 compressed format (a
//! deflate stream; the format every HdrHistogram port reads, and small: a
//! latency histogram with a few hundred distinct values takes a few hundred
//! bytes), or on request the uncompressed V2 form ([`Format`]), which is
//! about twice as large but ten times cheaper to write (the crate's deflate
//! encoder costs about 200 us per histogram, most of it setting up its
//! state). [`Histogram::deserialize`] reads both.
//! It refuses inputs over [`MAX_SERIALIZED_BYTES`] and configurations that
//! [`HistogramConfig`] refuses, but it trusts the lengths written inside the
//! compressed stream, which it cannot check before inflating it: a crafted
//! binary can make it allocate up to 4 GiB for a moment before it fails.
//! Feed it what ClusterScope nodes serialized, not input from the network.

use std::fmt;

use crate::error::ErrorCode;

mod histogram;
mod sharded;
mod v2;

pub use histogram::{Histogram, Stats};
pub use sharded::{default_shards, ShardedHistogram, BUFFER_LEN, MAX_SHARDS};

/// Which V2 form [`Histogram::serialize`] writes; [`Histogram::deserialize`]
/// reads both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// V2 compressed: the V2 form in a zlib (deflate) stream, cookie
    /// `0x1c849314`. Small; a few hundred microseconds to write.
    Compressed,
    /// V2 uncompressed, cookie `0x1c849313`. About twice as large for latency
    /// data, ten times cheaper to write, three times cheaper to read.
    Uncompressed,
}

/// The most significant figures a histogram may keep.
pub const MAX_SIGNIFICANT_FIGURES: u8 = 5;
/// The largest counts array a histogram may have, in bytes (each count is 8
/// bytes). 1 ..= 3.6e9 at 3 figures takes 184 KiB; 1 ..= `u64::MAX` at 5
/// figures would take 48 MiB and is refused.
pub const MAX_COUNTS_BYTES: usize = 16 * 1024 * 1024;
/// The largest serialized histogram [`Histogram::deserialize`] reads.
pub const MAX_SERIALIZED_BYTES: usize = 1024 * 1024;
/// The most quantiles one [`Histogram::quantiles`] call answers.
pub const MAX_QUANTILES: usize = 10_000;

/// Why a histogram call failed.
///
/// [`MetricsError::code`] gives its stable [`ErrorCode`] and `Display` a
/// message for humans that names the field or value at fault; the two make
/// the [`CoreError`](crate::CoreError) the NIF layer answers as `{:error,
/// {code, detail}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsError {
    /// A configuration field is out of range. `field` is `"lowest"`,
    /// `"highest"` or `"significant_figures"`.
    InvalidConfig {
        field: &'static str,
        message: String,
    },
    /// A quantile that is not a number in `0.0..=1.0`; `index` is its
    /// position in the list given.
    InvalidQuantile { index: usize, value: f64 },
    /// A batch whose byte size is not a multiple of 8.
    InvalidBatch { bytes: usize },
    /// A serialized histogram that could not be read.
    InvalidSerialized { message: String },
    /// An input over a limit: `what` names it.
    TooLarge {
        what: &'static str,
        limit: usize,
        actual: usize,
    },
    /// A call that needs at least one histogram got none.
    Empty { what: &'static str },
    /// Serializing failed (the encoder reported an error; not expected).
    SerializeFailed { message: String },
}

impl MetricsError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            MetricsError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            MetricsError::InvalidQuantile { .. } => ErrorCode::InvalidQuantile,
            MetricsError::InvalidBatch { .. } => ErrorCode::InvalidBatch,
            MetricsError::InvalidSerialized { .. } => ErrorCode::InvalidSerialized,
            MetricsError::TooLarge { .. } => ErrorCode::TooLarge,
            MetricsError::Empty { .. } => ErrorCode::Empty,
            MetricsError::SerializeFailed { .. } => ErrorCode::SerializeFailed,
        }
    }

    fn config(field: &'static str, message: impl Into<String>) -> Self {
        MetricsError::InvalidConfig {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::InvalidConfig { field, message } => {
                write!(f, "invalid histogram {field}: {message}")
            }
            MetricsError::InvalidQuantile { index, value } => write!(
                f,
                "quantile {value} at position {index} is not a number between 0.0 and 1.0"
            ),
            MetricsError::InvalidBatch { bytes } => write!(
                f,
                "a batch must be little-endian unsigned 64-bit integers, but its size, \
                 {bytes} bytes, is not a multiple of 8"
            ),
            MetricsError::InvalidSerialized { message } => {
                write!(f, "not a serialized HdrHistogram (V2): {message}")
            }
            MetricsError::TooLarge {
                what,
                limit,
                actual,
            } => write!(f, "{what} is {actual}, over the limit of {limit}"),
            MetricsError::Empty { what } => write!(f, "{what}: none given"),
            MetricsError::SerializeFailed { message } => {
                write!(f, "serializing the histogram failed: {message}")
            }
        }
    }
}

impl std::error::Error for MetricsError {}

/// The range and precision of a histogram; build it with
/// [`HistogramConfig::new`], which validates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramConfig {
    lowest: u64,
    highest: u64,
    significant_figures: u8,
}

impl HistogramConfig {
    /// Microseconds from 1 us to one hour at 3 significant figures: the
    /// configuration of operation latencies.
    pub const LATENCY_US: HistogramConfig = HistogramConfig {
        lowest: 1,
        highest: 3_600_000_000,
        significant_figures: 3,
    };

    /// A validated configuration: `lowest >= 1`, `highest >= 2 * lowest`,
    /// `significant_figures` in `1..=5`, a range and precision that
    /// HdrHistogram can represent, and a counts array of at most
    /// [`MAX_COUNTS_BYTES`]. The error names the field at fault.
    pub fn new(lowest: u64, highest: u64, significant_figures: u32) -> Result<Self, MetricsError> {
        if lowest < 1 {
            return Err(MetricsError::config("lowest", "must be at least 1"));
        }
        if lowest > u64::MAX / 2 {
            return Err(MetricsError::config(
                "lowest",
                format!("{lowest} is over the maximum of {}", u64::MAX / 2),
            ));
        }
        if !(1..=u32::from(MAX_SIGNIFICANT_FIGURES)).contains(&significant_figures) {
            return Err(MetricsError::config(
                "significant_figures",
                format!("{significant_figures} is not between 1 and {MAX_SIGNIFICANT_FIGURES}"),
            ));
        }
        if highest < lowest.saturating_mul(2) {
            return Err(MetricsError::config(
                "highest",
                format!("{highest} is less than twice lowest ({lowest})"),
            ));
        }
        let config = HistogramConfig {
            lowest,
            highest,
            significant_figures: significant_figures as u8,
        };
        let bytes = config.counts_bytes()?;
        if bytes > MAX_COUNTS_BYTES {
            return Err(MetricsError::config(
                "significant_figures",
                format!(
                    "{significant_figures} significant figures over {lowest}..={highest} need \
                     {bytes} bytes of counts, over the limit of {MAX_COUNTS_BYTES}; use fewer \
                     figures or a narrower range"
                ),
            ));
        }
        Ok(config)
    }

    /// The lowest discernible value.
    pub fn lowest(&self) -> u64 {
        self.lowest
    }

    /// The highest trackable value; higher values are clamped to it.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// The number of significant decimal figures kept.
    pub fn significant_figures(&self) -> u8 {
        self.significant_figures
    }

    /// The size of one histogram's counts array in bytes, computed the way
    /// HdrHistogram sizes it (without allocating it).
    pub fn counts_bytes(&self) -> Result<usize, MetricsError> {
        // Mirrors hdrhistogram's new_with_bounds/resize, floating-point
        // log2 included, so that the two never disagree.
        let largest = 2 * 10u32.pow(u32::from(self.significant_figures));
        let unit_magnitude = (self.lowest as f64).log2().floor() as u32;
        let sub_bucket_count_magnitude = f64::from(largest).log2().ceil() as u32;
        if unit_magnitude + sub_bucket_count_magnitude > 63 {
            return Err(MetricsError::config(
                "lowest",
                "is too large to keep that many significant figures above it; lower lowest \
                 or significant_figures",
            ));
        }
        let sub_bucket_count = 1u64 << sub_bucket_count_magnitude;
        let mut smallest_untrackable = sub_bucket_count << unit_magnitude;
        let mut buckets: u64 = 1;
        while smallest_untrackable <= self.highest {
            if smallest_untrackable > u64::MAX / 2 {
                buckets += 1;
                break;
            }
            smallest_untrackable <<= 1;
            buckets += 1;
        }
        let counts = (buckets + 1) * (sub_bucket_count / 2);
        usize::try_from(counts.saturating_mul(8)).map_err(|_| {
            MetricsError::config(
                "significant_figures",
                "range and precision need more counts than this machine can address",
            )
        })
    }

    pub(crate) fn build(&self) -> Result<hdrhistogram::Histogram<u64>, MetricsError> {
        use hdrhistogram::CreationError as E;
        hdrhistogram::Histogram::new_with_bounds(
            self.lowest,
            self.highest,
            self.significant_figures,
        )
        .map_err(|e| match e {
            E::LowIsZero => MetricsError::config("lowest", "must be at least 1"),
            E::LowExceedsMax => MetricsError::config("lowest", "is too large"),
            E::HighLessThanTwiceLow => {
                MetricsError::config("highest", "must be at least twice lowest")
            }
            E::SigFigExceedsMax => MetricsError::config(
                "significant_figures",
                format!("must be at most {MAX_SIGNIFICANT_FIGURES}"),
            ),
            E::CannotRepresentSigFigBeyondLow => MetricsError::config(
                "lowest",
                "is too large to keep that many significant figures above it; lower lowest \
                 or significant_figures",
            ),
            E::UsizeTypeTooSmall => MetricsError::config(
                "significant_figures",
                "range and precision need more counts than this machine can address",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_field() {
        let field = |r: Result<HistogramConfig, MetricsError>| match r {
            Err(MetricsError::InvalidConfig { field, .. }) => field,
            other => panic!("expected an invalid_config error, got {other:?}"),
        };
        assert_eq!(field(HistogramConfig::new(0, 100, 3)), "lowest");
        assert_eq!(field(HistogramConfig::new(u64::MAX, u64::MAX, 3)), "lowest");
        assert_eq!(field(HistogramConfig::new(10, 19, 3)), "highest");
        assert_eq!(
            field(HistogramConfig::new(1, 100, 0)),
            "significant_figures"
        );
        assert_eq!(
            field(HistogramConfig::new(1, 100, 6)),
            "significant_figures"
        );
        // 48 MiB of counts: refused by the memory bound.
        assert_eq!(
            field(HistogramConfig::new(1, u64::MAX, 5)),
            "significant_figures"
        );
        // 2^60 with 5 figures cannot be represented by HdrHistogram.
        assert_eq!(field(HistogramConfig::new(1 << 60, u64::MAX, 5)), "lowest");
        let e = HistogramConfig::new(1, 100, 9).unwrap_err();
        assert_eq!(e.code(), "invalid_config");
        assert!(e.to_string().contains("significant_figures"), "{e}");
    }

    #[test]
    fn counts_bytes_matches_hdrhistogram() {
        for (low, high, sigfig) in [
            (1, 2, 1),
            (1, 3_600_000_000, 3),
            (1, u64::MAX, 3),
            (1000, 1_000_000, 2),
            (1 << 40, u64::MAX, 5),
            ((1 << 45) - 1, 1 << 50, 4),
            (7, 7 * 1024 + 3, 5),
        ] {
            let c = HistogramConfig::new(low, high, sigfig).unwrap();
            assert_eq!(
                c.counts_bytes().unwrap(),
                c.build().unwrap().distinct_values() * 8,
                "{c:?}"
            );
        }
    }

    #[test]
    fn latency_config_is_valid_and_small() {
        let c = HistogramConfig::LATENCY_US;
        assert_eq!(HistogramConfig::new(c.lowest(), c.highest(), 3).unwrap(), c);
        assert!(c.counts_bytes().unwrap() < 200 * 1024);
        assert!(HistogramConfig::new(1, u64::MAX, 3).is_ok());
    }

    #[test]
    fn codes_are_stable() {
        let errors = [
            MetricsError::config("lowest", "x"),
            MetricsError::InvalidQuantile {
                index: 0,
                value: 2.0,
            },
            MetricsError::InvalidBatch { bytes: 3 },
            MetricsError::InvalidSerialized {
                message: "x".into(),
            },
            MetricsError::TooLarge {
                what: "x",
                limit: 1,
                actual: 2,
            },
            MetricsError::Empty { what: "x" },
            MetricsError::SerializeFailed {
                message: "x".into(),
            },
        ];
        let codes: Vec<_> = errors.iter().map(MetricsError::code).collect();
        assert_eq!(
            codes,
            [
                "invalid_config",
                "invalid_quantile",
                "invalid_batch",
                "invalid_serialized",
                "too_large",
                "empty",
                "serialize_failed"
            ]
        );
        for e in &errors {
            assert!(!e.to_string().is_empty());
        }
    }
}
