//! Process tables: every process of a node as columns, and what is computed
//! from them (summaries, windows, pages), mergeable across a cluster.
//!
//! One concept per file:
//!
//! * [`pids`]: a cursor over a list of process identifiers ([`PidCursor`]),
//!   so a collector walks its node's processes in chunks without keeping the
//!   whole list on its heap.
//! * [`snapshot`]: the columnar table of one node's processes
//!   ([`Snapshot`]), filled in batches of [`Row`]s, strings
//!   dictionary-encoded ([`Dict`]).
//! * [`filter`]: which rows a call looks at ([`Filter`]), with a glob
//!   matcher ([`Glob`]).
//! * [`summary`]: counts, groups, top-K lists and log2 histograms of a
//!   snapshot ([`Summary`]), serialized as JSON, merged across nodes.
//! * [`window`]: what changed between two snapshots of one node
//!   ([`Window`]), in the manner of `recon:proc_window/3`, merged the same way.
//! * [`page`]: rows in a stable order behind a cursor ([`page()`]).
//! * [`column`]: one number of every process ([`Column`]), for a top-K
//!   by one key that reads only that key, paged in the same order.
//!
//! # Keys
//!
//! A row is identified by a 64-bit key of one of two kinds ([`KeyKind`]):
//! the raw term word of a local pid (an immediate term on 64-bit BEAMs; the
//! NIF layer makes it and turns it back into a pid), or an integer
//! `id * 2^32 + serial` for rows collected on another node. A snapshot holds
//! one kind. Orders break ties by key, so every result is deterministic.
//!
//! # Summaries and windows between nodes
//!
//! They travel as JSON binaries ([`Summary::to_bytes`],
//! [`Summary::from_bytes`]) carrying [`FORMAT_VERSION`]; reading checks the
//! version and every length, and refuses inputs over
//! [`MAX_SERIALIZED_BYTES`]. Merging sums the counts, merges the groups
//! (capped again), keeps the best K rows of all lists and adds the
//! histograms: merging the summaries of several nodes gives what summarizing
//! all their rows at once gives (property-tested), except for group
//! dimensions that were truncated.
//!
//! Every fallible function returns [`ProcsError`], whose
//! [`code`](ProcsError::code) is a stable snake_case name.

pub mod column;
pub mod filter;
pub mod page;
pub mod pids;
pub mod snapshot;
pub mod summary;
pub mod window;

pub(crate) mod top;

use std::fmt;

use crate::error::ErrorCode;

pub use column::{Column, ColumnPage};
pub use filter::{Filter, Glob, MAX_PATTERN_CHARS};
pub use page::{page, Cursor, CursorKey, Page, PageOptions, DEFAULT_LIMIT, MAX_LIMIT};
pub use pids::{PidCursor, MAX_PIDS_NEXT};
pub use snapshot::{Dict, Key, Row, RowRef, Snapshot, MAX_ROWS, NO_NAME, UNDEFINED};
pub use summary::{
    Group, GroupSet, Groups, Histograms, ProcRow, Summary, SummaryInput, SummaryOptions, Top,
    Totals, DEFAULT_K, MAX_GROUP_KEYS, MAX_K, OTHER_KEY,
};
pub use window::{Window, WindowInput, WindowRow, WindowTop, WindowTotals};

/// The version written into every serialized summary and window; reading
/// refuses any other.
pub const FORMAT_VERSION: u32 = 1;
/// The largest serialized summary or window read (64 MiB).
pub const MAX_SERIALIZED_BYTES: usize = 64 * 1024 * 1024;
/// Buckets of a log2 histogram: bucket 0 holds 0 and 1, bucket `i` the
/// values in `[2^i, 2^(i+1))`.
pub const HISTOGRAM_BUCKETS: usize = 64;

/// Why a process-table call refused its input.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcsError {
    /// Row `index` (0-based, in the batch pushed) has a bad `field` (one of
    /// the row's field names, such as `"key"` or `"type"`; `"row"` when it
    /// is not a 13-tuple).
    InvalidRow { index: usize, field: &'static str },
    /// An option is out of range or of the wrong type; `field` is its name.
    InvalidOption {
        field: &'static str,
        message: String,
    },
    /// An argument of a call is wrong (a snapshot of the other key kind, an
    /// interval of 0, an empty list); `field` is its name.
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// A push would take a snapshot past [`MAX_ROWS`].
    TooManyRows { limit: usize },
    /// A binary that is not a serialized summary of this version.
    InvalidSummary { message: String },
    /// A binary that is not a serialized window of this version.
    InvalidWindow { message: String },
}

impl ProcsError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProcsError::InvalidRow { .. } => ErrorCode::InvalidRow,
            ProcsError::InvalidOption { .. } => ErrorCode::InvalidOption,
            ProcsError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            ProcsError::TooManyRows { .. } => ErrorCode::TooManyRows,
            ProcsError::InvalidSummary { .. } => ErrorCode::InvalidSummary,
            ProcsError::InvalidWindow { .. } => ErrorCode::InvalidWindow,
        }
    }

    /// An [`ProcsError::InvalidOption`].
    pub fn option(field: &'static str, message: impl Into<String>) -> Self {
        ProcsError::InvalidOption {
            field,
            message: message.into(),
        }
    }

    /// An [`ProcsError::InvalidArgument`].
    pub fn argument(field: &'static str, message: impl Into<String>) -> Self {
        ProcsError::InvalidArgument {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for ProcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcsError::InvalidRow { index, field } => {
                write!(f, "row {index}: invalid {field}")
            }
            ProcsError::InvalidOption { field, message } => {
                write!(f, "invalid option {field}: {message}")
            }
            ProcsError::InvalidArgument { field, message } => write!(f, "{field}: {message}"),
            ProcsError::TooManyRows { limit } => {
                write!(f, "a snapshot holds at most {limit} rows")
            }
            ProcsError::InvalidSummary { message } => {
                write!(
                    f,
                    "not a process summary (version {FORMAT_VERSION}): {message}"
                )
            }
            ProcsError::InvalidWindow { message } => {
                write!(
                    f,
                    "not a process window (version {FORMAT_VERSION}): {message}"
                )
            }
        }
    }
}

impl std::error::Error for ProcsError {}

/// The kind of the keys of a snapshot (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Raw term words of local pids.
    Pid,
    /// `id * 2^32 + serial` integers.
    Integer,
}

/// What a process is, from its initial call and dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ProcType {
    Supervisor = 0,
    GenServer = 1,
    GenStatem = 2,
    GenEvent = 3,
    Task = 4,
    ProcLib = 5,
    Plain = 6,
}

impl ProcType {
    /// Every type, in the order of their `u8` values.
    pub const ALL: [ProcType; 7] = [
        ProcType::Supervisor,
        ProcType::GenServer,
        ProcType::GenStatem,
        ProcType::GenEvent,
        ProcType::Task,
        ProcType::ProcLib,
        ProcType::Plain,
    ];

    /// Its name: the atom's text (`"gen_server"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProcType::Supervisor => "supervisor",
            ProcType::GenServer => "gen_server",
            ProcType::GenStatem => "gen_statem",
            ProcType::GenEvent => "gen_event",
            ProcType::Task => "task",
            ProcType::ProcLib => "proc_lib",
            ProcType::Plain => "plain",
        }
    }

    /// The type named `name`, or `None`.
    pub fn parse(name: &str) -> Option<ProcType> {
        ProcType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The type of a `u8` column value (0..=6); anything else is `Plain`.
    pub fn from_u8(v: u8) -> ProcType {
        ProcType::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(ProcType::Plain)
    }
}

/// A number a summary ranks or a page sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Memory,
    Reductions,
    MessageQueueLen,
    /// The `total_heap_size` column (words: heap, old heap and fragments).
    HeapSize,
}

impl Metric {
    /// The option value naming it (`"message_queue_len"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Memory => "memory",
            Metric::Reductions => "reductions",
            Metric::MessageQueueLen => "message_queue_len",
            Metric::HeapSize => "heap_size",
        }
    }

    /// The metric named `name`, or `None`.
    pub fn parse(name: &str) -> Option<Metric> {
        [
            Metric::Memory,
            Metric::Reductions,
            Metric::MessageQueueLen,
            Metric::HeapSize,
        ]
        .into_iter()
        .find(|m| m.as_str() == name)
    }
}

/// A multiply-rotate hasher for 64-bit words (keys, raw term words): far
/// cheaper than SipHash, and these keys are not chosen by an attacker.
#[derive(Debug, Default, Clone, Copy)]
pub struct WordHasher(u64);

impl std::hash::Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    /// A splitmix64 finalizer: the multiply only carries entropy upwards,
    /// and hash tables index by the low bits.
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A hash map keyed by words, with [`WordHasher`].
pub type WordMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<WordHasher>>;

/// The log2 bucket of `v`: 0 for 0 and 1, `floor(log2 v)` above.
pub fn log2_bucket(v: u64) -> usize {
    if v <= 1 {
        0
    } else {
        63 - v.leading_zeros() as usize
    }
}

/// The text `<0.ID.SERIAL>` of an integer key `id * 2^32 + serial`.
pub fn integer_key_text(key: u64) -> String {
    format!("<0.{}.{}>", key >> 32, key & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_snake_case() {
        let errs = [
            ProcsError::InvalidRow {
                index: 3,
                field: "key",
            },
            ProcsError::option("k", "x"),
            ProcsError::argument("interval_ms", "x"),
            ProcsError::TooManyRows { limit: 1 },
            ProcsError::InvalidSummary {
                message: "x".into(),
            },
            ProcsError::InvalidWindow {
                message: "x".into(),
            },
        ];
        let codes: Vec<_> = errs.iter().map(ProcsError::code).collect();
        assert_eq!(
            codes,
            [
                "invalid_row",
                "invalid_option",
                "invalid_argument",
                "too_many_rows",
                "invalid_summary",
                "invalid_window"
            ]
        );
        for e in &errs {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(errs[0].to_string(), "row 3: invalid key");
    }

    #[test]
    fn log2_buckets() {
        assert_eq!(log2_bucket(0), 0);
        assert_eq!(log2_bucket(1), 0);
        assert_eq!(log2_bucket(2), 1);
        assert_eq!(log2_bucket(3), 1);
        assert_eq!(log2_bucket(4), 2);
        assert_eq!(log2_bucket(1023), 9);
        assert_eq!(log2_bucket(1024), 10);
        assert_eq!(log2_bucket(u64::MAX), 63);
    }

    #[test]
    fn word_hashes_spread_in_the_low_bits() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<WordHasher>::default();
        // Integer keys differ only in their high 32 bits.
        let low: std::collections::HashSet<u64> =
            (0..4096u64).map(|i| b.hash_one(i << 32) & 0xfff).collect();
        assert!(low.len() > 2000, "{}", low.len());
    }

    #[test]
    fn names_round_trip() {
        for t in ProcType::ALL {
            assert_eq!(ProcType::parse(t.as_str()), Some(t));
            assert_eq!(ProcType::from_u8(t as u8), t);
        }
        assert_eq!(ProcType::parse("worker"), None);
        assert_eq!(Metric::parse("heap_size"), Some(Metric::HeapSize));
        assert_eq!(Metric::parse("total_heap_size"), None);
        assert_eq!(integer_key_text((7 << 32) | 3), "<0.7.3>");
    }
}
