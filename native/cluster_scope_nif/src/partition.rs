//! Partition NIFs: phi-accrual detectors behind a resource, and the
//! classification of connectivity matrices. Term conversion only: the rules,
//! limits and messages are `cluster_scope_core::partition`'s.
//!
//! Every NIF answers bad input with `{:error, {code, detail}}` (through
//! `crate::error`), never an exception: `code` is `:invalid_config`,
//! `:invalid_argument`, `:too_many_peers` or `:invalid_observation`, and the
//! detail names the offending argument or field (`reach[2][5]`). No atom is
//! ever created from input: every atom here comes from the fixed list below.
//!
//! Costs (measured on a 2-core x86-64): a heartbeat or a phi read takes
//! about 0.1 µs plus the lock (normal scheduler). `phi_all` copies a
//! snapshot under the lock and builds the maps after releasing it, so
//! heartbeats are never held up by the encoding; it takes about 0.25 ms for
//! 1,000 peers, and its `_dirty` variant is for several thousand.
//! Classifying decodes the n × n matrix (about 10 ns an entry) then runs the
//! core (about half a millisecond for 1,000 nodes): 0.12 ms at 100 nodes,
//! 0.4 ms at 200, 10 ms at 1,000. So `partition_classify` and
//! `partition_heals` answer `:use_dirty` past
//! `NORMAL_SCHEDULER_MAX_NODES` (200) nodes, before decoding anything, and
//! their `_dirty` variants (dirty CPU scheduler) do the work; `phi_all`
//! answers `:use_dirty` past `NORMAL_SCHEDULER_MAX_PEERS` (2,000) peers.

use cluster_scope_core::partition::{
    classify, heals_indices, Classification, Detectors, DetectorsConfig, Observation,
    PartitionError, PeerPhi, PhiConfig, Reach, Side, Status, MAX_NODES, NORMAL_SCHEDULER_MAX_NODES,
    NORMAL_SCHEDULER_MAX_PEERS,
};
use parking_lot::Mutex;
use rustler::types::atom;
use rustler::{Atom, Binary, Encoder, Env, NewBinary, ResourceArc, Term, TermType};

use crate::error::error;

mod atoms {
    rustler::atoms! {
        // Keys of phi_all's maps.
        peer,
        phi,
        last_heartbeat_ms,
        samples,
        mean_ms,
        std_dev_ms,
        // Keys of an observation.
        nodes,
        self_index,
        reach,
        connected,
        down,
        net_loss,
        quorum,
        // Reach values.
        unknown,
        reachable,
        unreachable,
        // Keys of a classification (`down`, `frozen`, `one_way` and
        // `indirect` are above or below).
        status,
        anomalies,
        components,
        self_component,
        side,
        unobserved,
        unreachable_pairs,
        unreachable_pair_count,
        truncated,
        // Statuses.
        healthy,
        node_down,
        frozen,
        split,
        one_way,
        indirect,
        mixed,
        // Sides.
        majority,
        minority,
        tie,
        // Past the normal-scheduler size: call the `_dirty` twin.
        use_dirty,
    }
}

/// A set of per-peer detectors behind an Elixir reference; freed when the
/// last reference is garbage collected. The lock is held only for the core
/// call itself, never while terms are built.
pub struct DetectorsResource(Mutex<Detectors>);

#[rustler::resource_impl]
impl rustler::Resource for DetectorsResource {}

type Res = ResourceArc<DetectorsResource>;

// ---------------------------------------------------------------------------
// Detectors
// ---------------------------------------------------------------------------

/// `phi_new/5`: `{:ok, ref}` or `{:error, {:invalid_config, detail}}`.
#[rustler::nif]
fn phi_new<'a>(
    env: Env<'a>,
    window: Term<'a>,
    min_std_dev_ms: Term<'a>,
    acceptable_pause_ms: Term<'a>,
    first_interval_estimate_ms: Term<'a>,
    max_peers: Term<'a>,
) -> Term<'a> {
    let config = (|| -> Result<DetectorsConfig, PartitionError> {
        Ok(DetectorsConfig {
            phi: PhiConfig {
                window: config_count(window, "window")?,
                min_std_dev_ms: config_number(min_std_dev_ms, "min_std_dev_ms")?,
                acceptable_pause_ms: config_number(acceptable_pause_ms, "acceptable_pause_ms")?,
                first_interval_estimate_ms: config_number(
                    first_interval_estimate_ms,
                    "first_interval_estimate_ms",
                )?,
            },
            max_peers: config_count(max_peers, "max_peers")?,
        })
    })();
    match config.and_then(Detectors::new) {
        Ok(detectors) => {
            let resource = ResourceArc::new(DetectorsResource(Mutex::new(detectors)));
            (atom::ok(), resource).encode(env)
        }
        Err(e) => error(env, e),
    }
}

/// `phi_heartbeat/3`: `:ok` or `{:error, {code, detail}}`.
#[rustler::nif]
fn phi_heartbeat<'a>(
    env: Env<'a>,
    detectors: Term<'a>,
    peer: Term<'a>,
    now_ms: Term<'a>,
) -> Term<'a> {
    let result = (|| -> Result<(), PartitionError> {
        let detectors = resource(detectors)?;
        let peer = peer_name(&peer)?;
        let now_ms = time(now_ms)?;
        let result = detectors.0.lock().heartbeat(&peer, now_ms);
        result
    })();
    match result {
        Ok(()) => atom::ok().encode(env),
        Err(e) => error(env, e),
    }
}

/// `phi_get/3`: the peer's phi as a float, `nil` for an unknown peer, or
/// `{:error, {code, detail}}`.
#[rustler::nif]
fn phi_get<'a>(env: Env<'a>, detectors: Term<'a>, peer: Term<'a>, now_ms: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<Option<f64>, PartitionError> {
        let detectors = resource(detectors)?;
        let peer = peer_name(&peer)?;
        let now_ms = time(now_ms)?;
        let phi = detectors.0.lock().phi(&peer, now_ms);
        Ok(phi)
    })();
    match result {
        Ok(Some(phi)) => phi.encode(env),
        Ok(None) => atom::nil().encode(env),
        Err(e) => error(env, e),
    }
}

/// `phi_all/2`: a list of maps, one per peer sorted by name, or
/// `{:error, {code, detail}}`; `:use_dirty` past
/// `NORMAL_SCHEDULER_MAX_PEERS` peers.
#[rustler::nif]
fn phi_all<'a>(env: Env<'a>, detectors: Term<'a>, now_ms: Term<'a>) -> Term<'a> {
    if let Ok(res) = resource(detectors) {
        if res.0.lock().len() > NORMAL_SCHEDULER_MAX_PEERS {
            return atoms::use_dirty().encode(env);
        }
    }
    all(env, detectors, now_ms)
}

/// `phi_all_dirty/2`: `phi_all/2` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn phi_all_dirty<'a>(env: Env<'a>, detectors: Term<'a>, now_ms: Term<'a>) -> Term<'a> {
    all(env, detectors, now_ms)
}

/// `phi_remove/2`: `:ok` (whether the peer was tracked or not) or
/// `{:error, {code, detail}}`.
#[rustler::nif]
fn phi_remove<'a>(env: Env<'a>, detectors: Term<'a>, peer: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<(), PartitionError> {
        let detectors = resource(detectors)?;
        let peer = peer_name(&peer)?;
        detectors.0.lock().remove(&peer);
        Ok(())
    })();
    match result {
        Ok(()) => atom::ok().encode(env),
        Err(e) => error(env, e),
    }
}

fn all<'a>(env: Env<'a>, detectors: Term<'a>, now_ms: Term<'a>) -> Term<'a> {
    let snapshot = (|| -> Result<Vec<PeerPhi>, PartitionError> {
        let detectors = resource(detectors)?;
        let now_ms = time(now_ms)?;
        // Released at the end of this statement: the maps are built unlocked.
        let all = detectors.0.lock().all(now_ms);
        Ok(all)
    })();
    match snapshot {
        Ok(all) => {
            let keys = [
                atoms::peer().encode(env),
                atoms::phi().encode(env),
                atoms::last_heartbeat_ms().encode(env),
                atoms::samples().encode(env),
                atoms::mean_ms().encode(env),
                atoms::std_dev_ms().encode(env),
            ];
            let maps: Vec<Term<'a>> = all
                .iter()
                .map(|p: &PeerPhi| {
                    let values = [
                        binary(env, p.peer.as_bytes()),
                        p.phi.encode(env),
                        p.last_heartbeat_ms.encode(env),
                        p.samples.encode(env),
                        p.mean_ms.encode(env),
                        p.std_dev_ms.encode(env),
                    ];
                    // Six distinct keys: this cannot fail.
                    Term::map_from_term_arrays(env, &keys, &values)
                        .unwrap_or_else(|_| Term::map_new(env))
                })
                .collect();
            maps.encode(env)
        }
        Err(e) => error(env, e),
    }
}

fn resource(term: Term<'_>) -> Result<Res, PartitionError> {
    term.decode::<Res>()
        .map_err(|_| PartitionError::InvalidArgument {
            field: "detectors",
            message: "is not a detectors reference (from phi_new/5)".into(),
        })
}

/// A peer name: a binary holding UTF-8, or an atom (its text).
fn peer_name(term: &Term<'_>) -> Result<String, PartitionError> {
    text(*term).ok_or_else(|| PartitionError::InvalidArgument {
        field: "peer",
        message: "must be a UTF-8 binary or an atom (a node name)".into(),
    })
}

/// A time in ms: a float, or an integer.
fn time(term: Term<'_>) -> Result<f64, PartitionError> {
    number(term).ok_or_else(|| PartitionError::InvalidArgument {
        field: "now_ms",
        message: "must be a number of milliseconds (a float or an integer)".into(),
    })
}

fn config_number(term: Term<'_>, field: &'static str) -> Result<f64, PartitionError> {
    number(term).ok_or_else(|| PartitionError::InvalidConfig {
        field,
        message: "must be a number of milliseconds (a float or an integer)".into(),
    })
}

fn config_count(term: Term<'_>, field: &'static str) -> Result<usize, PartitionError> {
    non_negative(term).ok_or_else(|| PartitionError::InvalidConfig {
        field,
        message: "must be a positive integer".into(),
    })
}

// ---------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------

/// `partition_classify/1`: `{:ok, classification_map}` or
/// `{:error, {code, detail}}`; `:use_dirty` past
/// `NORMAL_SCHEDULER_MAX_NODES` nodes.
#[rustler::nif]
fn partition_classify<'a>(env: Env<'a>, observation: Term<'a>) -> Term<'a> {
    if too_large(observation) {
        return atoms::use_dirty().encode(env);
    }
    classify_term(env, observation)
}

/// `partition_classify_dirty/1`: `partition_classify/1` on a dirty CPU
/// scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn partition_classify_dirty<'a>(env: Env<'a>, observation: Term<'a>) -> Term<'a> {
    classify_term(env, observation)
}

/// `partition_heals/2`: `{:ok, [{name, name}]}` or `{:error, {code,
/// detail}}`; `:use_dirty` past `NORMAL_SCHEDULER_MAX_NODES` nodes in
/// either observation.
#[rustler::nif]
fn partition_heals<'a>(env: Env<'a>, prev: Term<'a>, next: Term<'a>) -> Term<'a> {
    if too_large(prev) || too_large(next) {
        return atoms::use_dirty().encode(env);
    }
    heals_term(env, prev, next)
}

/// True when an observation's `nodes` list is longer than a normal
/// scheduler should decode and classify (read before anything is decoded:
/// a list's length is O(n) over its cells, nanoseconds per node). Anything
/// malformed is left to the decoder, which names the field.
fn too_large(observation: Term<'_>) -> bool {
    observation
        .map_get(atoms::nodes().encode(observation.get_env()))
        .ok()
        .and_then(|nodes| nodes.list_length().ok())
        .is_some_and(|n| n > NORMAL_SCHEDULER_MAX_NODES)
}

/// `partition_heals_dirty/2`: `partition_heals/2` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn partition_heals_dirty<'a>(env: Env<'a>, prev: Term<'a>, next: Term<'a>) -> Term<'a> {
    heals_term(env, prev, next)
}

fn classify_term<'a>(env: Env<'a>, term: Term<'a>) -> Term<'a> {
    match observation(term, "").and_then(|obs| classify(&obs)) {
        Ok(c) => (atom::ok(), classification(env, &c)).encode(env),
        Err(e) => error(env, e),
    }
}

fn heals_term<'a>(env: Env<'a>, prev: Term<'a>, next: Term<'a>) -> Term<'a> {
    let result = observation(prev, "prev.").and_then(|prev| {
        let next = observation(next, "next.")?;
        let healed = heals_indices(&prev, &next)?;
        Ok((prev, healed))
    });
    match result {
        Ok((prev, healed)) => {
            // One binary per node, shared by all its pairs.
            let mut names: Vec<Option<Term<'a>>> = vec![None; prev.nodes.len()];
            let mut name =
                |i: usize| *names[i].get_or_insert_with(|| binary(env, prev.nodes[i].as_bytes()));
            let pairs: Vec<Term<'a>> = healed
                .into_iter()
                .map(|(a, b)| (name(a), name(b)).encode(env))
                .collect();
            (atom::ok(), pairs).encode(env)
        }
        Err(e) => error(env, e),
    }
}

fn classification<'a>(env: Env<'a>, c: &Classification) -> Term<'a> {
    let anomalies: Vec<Atom> = c.anomalies.iter().map(|s| status_atom(*s)).collect();
    rustler::term_map!(env, {
        atoms::status() => status_atom(c.status),
        atoms::anomalies() => anomalies,
        atoms::components() => &c.components,
        atoms::self_component() => c.self_component,
        atoms::side() => side_atom(c.side),
        atoms::down() => &c.down,
        atoms::frozen() => &c.frozen,
        atoms::unobserved() => &c.unobserved,
        atoms::one_way() => &c.one_way,
        atoms::indirect() => &c.indirect,
        atoms::unreachable_pairs() => &c.unreachable_pairs,
        atoms::unreachable_pair_count() => c.unreachable_pair_count,
        atoms::truncated() => c.truncated,
    })
}

fn status_atom(status: Status) -> Atom {
    match status {
        Status::Healthy => atoms::healthy(),
        Status::NodeDown => atoms::node_down(),
        Status::Frozen => atoms::frozen(),
        Status::Split => atoms::split(),
        Status::OneWay => atoms::one_way(),
        Status::Indirect => atoms::indirect(),
        Status::Mixed => atoms::mixed(),
    }
}

fn side_atom(side: Side) -> Atom {
    match side {
        Side::Majority => atoms::majority(),
        Side::Minority => atoms::minority(),
        Side::Tie => atoms::tie(),
    }
}

/// Reads an observation map. `prefix` (`""`, `"prev."`, `"next."`) starts
/// every field name in errors. Every list's length is checked before it is
/// read, so a huge or improper list is refused before anything is copied;
/// the shape rules the decoding does not need are left to
/// `Observation::validate`.
fn observation(term: Term<'_>, prefix: &str) -> Result<Observation, PartitionError> {
    let bad = |field: &str, message: &str| {
        PartitionError::observation(format!("{prefix}{field}"), message)
    };
    if term.get_type() != TermType::Map {
        let field = if prefix.is_empty() {
            "observation"
        } else {
            prefix.trim_end_matches('.')
        };
        return Err(PartitionError::observation(field, "expected a map"));
    }
    let required = |key: Atom, field: &str| {
        term.map_get(key)
            .map_err(|_| bad(field, "is missing (a required key)"))
    };
    let optional = |key: Atom| {
        term.map_get(key)
            .ok()
            .filter(|v| Atom::from_term(*v).map_or(true, |a| a != atom::nil()))
    };

    // nodes
    let nodes_term = required(atoms::nodes(), "nodes")?;
    let n = list_len(nodes_term, &format!("{prefix}nodes"), MAX_NODES)?;
    let mut nodes = Vec::with_capacity(n);
    for (j, t) in items(nodes_term).enumerate() {
        nodes.push(text(t).ok_or_else(|| {
            bad(
                &format!("nodes[{j}]"),
                "expected a UTF-8 binary (a node name)",
            )
        })?);
    }

    if nodes.is_empty() {
        return Err(bad("nodes", "is empty; it must list at least this node"));
    }

    let self_index = non_negative(required(atoms::self_index(), "self_index")?)
        .ok_or_else(|| bad("self_index", "expected a non-negative integer"))?;

    // reach: n rows of n atoms.
    let reach_term = required(atoms::reach(), "reach")?;
    let rows = list_len(reach_term, &format!("{prefix}reach"), n)?;
    if rows != n {
        return Err(bad(
            "reach",
            &format!("has {rows} rows, expected {n} (one per node)"),
        ));
    }
    let (unknown, reachable, unreachable) =
        (atoms::unknown(), atoms::reachable(), atoms::unreachable());
    let mut reach = Vec::with_capacity(n);
    for (i, row_term) in items(reach_term).enumerate() {
        let field = format!("{prefix}reach[{i}]");
        let len = list_len(row_term, &field, n)?;
        if len != n {
            return Err(PartitionError::observation(
                field,
                format!("has {len} entries, expected {n} (one per node)"),
            ));
        }
        let mut row = Vec::with_capacity(n);
        for (j, t) in items(row_term).enumerate() {
            let value = match Atom::from_term(t) {
                Ok(a) if a == reachable => Reach::Reachable,
                Ok(a) if a == unreachable => Reach::Unreachable,
                Ok(a) if a == unknown => Reach::Unknown,
                _ => {
                    return Err(bad(
                        &format!("reach[{i}][{j}]"),
                        "expected :unknown, :reachable or :unreachable",
                    ))
                }
            };
            row.push(value);
        }
        reach.push(row);
    }

    let flags = |t: Term<'_>, name: &str| -> Result<Vec<bool>, PartitionError> {
        let field = format!("{prefix}{name}");
        let len = list_len(t, &field, n)?;
        if len != n {
            return Err(PartitionError::observation(
                field,
                format!("has {len} entries, expected {n} (one per node)"),
            ));
        }
        items(t)
            .enumerate()
            .map(|(j, v)| {
                v.decode::<bool>()
                    .map_err(|_| bad(&format!("{name}[{j}]"), "expected true or false"))
            })
            .collect()
    };
    let connected = flags(required(atoms::connected(), "connected")?, "connected")?;
    let down = flags(required(atoms::down(), "down")?, "down")?;
    let net_loss = match optional(atoms::net_loss()) {
        Some(t) => flags(t, "net_loss")?,
        None => vec![false; n],
    };
    let quorum = match optional(atoms::quorum()) {
        Some(t) => Some(
            non_negative(t).ok_or_else(|| bad("quorum", "expected nil or a positive integer"))?,
        ),
        None => None,
    };

    let obs = Observation {
        nodes,
        self_index,
        reach,
        connected,
        down,
        net_loss,
        quorum,
    };
    obs.validate().map_err(|e| match e {
        PartitionError::InvalidObservation { field, message } => {
            PartitionError::observation(format!("{prefix}{field}"), message)
        }
        other => other,
    })?;
    Ok(obs)
}

/// The length of a proper list at `field`, refused past `limit` entries.
fn list_len(term: Term<'_>, field: &str, limit: usize) -> Result<usize, PartitionError> {
    let len = term
        .list_length()
        .map_err(|_| PartitionError::observation(field, "expected a list"))?;
    if len > limit {
        return Err(PartitionError::observation(
            field,
            format!("has {len} entries, over the limit of {limit}"),
        ));
    }
    Ok(len)
}

/// The items of a list already checked proper by `list_len` (rustler's
/// iterator panics on an improper list).
fn items<'a>(term: Term<'a>) -> impl Iterator<Item = Term<'a>> {
    term.into_list_iterator().into_iter().flatten()
}

// ---------------------------------------------------------------------------
// Small readers and writers
// ---------------------------------------------------------------------------

/// A number as f64: a float, or an integer (exactly when it fits 2⁵³).
fn number(term: Term<'_>) -> Option<f64> {
    match term.get_type() {
        TermType::Float => term.decode::<f64>().ok(),
        TermType::Integer => term
            .decode::<i64>()
            .map(|i| i as f64)
            .or_else(|_| term.decode::<u64>().map(|u| u as f64))
            .ok(),
        _ => None,
    }
}

/// A non-negative integer. 0 and values out of range are left to the
/// core's range checks, which name the bounds: a bignum saturates.
fn non_negative(term: Term<'_>) -> Option<usize> {
    if term.get_type() != TermType::Integer {
        return None;
    }
    if let Ok(u) = term.decode::<u64>() {
        return Some(usize::try_from(u).unwrap_or(usize::MAX));
    }
    // Negative, or a bignum (positive or negative).
    let zero = 0i64.encode(term.get_env());
    (term > zero).then_some(usize::MAX)
}

/// The text of a UTF-8 binary or of an atom (Latin-1 atoms; others fail).
fn text(term: Term<'_>) -> Option<String> {
    match term.get_type() {
        TermType::Binary => {
            let bin = term.decode::<Binary>().ok()?;
            std::str::from_utf8(bin.as_slice()).ok().map(str::to_owned)
        }
        TermType::Atom => term.atom_to_string().ok(),
        _ => None,
    }
}

fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut bin = NewBinary::new(env, bytes.len());
    bin.as_mut_slice().copy_from_slice(bytes);
    bin.into()
}
