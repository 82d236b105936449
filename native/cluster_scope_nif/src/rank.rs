//! `rank_*` NIFs: the cluster-wide top-K of the node views
//! (`cluster_scope_core::rank`).

use cluster_scope_core::rank;
use cluster_scope_core::ErrorCode;
use rustler::types::atom;
use rustler::{Encoder, Env, Term};

use crate::error::{arg, error, Error};

fn merge<'a>(env: Env<'a>, lists: Term<'a>, limit: Term<'a>) -> Result<Term<'a>, Error> {
    let limit: usize = arg(
        limit,
        ErrorCode::InvalidOption,
        "limit",
        "an integer between 1 and 1000",
    )?;
    let terms: Vec<Term<'a>> = arg(lists, ErrorCode::InvalidArgument, "lists", "a list")?;
    if terms.len() > rank::MAX_LISTS {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!("lists: {} lists, at most {}", terms.len(), rank::MAX_LISTS),
        ));
    }
    let mut values = Vec::with_capacity(terms.len());
    for (i, t) in terms.into_iter().enumerate() {
        let list: Vec<u64> = arg(
            t,
            ErrorCode::InvalidArgument,
            &format!("lists[{i}]"),
            "a list of integers >= 0",
        )?;
        values.push(list);
    }
    let merged = rank::merge_top(&values, limit)?;
    Ok((atom::ok(), merged.entries, merged.more).encode(env))
}

/// `rank_merge_top/2`: `(lists of values, limit)` -> `{:ok, [{list,
/// position}], more?}`. O(n log limit) over every value; dirty, since
/// decoding the lists grows with their length.
#[rustler::nif(schedule = "DirtyCpu")]
fn rank_merge_top<'a>(env: Env<'a>, lists: Term<'a>, limit: Term<'a>) -> Term<'a> {
    merge(env, lists, limit).unwrap_or_else(|e| error(env, e))
}
