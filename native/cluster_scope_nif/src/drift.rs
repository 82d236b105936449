//! `drift_*` NIFs: digests and comparison of named, versioned items across
//! nodes (`cluster_scope_core::drift`): code drift and applications.
//!
//! Items are `{name :: binary, version :: binary}` tuples, read without an
//! allocation per item. Every call runs on a dirty CPU scheduler: 10,000
//! modules take about a millisecond, and `drift_differing/1` accepts up to
//! 1,024 digests of 4,096 buckets.

use cluster_scope_core::drift::{self, Digest};
use cluster_scope_core::ErrorCode;
use rustler::types::atom;
use rustler::{Binary, Encoder, Env, NewBinary, Term};

use crate::error::{arg, error, Error};

fn items<'a>(term: Term<'a>, field: &str) -> Result<Vec<(Binary<'a>, Binary<'a>)>, Error> {
    let list: Vec<Term<'a>> = arg(term, ErrorCode::InvalidArgument, field, "a list")?;
    if list.len() > drift::MAX_ITEMS {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!("{field}: more than {} items", drift::MAX_ITEMS),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, t)| item(*t, field, i))
        .collect()
}

/// One `{name, version}` item; the field is formatted only on error (a
/// `format!` per item cost more than the hashing).
fn item<'a>(t: Term<'a>, field: &str, i: usize) -> Result<(Binary<'a>, Binary<'a>), Error> {
    let pair =
        tuple2(t).and_then(|[n, v]| Some((Binary::from_term(n).ok()?, Binary::from_term(v).ok()?)));
    pair.ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidArgument,
            format!("{field}[{i}]: expected {{name :: binary, version :: binary}}"),
        )
    })
}

/// The two elements of a 2-tuple, without allocating.
fn tuple2(term: Term<'_>) -> Option<[Term<'_>; 2]> {
    let env = term.get_env();
    let mut arity: rustler::sys::c_int = 0;
    let mut array: *const rustler::sys::ErlNifTerm = std::ptr::null();
    // SAFETY: enif_get_tuple fills `arity` and `array` (pointing into the
    // tuple, alive as long as the term) when it returns true.
    let elems = unsafe {
        if rustler::sys::enif_get_tuple(env.as_c_arg(), term.as_c_arg(), &mut arity, &mut array)
            == 0
            || arity != 2
        {
            return None;
        }
        std::slice::from_raw_parts(array, 2)
    };
    // SAFETY: the elements belong to `term`'s environment.
    Some(std::array::from_fn(|i| unsafe { Term::new(env, elems[i]) }))
}

fn bytes<'a>(env: Env<'a>, data: &[u8]) -> Term<'a> {
    let mut bin = NewBinary::new(env, data.len());
    bin.as_mut_slice().copy_from_slice(data);
    bin.into()
}

fn digest_run<'a>(env: Env<'a>, list: Term<'a>, buckets: Term<'a>) -> Result<Term<'a>, Error> {
    let buckets: u64 = arg(
        buckets,
        ErrorCode::InvalidArgument,
        "buckets",
        "an integer 1..4096",
    )?;
    let items = items(list, "items")?;
    let d = drift::digest(
        items.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
        buckets,
    )?;
    Ok((atom::ok(), bytes(env, &d.to_bytes())).encode(env))
}

/// `drift_digest/2`: the digest of `items` over `buckets` buckets, as a
/// binary (12 bytes + 8 per bucket). O(items); dirty.
#[rustler::nif(schedule = "DirtyCpu")]
fn drift_digest<'a>(env: Env<'a>, items: Term<'a>, buckets: Term<'a>) -> Term<'a> {
    digest_run(env, items, buckets).unwrap_or_else(|e| error(env, e))
}

fn select_run<'a>(
    env: Env<'a>,
    list: Term<'a>,
    buckets: Term<'a>,
    wanted: Term<'a>,
) -> Result<Term<'a>, Error> {
    let buckets: u64 = arg(
        buckets,
        ErrorCode::InvalidArgument,
        "buckets",
        "an integer 1..4096",
    )?;
    let wanted: Vec<u64> = arg(
        wanted,
        ErrorCode::InvalidArgument,
        "wanted",
        "a list of integers >= 0",
    )?;
    let list: Vec<Term<'a>> = arg(list, ErrorCode::InvalidArgument, "items", "a list")?;
    let mut names = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        names.push(item(*t, "items", i)?.0);
    }
    let picked = drift::select(names.iter().map(|n| n.as_slice()), buckets, &wanted)?;
    let out: Vec<Term<'a>> = picked.into_iter().map(|i| list[i]).collect();
    Ok((atom::ok(), out).encode(env))
}

/// `drift_select/3`: the items (the same terms) whose names fall into the
/// `wanted` buckets. O(items); dirty.
#[rustler::nif(schedule = "DirtyCpu")]
fn drift_select<'a>(
    env: Env<'a>,
    items: Term<'a>,
    buckets: Term<'a>,
    wanted: Term<'a>,
) -> Term<'a> {
    select_run(env, items, buckets, wanted).unwrap_or_else(|e| error(env, e))
}

fn differing_run<'a>(env: Env<'a>, digests: Term<'a>) -> Result<Term<'a>, Error> {
    let list: Vec<Binary<'a>> = arg(
        digests,
        ErrorCode::InvalidArgument,
        "digests",
        "a list of binaries",
    )?;
    if list.len() > drift::MAX_NODES {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!("digests: more than {}", drift::MAX_NODES),
        ));
    }
    let digests = list
        .iter()
        .enumerate()
        .map(|(i, b)| Digest::from_bytes(b.as_slice(), i))
        .collect::<Result<Vec<_>, _>>()?;
    let differing = drift::differing_buckets(&digests)?;
    Ok((atom::ok(), differing).encode(env))
}

/// `drift_differing/1`: the buckets whose sums differ between the digests.
/// O(nodes x buckets): microseconds for 20 x 256, but up to 1,024 x 4,096
/// is accepted (milliseconds), so dirty.
#[rustler::nif(schedule = "DirtyCpu")]
fn drift_differing<'a>(env: Env<'a>, digests: Term<'a>) -> Term<'a> {
    differing_run(env, digests).unwrap_or_else(|e| error(env, e))
}

fn compare_run<'a>(env: Env<'a>, nodes: Term<'a>) -> Result<Term<'a>, Error> {
    let list: Vec<Term<'a>> = arg(nodes, ErrorCode::InvalidArgument, "nodes", "a list")?;
    if list.len() > drift::MAX_NODES {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!("nodes: more than {}", drift::MAX_NODES),
        ));
    }
    let mut per_node = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        let node: Vec<(Binary<'a>, Binary<'a>)> = items(t, &format!("nodes[{i}]"))?;
        per_node.push(
            node.into_iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .collect::<Vec<_>>(),
        );
    }
    let diffs = drift::compare(&per_node)?;
    let out: Vec<Term<'a>> = diffs
        .iter()
        .map(|d| {
            let versions: Vec<Term<'a>> = d
                .versions
                .iter()
                .map(|(v, nodes)| (bytes(env, v), nodes.clone()).encode(env))
                .collect();
            (bytes(env, &d.name), versions, d.missing.clone()).encode(env)
        })
        .collect();
    Ok((atom::ok(), out).encode(env))
}

/// `drift_compare/1`: for a list of nodes' items, the names not the same
/// everywhere: `{name, [{version, [node_index]}], [missing_node_index]}`,
/// sorted by name. O(items log items); dirty.
#[rustler::nif(schedule = "DirtyCpu")]
fn drift_compare<'a>(env: Env<'a>, nodes: Term<'a>) -> Term<'a> {
    compare_run(env, nodes).unwrap_or_else(|e| error(env, e))
}
