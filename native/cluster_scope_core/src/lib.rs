//! ClusterScope's core: every piece of logic behind the NIF, in plain Rust.
//!
//! This crate knows nothing of the BEAM. The `cluster_scope_nif` crate wraps
//! it with rustler; keeping the logic here means `cargo test` links and runs
//! without a VM, and the same code is exercised by unit and property tests.

pub mod build_info;
pub mod drift;
pub mod error;
pub mod json;
pub mod metrics;
pub mod partition;
pub mod placement;
pub mod procs;
pub mod protocol;
pub mod rank;
pub mod throttle;

pub use build_info::BuildInfo;
pub use error::{CoreError, ErrorCode};
