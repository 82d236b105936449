//! Thin rustler wrappers around `cluster_scope_core`. No logic lives here:
//! each NIF decodes its arguments, calls the core, and encodes the result.
//! Every error is answered as `{:error, {code, detail}}` by `error::error`.

mod build_info;
mod drift;
mod error;
mod json;
mod metrics;
mod partition;
mod placement;
mod procs;
mod rank;
mod throttle;

rustler::init!("Elixir.ClusterScope.Native");
