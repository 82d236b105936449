//! The one error shape of the core, as every NIF answers it.
//!
//! Each module keeps its own error enum ([`JsonError`], [`MetricsError`],
//! [`PartitionError`], [`ProcsError`], [`ThrottleError`]): its variants hold
//! the facts (the field, the limit, the position) and its `Display` the
//! message. Each converts into a [`CoreError`]: an [`ErrorCode`] (stable,
//! snake_case, from the fixed list below) and a detail (that message, naming
//! the field or cause). The NIF crate turns a `CoreError` into
//! `{:error, {code, detail}}` in one place (`cluster_scope_nif/src/error.rs`),
//! with the code as an atom from a list fixed at load time and the detail as
//! a binary: nothing from the input ever becomes an atom.
//!
//! [`JsonError`]: crate::json::JsonError
//! [`MetricsError`]: crate::metrics::MetricsError
//! [`PartitionError`]: crate::partition::PartitionError
//! [`ProcsError`]: crate::procs::ProcsError
//! [`ThrottleError`]: crate::throttle::ThrottleError

use std::fmt;

use crate::json::JsonError;
use crate::metrics::MetricsError;
use crate::partition::PartitionError;
use crate::placement::PlacementError;
use crate::procs::ProcsError;
use crate::throttle::ThrottleError;

/// Every code an error of the core (or of the NIF layer around it) can
/// carry. The text of each ([`ErrorCode::as_str`]) is part of the API:
/// Elixir matches on the atom of the same name. Renaming one is a breaking
/// change; adding one means adding its atom to the NIF crate (the match
/// there is exhaustive, so the build says so) and classifying it in
/// `ClusterScope.Error` (a test there checks every code of
/// `ClusterScope.Native.error_codes/0`): the refusals of input become
/// `invalid_params`, the others `internal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // Refusals of input: the caller gave something the call does not accept.
    /// An argument of a call is wrong (not a reference of the right kind, a
    /// number out of range, an empty list).
    InvalidArgument,
    /// An option of a map of options is wrong or missing.
    InvalidOption,
    /// A configuration (histogram range, detector setting) is out of range.
    InvalidConfig,
    /// A value to record or read is not one the call takes (metrics: not a
    /// histogram reference).
    InvalidValue,
    /// JSON limits out of range.
    InvalidLimits,
    /// An input or output is over a size limit.
    TooLarge,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// Text that is not JSON.
    Syntax,
    /// A float JSON cannot hold.
    NonFiniteFloat,
    /// A term JSON has no form for.
    Unsupported,
    /// Nesting deeper than the depth limit.
    TooDeep,
    /// An integer outside both `i64` and `u64`.
    IntegerOutOfRange,
    /// A quantile outside `0.0..=1.0`.
    InvalidQuantile,
    /// A batch of values whose size is not a multiple of 8 bytes.
    InvalidBatch,
    /// Bytes that are not a serialized histogram.
    InvalidSerialized,
    /// A call that needs at least one item got none.
    Empty,
    /// A malformed connectivity observation.
    InvalidObservation,
    /// A malformed row of a process snapshot.
    InvalidRow,
    /// Bytes that are not a serialized process summary.
    InvalidSummary,
    /// Bytes that are not a serialized process window.
    InvalidWindow,
    // Refusals of state: the input is fine, the object cannot take it now.
    /// A detectors set already tracks its maximum number of peers.
    TooManyPeers,
    /// A snapshot already holds its maximum number of rows.
    TooManyRows,
    /// The resource is held by another call; retry, or use the dirty
    /// variant, which waits.
    Busy,
    // Failures inside.
    /// Serializing failed (an encoder error; not expected).
    SerializeFailed,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::InvalidArgument,
        ErrorCode::InvalidOption,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidValue,
        ErrorCode::InvalidLimits,
        ErrorCode::TooLarge,
        ErrorCode::InvalidUtf8,
        ErrorCode::Syntax,
        ErrorCode::NonFiniteFloat,
        ErrorCode::Unsupported,
        ErrorCode::TooDeep,
        ErrorCode::IntegerOutOfRange,
        ErrorCode::InvalidQuantile,
        ErrorCode::InvalidBatch,
        ErrorCode::InvalidSerialized,
        ErrorCode::Empty,
        ErrorCode::InvalidObservation,
        ErrorCode::InvalidRow,
        ErrorCode::InvalidSummary,
        ErrorCode::InvalidWindow,
        ErrorCode::TooManyPeers,
        ErrorCode::TooManyRows,
        ErrorCode::Busy,
        ErrorCode::SerializeFailed,
    ];

    /// The code's stable snake_case name (the atom Elixir sees).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::InvalidOption => "invalid_option",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::InvalidLimits => "invalid_limits",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::Syntax => "syntax",
            ErrorCode::NonFiniteFloat => "non_finite_float",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::TooDeep => "too_deep",
            ErrorCode::IntegerOutOfRange => "integer_out_of_range",
            ErrorCode::InvalidQuantile => "invalid_quantile",
            ErrorCode::InvalidBatch => "invalid_batch",
            ErrorCode::InvalidSerialized => "invalid_serialized",
            ErrorCode::Empty => "empty",
            ErrorCode::InvalidObservation => "invalid_observation",
            ErrorCode::InvalidRow => "invalid_row",
            ErrorCode::InvalidSummary => "invalid_summary",
            ErrorCode::InvalidWindow => "invalid_window",
            ErrorCode::TooManyPeers => "too_many_peers",
            ErrorCode::TooManyRows => "too_many_rows",
            ErrorCode::Busy => "busy",
            ErrorCode::SerializeFailed => "serialize_failed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code compares equal to its text, so tests can say
/// `assert_eq!(e.code(), "too_deep")`.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What every error of the core becomes at the NIF boundary: a stable
/// [`ErrorCode`] and a detail for people (which field, which limit, where).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreError {
    code: ErrorCode,
    detail: String,
}

impl CoreError {
    /// An error with `code` and `detail`. The NIF layer uses it directly for
    /// the few errors that are its own (`busy`, a term that is not a
    /// histogram reference).
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        CoreError {
            code,
            detail: detail.into(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message for people, naming the field or the cause.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for CoreError {}

macro_rules! from_module_error {
    ($($t:ty),* $(,)?) => {
        $(
            impl From<$t> for CoreError {
                fn from(e: $t) -> Self {
                    CoreError::new(e.code(), e.to_string())
                }
            }
        )*
    };
}

from_module_error!(
    JsonError,
    MetricsError,
    PartitionError,
    PlacementError,
    ProcsError,
    ThrottleError
);

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::json::{self, Limits};
    use crate::metrics::{Histogram, HistogramConfig};
    use crate::partition::{Detectors, DetectorsConfig, PhiConfig};
    use crate::procs::{PidCursor, Summary};
    use crate::throttle::{Session, ThrottleConfig};

    #[test]
    fn codes_are_unique_stable_snake_case() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            // snake_case: lowercase words of letters and digits, each
            // starting with a letter, joined by one underscore.
            assert!(
                s.split('_')
                    .all(|w| w.starts_with(|c: char| c.is_ascii_lowercase())
                        && w.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())),
                "{s}"
            );
            assert!(seen.insert(s), "{s} twice");
            assert_eq!(code.to_string(), s);
            assert_eq!(code, s);
        }
    }

    #[test]
    fn all_lists_every_code() {
        // ALL feeds the Elixir side's list (`ClusterScope.Native.error_codes/0`).
        // The match below is exhaustive: a new variant does not compile until
        // it has an index here, which is the reminder to list it in ALL too.
        for code in ErrorCode::ALL {
            let index = match code {
                ErrorCode::InvalidArgument => 0,
                ErrorCode::InvalidOption => 1,
                ErrorCode::InvalidConfig => 2,
                ErrorCode::InvalidValue => 3,
                ErrorCode::InvalidLimits => 4,
                ErrorCode::TooLarge => 5,
                ErrorCode::InvalidUtf8 => 6,
                ErrorCode::Syntax => 7,
                ErrorCode::NonFiniteFloat => 8,
                ErrorCode::Unsupported => 9,
                ErrorCode::TooDeep => 10,
                ErrorCode::IntegerOutOfRange => 11,
                ErrorCode::InvalidQuantile => 12,
                ErrorCode::InvalidBatch => 13,
                ErrorCode::InvalidSerialized => 14,
                ErrorCode::Empty => 15,
                ErrorCode::InvalidObservation => 16,
                ErrorCode::InvalidRow => 17,
                ErrorCode::InvalidSummary => 18,
                ErrorCode::InvalidWindow => 19,
                ErrorCode::TooManyPeers => 20,
                ErrorCode::TooManyRows => 21,
                ErrorCode::Busy => 22,
                ErrorCode::SerializeFailed => 23,
            };
            assert_eq!(ErrorCode::ALL[index], code);
        }
    }

    #[test]
    fn new_keeps_code_and_detail() {
        let e = CoreError::new(ErrorCode::Busy, "snapshot: held by a dirty call");
        assert_eq!(e.code(), ErrorCode::Busy);
        assert_eq!(e.detail(), "snapshot: held by a dirty call");
        assert_eq!(e.to_string(), "busy: snapshot: held by a dirty call");
    }

    /// One real error of each module: the code is the module's, the detail
    /// its message, naming the field or cause.
    #[test]
    fn module_errors_convert_with_code_and_detail() {
        let limits = Limits::new(1024, 8).unwrap();
        let cases: Vec<(CoreError, &str, &str)> = vec![
            (
                json::decode(b"[1,", &limits).unwrap_err().into(),
                "syntax",
                "invalid JSON: ",
            ),
            (
                json::decode(b"[[[[[[[[[[]]]]]]]]]]", &limits)
                    .unwrap_err()
                    .into(),
                "too_deep",
                "nested deeper than the limit of 8",
            ),
            (
                Limits::new(0, 8).unwrap_err().into(),
                "invalid_limits",
                "invalid JSON limits",
            ),
            (
                HistogramConfig::new(0, 10, 3).unwrap_err().into(),
                "invalid_config",
                "invalid histogram lowest",
            ),
            (
                Histogram::deserialize(b"junk").unwrap_err().into(),
                "invalid_serialized",
                "not a serialized HdrHistogram",
            ),
            (
                Histogram::merge_serialized::<&[u8]>(&[])
                    .unwrap_err()
                    .into(),
                "empty",
                "none given",
            ),
            (
                Detectors::new(DetectorsConfig {
                    phi: PhiConfig::default(),
                    max_peers: 0,
                })
                .unwrap_err()
                .into(),
                "invalid_config",
                "max_peers",
            ),
            (
                PartitionError::observation("reach[2][5]", "expected :reachable").into(),
                "invalid_observation",
                "reach[2][5]",
            ),
            (
                PidCursor::new(vec![]).next_chunk(0).unwrap_err().into(),
                "invalid_argument",
                "n: ",
            ),
            (
                ProcsError::InvalidRow {
                    index: 3,
                    field: "key",
                }
                .into(),
                "invalid_row",
                "row 3: invalid key",
            ),
            (
                ProcsError::option("sort_by", "expected :memory").into(),
                "invalid_option",
                "invalid option sort_by",
            ),
            (
                Summary::from_bytes(b"{}").unwrap_err().into(),
                "invalid_summary",
                "not a process summary",
            ),
            (
                Session::new(ThrottleConfig::new(0, 10)).unwrap_err().into(),
                "invalid_option",
                "invalid option rate",
            ),
            (
                ThrottleError::argument("now_ms", "expected an integer in range").into(),
                "invalid_argument",
                "now_ms: expected an integer",
            ),
        ];
        for (e, code, detail) in cases {
            assert_eq!(e.code(), code, "{e}");
            assert!(e.detail().contains(detail), "{e} lacks {detail:?}");
        }
    }

    #[test]
    fn state_errors_say_the_limit() {
        let e: CoreError = ProcsError::TooManyRows { limit: 10 }.into();
        assert_eq!(e.code(), "too_many_rows");
        assert!(e.detail().contains("10 rows"), "{e}");
        let e: CoreError = PartitionError::TooManyPeers { limit: 2 }.into();
        assert_eq!(e.code(), "too_many_peers");
        assert!(e.detail().contains("max_peers"), "{e}");
    }
}
