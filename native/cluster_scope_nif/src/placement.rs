//! `placement_*` NIFs: sandbox placement (`cluster_scope_core::placement`).

use cluster_scope_core::placement::{self, NodeLoad, Strategy};
use cluster_scope_core::ErrorCode;
use rustler::types::atom;
use rustler::{Encoder, Env, Term};

use crate::error::{arg, error, Error};

fn run<'a>(
    env: Env<'a>,
    strategy: Term<'a>,
    count: Term<'a>,
    nodes: Term<'a>,
    offset: Term<'a>,
    weight: Term<'a>,
) -> Result<Term<'a>, Error> {
    let name: String = arg(
        strategy,
        ErrorCode::InvalidOption,
        "strategy",
        "a binary (round_robin, spread, pinned, least_loaded)",
    )?;
    let strategy = Strategy::parse(&name)?;
    let count: usize = arg(
        count,
        ErrorCode::InvalidArgument,
        "count",
        "an integer >= 0",
    )?;
    let offset: usize = arg(
        offset,
        ErrorCode::InvalidArgument,
        "offset",
        "an integer >= 0",
    )?;
    let weight: f64 = arg(weight, ErrorCode::InvalidArgument, "weight", "a float")?;
    let list: Vec<Term<'a>> = arg(nodes, ErrorCode::InvalidArgument, "nodes", "a list")?;
    if list.len() > placement::MAX_NODES {
        return Err(placement::PlacementError::TooManyNodes(list.len()).into());
    }
    let mut loads = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        let (load, current): (f64, u64) = arg(
            t,
            ErrorCode::InvalidArgument,
            &format!("nodes[{i}]"),
            "{load :: float, current :: integer >= 0}",
        )?;
        loads.push(NodeLoad { load, current });
    }
    let placed = placement::place(strategy, count, &loads, offset, weight)?;
    Ok((atom::ok(), placed).encode(env))
}

/// `placement_place/5`: O(count log n); the caller takes the dirty twin
/// above 10,000 processes.
#[rustler::nif]
fn placement_place<'a>(
    env: Env<'a>,
    strategy: Term<'a>,
    count: Term<'a>,
    nodes: Term<'a>,
    offset: Term<'a>,
    weight: Term<'a>,
) -> Term<'a> {
    run(env, strategy, count, nodes, offset, weight).unwrap_or_else(|e| error(env, e))
}

/// `placement_place_dirty/5`: the same on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn placement_place_dirty<'a>(
    env: Env<'a>,
    strategy: Term<'a>,
    count: Term<'a>,
    nodes: Term<'a>,
    offset: Term<'a>,
    weight: Term<'a>,
) -> Term<'a> {
    run(env, strategy, count, nodes, offset, weight).unwrap_or_else(|e| error(env, e))
}
