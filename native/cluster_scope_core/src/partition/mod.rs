//! Failure detection and partition classification.
//!
//! Three concepts, one file each:
//!
//! * [`phi`]: the phi-accrual failure detector of one peer ([`PhiDetector`]),
//!   fed with heartbeat arrival times, answering how suspicious the current
//!   silence is.
//! * [`detectors`]: a bounded set of those, one per peer name ([`Detectors`]).
//! * [`classify`]: what a matrix of "who hears whom" observations says about
//!   the cluster ([`Observation`] → [`Classification`]): healthy, a node down,
//!   a frozen node, a split, one-way or indirect reachability, or a mix, and on
//!   which side of a split this node stands. [`heals`] compares two matrices.
//!
//! Times are milliseconds as `f64` from any monotonic clock the caller
//! chooses (the BEAM's `System.monotonic_time/1` works); the core never reads
//! a clock itself, so every result is a pure function of its inputs.
//!
//! Every fallible function returns [`PartitionError`], whose
//! [`code`](PartitionError::code) is a stable [`ErrorCode`] and whose
//! `Display` names the offending field; the two make the
//! [`CoreError`](crate::CoreError) the NIF layer answers as `{:error, {code,
//! detail}}`.

mod bits;
pub mod classify;
pub mod detectors;
pub mod phi;

use std::fmt;

use crate::error::ErrorCode;

pub use classify::{
    classify, heals, heals_indices, Classification, Observation, Reach, Side, Status,
    MAX_INDIRECT_PAIRS, MAX_LISTED_PAIRS, MAX_NODES, NORMAL_SCHEDULER_MAX_NODES,
};
pub use detectors::{
    Detectors, DetectorsConfig, PeerPhi, DEFAULT_MAX_PEERS, NORMAL_SCHEDULER_MAX_PEERS,
};
pub use phi::{PhiConfig, PhiDetector, MAX_PHI};

/// Why a partition function refused its input.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionError {
    /// A detector setting is out of range. `field` is the setting's name.
    InvalidConfig {
        field: &'static str,
        message: String,
    },
    /// An argument of a call is out of range (a non-finite timestamp, a peer
    /// name that is too long). `field` is the argument's name.
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// A heartbeat from a new peer while [`Detectors`] already tracks its
    /// maximum number of peers.
    TooManyPeers { limit: usize },
    /// An [`Observation`] is malformed. `field` is a path into it such as
    /// `reach[3]` or `self_index`.
    InvalidObservation { field: String, message: String },
}

impl PartitionError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            PartitionError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            PartitionError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            PartitionError::TooManyPeers { .. } => ErrorCode::TooManyPeers,
            PartitionError::InvalidObservation { .. } => ErrorCode::InvalidObservation,
        }
    }

    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        PartitionError::InvalidConfig {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn argument(field: &'static str, message: impl Into<String>) -> Self {
        PartitionError::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    /// An [`PartitionError::InvalidObservation`]; public so that the NIF layer
    /// reports a term it cannot decode in the same words as the core.
    pub fn observation(field: impl Into<String>, message: impl Into<String>) -> Self {
        PartitionError::InvalidObservation {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PartitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionError::InvalidConfig { field, message } => {
                write!(f, "invalid detector setting {field}: {message}")
            }
            PartitionError::InvalidArgument { field, message } => write!(f, "{field}: {message}"),
            PartitionError::TooManyPeers { limit } => write!(
                f,
                "peer: already tracking {limit} peers, the limit (max_peers); \
                 remove a peer before adding another"
            ),
            PartitionError::InvalidObservation { field, message } => {
                write!(f, "invalid observation, {field}: {message}")
            }
        }
    }
}

impl std::error::Error for PartitionError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_snake_case() {
        let errs = [
            PartitionError::config("window", "must be at least 1"),
            PartitionError::argument("now_ms", "must be finite"),
            PartitionError::TooManyPeers { limit: 3 },
            PartitionError::observation("reach[1]", "has 2 entries, expected 3"),
        ];
        let codes: Vec<_> = errs.iter().map(PartitionError::code).collect();
        assert_eq!(
            codes,
            [
                "invalid_config",
                "invalid_argument",
                "too_many_peers",
                "invalid_observation"
            ]
        );
    }

    #[test]
    fn messages_name_the_field() {
        assert_eq!(
            PartitionError::config("window", "must be at least 1").to_string(),
            "invalid detector setting window: must be at least 1"
        );
        assert_eq!(
            PartitionError::observation("reach[1]", "has 2 entries, expected 3").to_string(),
            "invalid observation, reach[1]: has 2 entries, expected 3"
        );
        assert!(PartitionError::TooManyPeers { limit: 3 }
            .to_string()
            .contains("max_peers"));
    }
}
