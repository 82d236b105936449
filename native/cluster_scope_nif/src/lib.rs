//! Thin rustler wrappers around `cluster_scope_core`. No logic lives here:
//! each NIF decodes its arguments, calls the core, and encodes the result.

mod build_info;
mod json;
mod metrics;
mod partition;
mod procs;
mod throttle;

rustler::init!("Elixir.ClusterScope.Native");
