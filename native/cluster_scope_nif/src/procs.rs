//! Process-table NIFs: a pid cursor and snapshot resources around
//! `cluster_scope_core::procs`, and term conversion only. Aggregation,
//! windows, pages, limits and the serialized form are the core's.
//!
//! # Costs and schedulers
//!
//! * `procs_pids_new/1` (dirty CPU): copies a list of every process of the
//!   node, ~10 ns a pid, so hundreds of microseconds past 50,000 processes.
//! * `procs_pids_next/2` (normal): at most 5,000 pids, a few microseconds.
//! * `procs_snapshot_new/0`, `procs_snapshot_info/1` (normal): constant.
//! * `procs_snapshot_push/2` (normal): decodes a batch of rows under the
//!   snapshot's write lock; 0.2-0.3 us a row (measured medians: 190 us for
//!   1,000 pid rows into a warm snapshot, 290 us into a fresh one; 2-core
//!   x86-64), so batches of 1,000 stay well under a millisecond. Each
//!   distinct atom and `{m, f, a}` is turned into text once per snapshot
//!   (cached by its raw term word; atoms are immediates that live as long
//!   as the VM). It never waits for the lock: while a dirty call reads the
//!   snapshot it answers `{:error, {:busy, detail}}`, and
//!   `procs_snapshot_push_dirty/2` (same, dirty CPU, waits) is the
//!   fallback, also for bigger batches.
//! * `procs_summary/3`, `procs_window/5`, `procs_page/2` (dirty CPU): one
//!   pass over every row: for 1,000,000 rows a summary takes 16-35 ms (k
//!   20 to 1000), a page of 1,000 about 12 ms, a window about 60 ms.
//! * `procs_summary_merge/1`, `procs_summary_to_term/1`,
//!   `procs_window_merge/1`, `procs_window_to_term/1` (dirty CPU): parse
//!   JSON whose size grows with the number of nodes, groups and K.
//!
//! # Errors
//!
//! Never an exception for bad input: `{:error, {code, detail}}` (through
//! `crate::error`) with code `:invalid_row` (detail `"row 3: invalid key"`),
//! `:invalid_option`, `:invalid_argument` (the detail starts with the
//! option's or argument's name), `:too_many_rows`, `:invalid_summary`,
//! `:invalid_window` or `:busy`. Every atom comes from a fixed list; texts
//! read from processes (names, applications, functions) come back as
//! binaries.

use cluster_scope_core::procs::{
    page, Column, Cursor, CursorKey, Filter, Glob, Key, KeyKind, Metric, PageOptions, PidCursor,
    ProcRow, ProcType, ProcsError, Row, Snapshot, Summary, SummaryOptions, Window, WindowRow,
    WordMap, DEFAULT_K, DEFAULT_LIMIT, NO_NAME, UNDEFINED,
};
use cluster_scope_core::{CoreError, ErrorCode};
use parking_lot::{Mutex, RwLock};
use rustler::sys::ErlNifTerm;
use rustler::types::atom;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, NewBinary, ResourceArc, Term, TermType};

use crate::error::error;

mod atoms {
    rustler::atoms! {
        // Keys of options, rows, summaries and windows.
        key,
        memory,
        reductions,
        message_queue_len,
        heap_size,
        stack_size,
        total_heap_size,
        status,
        current_function,
        registered_name,
        initial_call,
        application,
        module,
        r#type = "type",
        name_pattern,
        min_memory,
        min_queue,
        k,
        sort_by,
        limit,
        after,
        before,
        node,
        interval_ms,
        min,
        // Process types.
        supervisor,
        gen_server,
        gen_statem,
        gen_event,
        task,
        proc_lib,
        plain,
        // Values and other keys.
        undefined,
        max,
        rows,
        bytes,
        pid,
        version,
        nodes,
        process_count,
        matched,
        totals,
        groups,
        top,
        histograms,
        entries,
        truncated,
        count,
        new,
        exited,
        reductions_delta,
        reductions_per_sec,
        memory_delta,
        message_queue_len_delta,
    }
}

// ---------------------------------------------------------------------------
// Raw term words
// ---------------------------------------------------------------------------

/// The raw word of a term. `ErlNifTerm` is `repr(transparent)` over `usize`.
fn word(term: Term<'_>) -> u64 {
    let raw: ErlNifTerm = term.as_c_arg();
    // SAFETY: ErlNifTerm is a repr(transparent) wrapper of a usize.
    unsafe { std::mem::transmute::<ErlNifTerm, usize>(raw) as u64 }
}

/// The term of a raw word stored by [`pid_word`]: an immediate local pid,
/// valid in any environment for as long as the VM runs.
fn from_word(env: Env<'_>, w: u64) -> Term<'_> {
    // SAFETY: only called with words of immediate terms (checked when they
    // were stored), which need no heap of their own.
    unsafe { Term::new(env, std::mem::transmute::<usize, ErlNifTerm>(w as usize)) }
}

/// Primary tag `11` (immediate) and immediate-1 tag `00` (pid).
const PID_IMMEDIATE_TAG: u64 = 0x3;

/// The raw word of a local pid, if it is one and is an immediate term (as
/// on every 64-bit BEAM).
fn pid_word(term: Term<'_>) -> Option<u64> {
    if term.get_type() != TermType::Pid || term.decode::<LocalPid>().is_err() {
        return None;
    }
    let w = word(term);
    (w & 0xf == PID_IMMEDIATE_TAG).then_some(w)
}

/// `"<0.ID.SERIAL>"` of a stored pid word, through `enif_snprintf("%T")`
/// (rustler's `Debug` of a term).
fn pid_text(env: Env<'_>, w: u64) -> String {
    format!("{:?}", from_word(env, w))
}

/// The elements of a tuple of exactly `N` elements, without allocating.
fn tuple<'a, const N: usize>(term: Term<'a>) -> Option<[Term<'a>; N]> {
    let env = term.get_env();
    let mut arity: rustler::sys::c_int = 0;
    let mut array: *const ErlNifTerm = std::ptr::null();
    // SAFETY: enif_get_tuple fills `arity` and `array` (pointing into the
    // tuple, alive as long as the term) when it returns true.
    let elems = unsafe {
        if rustler::sys::enif_get_tuple(env.as_c_arg(), term.as_c_arg(), &mut arity, &mut array)
            == 0
            || arity as usize != N
        {
            return None;
        }
        std::slice::from_raw_parts(array, N)
    };
    // SAFETY: the elements belong to `term`'s environment.
    Some(std::array::from_fn(|i| unsafe { Term::new(env, elems[i]) }))
}

// ---------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------

/// Pids handed out in chunks.
pub struct PidsResource(Mutex<PidCursor>);

#[rustler::resource_impl]
impl rustler::Resource for PidsResource {}

/// A snapshot and the caches of the text of atoms and `{m, f, a}` tuples
/// already seen (by raw word; an `{m, f, a}` by its three words).
pub struct SnapshotResource(RwLock<State>);

#[rustler::resource_impl]
impl rustler::Resource for SnapshotResource {}

#[derive(Default)]
struct State {
    snap: Snapshot,
    atoms: WordMap<u64, u32>,
    /// (module, function, arity) words → (text id, module id).
    mfas: WordMap<(u64, u64, u64), (u32, u32)>,
}

type SnapRef = ResourceArc<SnapshotResource>;

/// One number of every process (`cluster_scope_core::procs::Column`).
pub struct ColumnResource(RwLock<Column>);

#[rustler::resource_impl]
impl rustler::Resource for ColumnResource {}

fn column_ref(term: Term<'_>) -> Result<ResourceArc<ColumnResource>, ProcsError> {
    term.decode::<ResourceArc<ColumnResource>>().map_err(|_| {
        ProcsError::argument("column", "is not a column reference (procs_column_new/0)")
    })
}

fn snapshot_ref(term: Term<'_>, field: &'static str) -> Result<SnapRef, ProcsError> {
    term.decode::<SnapRef>().map_err(|_| {
        ProcsError::argument(field, "is not a snapshot reference (procs_snapshot_new/0)")
    })
}

// ---------------------------------------------------------------------------
// Pid cursor
// ---------------------------------------------------------------------------

/// `procs_pids_new/1`: a cursor reference over a list of local pids, or
/// `{:error, {:invalid_argument, "pids: ..."}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_pids_new<'a>(env: Env<'a>, pids: Term<'a>) -> Term<'a> {
    pids_new(env, pids, None)
}

/// `procs_pids_new/2`: `procs_pids_new/1` without the pids of `exclude` (a
/// short list: a collection's own processes).
#[rustler::nif(name = "procs_pids_new", schedule = "DirtyCpu")]
fn procs_pids_new_excluding<'a>(env: Env<'a>, pids: Term<'a>, exclude: Term<'a>) -> Term<'a> {
    pids_new(env, pids, Some(exclude))
}

fn pid_words(list: Term<'_>, field: &'static str) -> Result<Vec<u64>, ProcsError> {
    let bad = || ProcsError::argument(field, "expected a proper list of local pids");
    let len = list.list_length().map_err(|_| bad())?;
    let mut words = Vec::with_capacity(len);
    for t in list.into_list_iterator().map_err(|_| bad())? {
        words.push(pid_word(t).ok_or_else(bad)?);
    }
    Ok(words)
}

fn pids_new<'a>(env: Env<'a>, pids: Term<'a>, exclude: Option<Term<'a>>) -> Term<'a> {
    let result = (|| -> Result<_, ProcsError> {
        let mut words = pid_words(pids, "pids")?;
        if let Some(exclude) = exclude {
            let exclude = pid_words(exclude, "exclude")?;
            if exclude.len() > 64 {
                return Err(ProcsError::argument("exclude", "holds at most 64 pids"));
            }
            if !exclude.is_empty() {
                words.retain(|w| !exclude.contains(w));
            }
        }
        Ok(words)
    })();
    match result {
        Ok(words) => ResourceArc::new(PidsResource(Mutex::new(PidCursor::new(words)))).encode(env),
        Err(e) => error(env, e),
    }
}

/// `procs_pids_next/2`: the next `n` (1..=5000) pids, `[]` once exhausted.
#[rustler::nif]
fn procs_pids_next<'a>(env: Env<'a>, cursor: Term<'a>, n: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ProcsError> {
        let cursor = cursor
            .decode::<ResourceArc<PidsResource>>()
            .map_err(|_| ProcsError::argument("pids", "is not a pid cursor (procs_pids_new/1)"))?;
        let n = n
            .decode::<u64>()
            .map_err(|_| ProcsError::argument("n", "expected a positive integer"))?;
        let mut c = cursor.0.lock();
        let chunk = c.next_chunk(usize::try_from(n).unwrap_or(usize::MAX))?;
        Ok(chunk.iter().map(|&w| from_word(env, w)).collect::<Vec<_>>())
    })();
    match result {
        Ok(pids) => pids.encode(env),
        Err(e) => error(env, e),
    }
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

/// `procs_snapshot_new/0`: an empty snapshot reference.
#[rustler::nif]
fn procs_snapshot_new(env: Env<'_>) -> Term<'_> {
    ResourceArc::new(SnapshotResource(RwLock::new(State::default()))).encode(env)
}

/// `procs_snapshot_push/2`: appends a batch of 13-tuples; `:ok`, or
/// `{:error, {code, detail}}` with code `:invalid_row` (nothing appended;
/// the detail names the row's index and field), `:too_many_rows` or `:busy`
/// (a dirty call holds the snapshot).
#[rustler::nif]
fn procs_snapshot_push<'a>(env: Env<'a>, snapshot: Term<'a>, rows: Term<'a>) -> Term<'a> {
    push(env, snapshot, rows, false)
}

/// `procs_snapshot_push_dirty/2`: `procs_snapshot_push/2` on a dirty CPU
/// scheduler, waiting for the lock; for big batches.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_snapshot_push_dirty<'a>(env: Env<'a>, snapshot: Term<'a>, rows: Term<'a>) -> Term<'a> {
    push(env, snapshot, rows, true)
}

fn push<'a>(env: Env<'a>, snapshot: Term<'a>, rows: Term<'a>, wait: bool) -> Term<'a> {
    let result = (|| -> Result<(), CoreError> {
        let res = snapshot_ref(snapshot, "snapshot")?;
        let not_a_list = || ProcsError::argument("rows", "expected a proper list");
        let len = rows.list_length().map_err(|_| not_a_list())?;
        let mut state = if wait {
            res.0.write()
        } else {
            res.0.try_write().ok_or_else(|| {
                CoreError::new(
                    ErrorCode::Busy,
                    "snapshot: a dirty call is reading it; retry, or push with \
                     procs_snapshot_push_dirty/2, which waits",
                )
            })?
        };
        let mut decoded = Vec::with_capacity(len);
        let iter = rows.into_list_iterator().map_err(|_| not_a_list())?;
        for (index, t) in iter.enumerate() {
            decoded.push(decode_row(&mut state, t, index)?);
        }
        Ok(state.snap.push(&decoded)?)
    })();
    match result {
        Ok(()) => atom::ok().encode(env),
        Err(e) => error(env, e),
    }
}

fn decode_row(state: &mut State, term: Term<'_>, index: usize) -> Result<Row, ProcsError> {
    let bad = |field| ProcsError::InvalidRow { index, field };
    let f: [Term<'_>; 13] = tuple(term).ok_or_else(|| bad("row"))?;
    let key = match f[0].get_type() {
        TermType::Pid => Key::Pid(pid_word(f[0]).ok_or_else(|| bad("key"))?),
        TermType::Integer => Key::Integer(f[0].decode::<u64>().map_err(|_| bad("key"))?),
        _ => return Err(bad("key")),
    };
    let num = |i: usize, field| f[i].decode::<u64>().map_err(|_| bad(field));
    let status = atom_id(state, f[7]).ok_or_else(|| bad("status"))?;
    let (current_function, current_module) =
        mfa_id(state, f[8]).ok_or_else(|| bad("current_function"))?;
    let registered_name = match f[9].get_type() {
        TermType::List if f[9].is_empty_list() => NO_NAME,
        TermType::Atom if word(f[9]) == word(atom::nil().to_term(f[9].get_env())) => NO_NAME,
        TermType::Atom => atom_id(state, f[9]).ok_or_else(|| bad("registered_name"))?,
        _ => return Err(bad("registered_name")),
    };
    let (initial_call, initial_module) = mfa_id(state, f[10]).ok_or_else(|| bad("initial_call"))?;
    let application = atom_id(state, f[11]).ok_or_else(|| bad("application"))?;
    let proc_type = proc_type(f[12]).ok_or_else(|| bad("type"))?;
    Ok(Row {
        key,
        memory: num(1, "memory")?,
        reductions: num(2, "reductions")?,
        message_queue_len: num(3, "message_queue_len")?,
        heap_size: num(4, "heap_size")?,
        stack_size: num(5, "stack_size")?,
        total_heap_size: num(6, "total_heap_size")?,
        status,
        current_function,
        registered_name,
        initial_call,
        application,
        module: if initial_module != UNDEFINED {
            initial_module
        } else {
            current_module
        },
        proc_type,
    })
}

/// The dictionary id of an atom's text, cached by its word.
fn atom_id(state: &mut State, term: Term<'_>) -> Option<u32> {
    if term.get_type() != TermType::Atom {
        return None;
    }
    let w = word(term);
    if let Some(&id) = state.atoms.get(&w) {
        return Some(id);
    }
    let text = term.atom_to_string().ok()?;
    let id = state.snap.intern(&text);
    state.atoms.insert(w, id);
    Some(id)
}

/// `{m, f, a}` → (id of `"m:f/a"`, id of `"m"`); `:undefined` → both
/// `UNDEFINED`.
fn mfa_id(state: &mut State, term: Term<'_>) -> Option<(u32, u32)> {
    if term.get_type() == TermType::Atom {
        let undefined = atoms::undefined().to_term(term.get_env());
        return (word(term) == word(undefined)).then_some((UNDEFINED, UNDEFINED));
    }
    let t: [Term<'_>; 3] = tuple(term)?;
    if t[0].get_type() != TermType::Atom || t[1].get_type() != TermType::Atom {
        return None;
    }
    let arity = t[2].decode::<u64>().ok().filter(|&a| a <= 255)?;
    let cache_key = (word(t[0]), word(t[1]), arity);
    if let Some(&ids) = state.mfas.get(&cache_key) {
        return Some(ids);
    }
    let module = t[0].atom_to_string().ok()?;
    let function = t[1].atom_to_string().ok()?;
    let text_id = state.snap.intern(&format!("{module}:{function}/{arity}"));
    let module_id = state.snap.intern(&module);
    state.mfas.insert(cache_key, (text_id, module_id));
    Some((text_id, module_id))
}

fn proc_type(term: Term<'_>) -> Option<ProcType> {
    let a = Atom::from_term(term).ok()?;
    [
        (atoms::supervisor(), ProcType::Supervisor),
        (atoms::gen_server(), ProcType::GenServer),
        (atoms::gen_statem(), ProcType::GenStatem),
        (atoms::gen_event(), ProcType::GenEvent),
        (atoms::task(), ProcType::Task),
        (atoms::proc_lib(), ProcType::ProcLib),
        (atoms::plain(), ProcType::Plain),
    ]
    .into_iter()
    .find(|(x, _)| *x == a)
    .map(|(_, t)| t)
}

/// `procs_snapshot_info/1`: `%{rows: n, bytes: approximate_heap_bytes}`.
#[rustler::nif]
fn procs_snapshot_info<'a>(env: Env<'a>, snapshot: Term<'a>) -> Term<'a> {
    match snapshot_ref(snapshot, "snapshot") {
        Ok(res) => {
            let (rows, bytes) = {
                let s = res.0.read();
                (s.snap.len(), s.snap.heap_bytes())
            };
            rustler::term_map!(env, { atoms::rows() => rows, atoms::bytes() => bytes })
        }
        Err(e) => error(env, e),
    }
}

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

fn is_nil(term: Term<'_>) -> bool {
    Atom::from_term(term).is_ok_and(|a| a == atom::nil())
}

/// The value of `key` in the options map, absent when missing or `nil`.
fn opt<'a>(opts: Term<'a>, key: Atom) -> Option<Term<'a>> {
    opts.map_get(key).ok().filter(|v| !is_nil(*v))
}

/// Text of a UTF-8 binary or an atom.
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

fn check_map(opts: Term<'_>) -> Result<(), ProcsError> {
    if opts.get_type() == TermType::Map {
        Ok(())
    } else {
        Err(ProcsError::option("opts", "expected a map"))
    }
}

fn filter(opts: Term<'_>) -> Result<Filter, ProcsError> {
    check_map(opts)?;
    let u64_opt = |key, field| {
        opt(opts, key)
            .map(|t| {
                t.decode::<u64>()
                    .map_err(|_| ProcsError::option(field, "expected a non-negative integer"))
            })
            .transpose()
    };
    let application = opt(opts, atoms::application())
        .map(|t| text(t).ok_or_else(|| ProcsError::option("application", "expected a string")))
        .transpose()?;
    let proc_type = opt(opts, atoms::r#type())
        .map(|t| {
            text(t).and_then(|s| ProcType::parse(&s)).ok_or_else(|| {
                ProcsError::option(
                    "type",
                    "expected one of supervisor, gen_server, gen_statem, gen_event, task, \
                     proc_lib, plain",
                )
            })
        })
        .transpose()?;
    let name_pattern = match opt(opts, atoms::name_pattern()) {
        Some(t) => Some(Glob::new(&text(t).ok_or_else(|| {
            ProcsError::option("name_pattern", "expected a string")
        })?)?),
        None => None,
    };
    Ok(Filter {
        application,
        proc_type,
        name_pattern,
        min_memory: u64_opt(atoms::min_memory(), "min_memory")?,
        min_queue: u64_opt(atoms::min_queue(), "min_queue")?,
    })
}

fn bounded(
    opts: Term<'_>,
    key: Atom,
    field: &'static str,
    default: usize,
) -> Result<usize, ProcsError> {
    match opt(opts, key) {
        None => Ok(default),
        Some(t) => t
            .decode::<u64>()
            .ok()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| ProcsError::option(field, "expected a positive integer")),
    }
}

fn summary_options(opts: Term<'_>) -> Result<SummaryOptions, ProcsError> {
    let filter = filter(opts)?;
    SummaryOptions::new(filter, bounded(opts, atoms::k(), "k", DEFAULT_K)?)
}

fn node_name(term: Term<'_>) -> Result<String, ProcsError> {
    text(term).ok_or_else(|| ProcsError::argument("node", "expected a binary (a node name)"))
}

// ---------------------------------------------------------------------------
// Summaries
// ---------------------------------------------------------------------------

/// `procs_summary/3`: `{:ok, binary}` (JSON), or `{:error, {code, detail}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_summary<'a>(env: Env<'a>, snapshot: Term<'a>, node: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ProcsError> {
        let res = snapshot_ref(snapshot, "snapshot")?;
        let node = node_name(node)?;
        let opts = summary_options(opts)?;
        let state = res.0.read();
        Ok(Summary::of(&state.snap, &node, &opts, &mut |w| pid_text(env, w)).to_bytes())
    })();
    match result {
        Ok(bytes) => ok(env, binary(env, &bytes)),
        Err(e) => error(env, e),
    }
}

fn binaries<'a>(list: Term<'a>, field: &'static str) -> Result<Vec<Binary<'a>>, ProcsError> {
    list.decode::<Vec<Binary>>()
        .map_err(|_| ProcsError::argument(field, "expected a list of binaries"))
}

/// `procs_summary_merge/1`: `{:ok, binary}`, `{:error, {:invalid_summary,
/// detail}}`, or `{:error, {:invalid_argument, detail}}` for `[]`.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_summary_merge<'a>(env: Env<'a>, list: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ProcsError> {
        let parts = binaries(list, "summaries")?
            .iter()
            .map(|b| Summary::from_bytes(b.as_slice()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Summary::merge(&parts)?.to_bytes())
    })();
    match result {
        Ok(bytes) => ok(env, binary(env, &bytes)),
        Err(e) => error(env, e),
    }
}

/// `procs_summary_to_term/1`: `{:ok, map}` or `{:error, {:invalid_summary,
/// detail}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_summary_to_term<'a>(env: Env<'a>, bin: Term<'a>) -> Term<'a> {
    let result = bin
        .decode::<Binary>()
        .map_err(|_| ProcsError::InvalidSummary {
            message: "not a binary".into(),
        })
        .and_then(|b| Summary::from_bytes(b.as_slice()));
    match result {
        Ok(s) => ok(env, summary_term(env, &s)),
        Err(e) => error(env, e),
    }
}

fn summary_term<'a>(env: Env<'a>, s: &Summary) -> Term<'a> {
    let rows = |list: &[ProcRow]| {
        list.iter()
            .map(|r| proc_row(env, r, &[]))
            .collect::<Vec<_>>()
    };
    let group_set = |set: &cluster_scope_core::procs::GroupSet| {
        let entries: Vec<Term<'a>> = set
            .entries
            .iter()
            .map(|g| {
                rustler::term_map!(env, {
                    atoms::key() => g.key.as_str(),
                    atoms::count() => g.count,
                    atoms::memory() => g.memory,
                })
            })
            .collect();
        rustler::term_map!(env, { atoms::entries() => entries, atoms::truncated() => set.truncated })
    };
    let g = &s.groups;
    rustler::term_map!(env, {
        atoms::version() => s.version,
        atoms::nodes() => &s.nodes,
        atoms::k() => s.k,
        atoms::process_count() => s.process_count,
        atoms::matched() => s.matched,
        atoms::totals() => rustler::term_map!(env, {
            atoms::memory() => s.totals.memory,
            atoms::reductions() => s.totals.reductions,
            atoms::message_queue_len() => s.totals.message_queue_len,
            atoms::heap_size() => s.totals.heap_size,
        }),
        atoms::groups() => rustler::term_map!(env, {
            atoms::status() => group_set(&g.status),
            atoms::application() => group_set(&g.application),
            atoms::initial_call() => group_set(&g.initial_call),
            atoms::module() => group_set(&g.module),
            atoms::r#type() => group_set(&g.proc_type),
        }),
        atoms::top() => rustler::term_map!(env, {
            atoms::memory() => rows(&s.top.memory),
            atoms::reductions() => rows(&s.top.reductions),
            atoms::message_queue_len() => rows(&s.top.message_queue_len),
            atoms::heap_size() => rows(&s.top.heap_size),
        }),
        atoms::histograms() => rustler::term_map!(env, {
            atoms::memory() => &s.histograms.memory,
            atoms::message_queue_len() => &s.histograms.message_queue_len,
        }),
    })
}

/// A top row as a map, plus `extra` pairs.
fn proc_row<'a>(env: Env<'a>, r: &ProcRow, extra: &[(Atom, Term<'a>)]) -> Term<'a> {
    let name = match &r.registered_name {
        Some(n) => n.as_str().encode(env),
        None => atom::nil().encode(env),
    };
    let mut keys: Vec<Term<'a>> = Vec::with_capacity(15 + extra.len());
    let mut values: Vec<Term<'a>> = Vec::with_capacity(15 + extra.len());
    for (k, v) in [
        (atoms::node(), r.node.as_str().encode(env)),
        (atoms::pid(), r.pid.as_str().encode(env)),
        (atoms::key(), r.key.encode(env)),
        (atoms::registered_name(), name),
        (atoms::initial_call(), r.initial_call.as_str().encode(env)),
        (
            atoms::current_function(),
            r.current_function.as_str().encode(env),
        ),
        (atoms::application(), r.application.as_str().encode(env)),
        (atoms::r#type(), r.proc_type.as_str().encode(env)),
        (atoms::status(), r.status.as_str().encode(env)),
        (atoms::memory(), r.memory.encode(env)),
        (atoms::reductions(), r.reductions.encode(env)),
        (atoms::message_queue_len(), r.message_queue_len.encode(env)),
        (atoms::heap_size(), r.heap_size.encode(env)),
        (atoms::stack_size(), r.stack_size.encode(env)),
        (atoms::total_heap_size(), r.total_heap_size.encode(env)),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        keys.push(k.encode(env));
        values.push(v);
    }
    // Distinct keys: this cannot fail.
    Term::map_from_term_arrays(env, &keys, &values).unwrap_or_else(|_| Term::map_new(env))
}

// ---------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------

/// `procs_window/5`: `{:ok, binary}` (JSON) or `{:error, {code, detail}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_window<'a>(
    env: Env<'a>,
    before: Term<'a>,
    after: Term<'a>,
    node: Term<'a>,
    interval_ms: Term<'a>,
    opts: Term<'a>,
) -> Term<'a> {
    let result = (|| -> Result<_, ProcsError> {
        let b = snapshot_ref(before, "before")?;
        let a = snapshot_ref(after, "after")?;
        let node = node_name(node)?;
        let interval_ms = interval_ms
            .decode::<u64>()
            .map_err(|_| ProcsError::argument("interval_ms", "expected a positive integer"))?;
        let opts = summary_options(opts)?;
        let window = if std::ptr::eq(&*a, &*b) {
            let s = a.0.read();
            Window::of(&s.snap, &s.snap, &node, interval_ms, &opts, &mut |w| {
                pid_text(env, w)
            })?
        } else {
            let (bs, as_) = (b.0.read(), a.0.read());
            Window::of(&bs.snap, &as_.snap, &node, interval_ms, &opts, &mut |w| {
                pid_text(env, w)
            })?
        };
        Ok(window.to_bytes())
    })();
    match result {
        Ok(bytes) => ok(env, binary(env, &bytes)),
        Err(e) => error(env, e),
    }
}

/// `procs_window_details/2`: the window binary with the identity of its
/// top rows taken from the snapshot `details` (by pid; see
/// `Window::with_details`): `{:ok, binary}` or `{:error, {code, detail}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_window_details<'a>(env: Env<'a>, window: Term<'a>, details: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ProcsError> {
        let bin = window
            .decode::<Binary>()
            .map_err(|_| ProcsError::InvalidWindow {
                message: "not a binary".into(),
            })?;
        let mut w = Window::from_bytes(bin.as_slice())?;
        let res = snapshot_ref(details, "details")?;
        let state = res.0.read();
        w.with_details(&state.snap, &mut |k| pid_text(env, k));
        Ok(w.to_bytes())
    })();
    match result {
        Ok(bytes) => ok(env, binary(env, &bytes)),
        Err(e) => error(env, e),
    }
}

/// `procs_window_merge/1`: `{:ok, binary}`, `{:error, {:invalid_window,
/// detail}}`, or `{:error, {:invalid_argument, detail}}` for `[]`.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_window_merge<'a>(env: Env<'a>, list: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ProcsError> {
        let parts = binaries(list, "windows")?
            .iter()
            .map(|b| Window::from_bytes(b.as_slice()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Window::merge(&parts)?.to_bytes())
    })();
    match result {
        Ok(bytes) => ok(env, binary(env, &bytes)),
        Err(e) => error(env, e),
    }
}

/// `procs_window_to_term/1`: `{:ok, map}` or `{:error, {:invalid_window,
/// detail}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_window_to_term<'a>(env: Env<'a>, bin: Term<'a>) -> Term<'a> {
    let result = bin
        .decode::<Binary>()
        .map_err(|_| ProcsError::InvalidWindow {
            message: "not a binary".into(),
        })
        .and_then(|b| Window::from_bytes(b.as_slice()));
    let w = match result {
        Ok(w) => w,
        Err(e) => return error(env, e),
    };
    let rows = |list: &[WindowRow]| {
        list.iter()
            .map(|r| {
                proc_row(
                    env,
                    &r.process,
                    &[
                        (atoms::reductions_delta(), r.reductions_delta.encode(env)),
                        (
                            atoms::reductions_per_sec(),
                            r.reductions_per_sec.encode(env),
                        ),
                        (atoms::memory_delta(), r.memory_delta.encode(env)),
                        (
                            atoms::message_queue_len_delta(),
                            r.message_queue_len_delta.encode(env),
                        ),
                    ],
                )
            })
            .collect::<Vec<_>>()
    };
    let term = rustler::term_map!(env, {
        atoms::version() => w.version,
        atoms::nodes() => &w.nodes,
        atoms::k() => w.k,
        atoms::interval_ms() => w.interval_ms,
        atoms::before() => w.before,
        atoms::after() => w.after,
        atoms::new() => w.new,
        atoms::exited() => w.exited,
        atoms::matched() => w.matched,
        atoms::totals() => rustler::term_map!(env, {
            atoms::reductions_delta() => w.totals.reductions_delta,
            atoms::memory_delta() => w.totals.memory_delta,
        }),
        atoms::top() => rustler::term_map!(env, {
            atoms::reductions() => rows(&w.top.reductions),
            atoms::memory() => rows(&w.top.memory),
            atoms::message_queue_len() => rows(&w.top.message_queue_len),
        }),
    });
    ok(env, term)
}

// ---------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------

/// `procs_page/2`: `{:ok, rows, next}`, rows as maps in order (metric
/// descending, key ascending), `next` the `{value, key}` to pass as `after`
/// for the next page or `nil` at the end.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_page<'a>(env: Env<'a>, snapshot: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ProcsError> {
        let res = snapshot_ref(snapshot, "snapshot")?;
        let filter = filter(opts)?;
        let sort_by = match opt(opts, atoms::sort_by()) {
            None => Metric::Memory,
            Some(t) => text(t)
                .filter(|_| t.get_type() == TermType::Atom)
                .and_then(|s| Metric::parse(&s))
                .ok_or_else(|| {
                    ProcsError::option(
                        "sort_by",
                        "expected :memory, :reductions, :message_queue_len or :heap_size",
                    )
                })?,
        };
        let limit = bounded(opts, atoms::limit(), "limit", DEFAULT_LIMIT)?;
        let state = res.0.read();
        let after = match opt(opts, atoms::after()) {
            None => None,
            Some(t) => Some(cursor(t, state.snap.kind())?),
        };
        let p = page(
            &state.snap,
            &PageOptions {
                filter,
                sort_by,
                limit,
                after,
            },
        )?;
        let kind = state.snap.kind();
        let key_term = |k: u64| match kind {
            Some(KeyKind::Pid) => from_word(env, k),
            _ => k.encode(env),
        };
        let rows: Vec<Term<'a>> = p
            .rows
            .iter()
            .map(|&i| {
                let r = state.snap.row(i);
                let name = match r.registered_name {
                    Some(n) => n.encode(env),
                    None => atom::nil().encode(env),
                };
                rustler::term_map!(env, {
                    atoms::pid() => key_term(r.key),
                    atoms::memory() => r.memory,
                    atoms::reductions() => r.reductions,
                    atoms::message_queue_len() => r.message_queue_len,
                    atoms::heap_size() => r.heap_size,
                    atoms::stack_size() => r.stack_size,
                    atoms::total_heap_size() => r.total_heap_size,
                    atoms::status() => r.status,
                    atoms::current_function() => r.current_function,
                    atoms::registered_name() => name,
                    atoms::initial_call() => r.initial_call,
                    atoms::application() => r.application,
                    atoms::module() => r.module,
                    atoms::r#type() => r.proc_type.as_str(),
                })
            })
            .collect();
        let next = match p.next {
            Some((value, key)) => (value, key_term(key)).encode(env),
            None => atom::nil().encode(env),
        };
        Ok((rows, next))
    })();
    match result {
        Ok((rows, next)) => (atom::ok(), rows, next).encode(env),
        Err(e) => error(env, e),
    }
}

/// `{value, key}`: key `nil` (rows of exactly `value` next), `:max` (rows
/// below `value` next), or a key of the snapshot's kind.
fn cursor(term: Term<'_>, kind: Option<KeyKind>) -> Result<Cursor, ProcsError> {
    let bad = || {
        ProcsError::option(
            "after",
            "expected nil or {value, key} with key nil, :max, or a pid or integer of the \
             snapshot's kind",
        )
    };
    let t: [Term<'_>; 2] = tuple(term).ok_or_else(bad)?;
    let value = t[0].decode::<u64>().map_err(|_| bad())?;
    let key = match t[1].get_type() {
        TermType::Atom if is_nil(t[1]) => CursorKey::Start,
        TermType::Atom if Atom::from_term(t[1]).is_ok_and(|a| a == atoms::max()) => CursorKey::End,
        TermType::Pid if kind != Some(KeyKind::Integer) => {
            CursorKey::Key(pid_word(t[1]).ok_or_else(bad)?)
        }
        TermType::Integer if kind != Some(KeyKind::Pid) => {
            CursorKey::Key(t[1].decode::<u64>().map_err(|_| bad())?)
        }
        _ => return Err(bad()),
    };
    Ok(Cursor { value, key })
}

// ---------------------------------------------------------------------------
// Columns: one number of every process
// ---------------------------------------------------------------------------

/// `procs_column_new/0`: an empty column reference.
#[rustler::nif]
fn procs_column_new(env: Env<'_>) -> Term<'_> {
    ResourceArc::new(ColumnResource(RwLock::new(Column::new()))).encode(env)
}

/// `procs_column_push/3`: appends `pids[i]` with `values[i]` (a
/// non-negative integer; anything else, such as `:undefined`, is a process
/// that was gone and is skipped). `:ok` or `{:error, {code, detail}}`
/// (`:invalid_argument` naming `pids` or `values`, `:too_many_rows`).
#[rustler::nif]
fn procs_column_push<'a>(
    env: Env<'a>,
    column: Term<'a>,
    pids: Term<'a>,
    values: Term<'a>,
) -> Term<'a> {
    let result = (|| -> Result<(), ProcsError> {
        let res = column_ref(column)?;
        let keys = pid_words(pids, "pids")?;
        let bad = || ProcsError::argument("values", "expected a proper list");
        let mut decoded = Vec::with_capacity(keys.len());
        for t in values.into_list_iterator().map_err(|_| bad())? {
            decoded.push(t.decode::<u64>().ok());
        }
        let mut c = res.0.write();
        c.push(&keys, &decoded)
    })();
    match result {
        Ok(()) => atom::ok().encode(env),
        Err(e) => error(env, e),
    }
}

/// `procs_column_info/1`: `%{rows: n, bytes: heap_bytes}`.
#[rustler::nif]
fn procs_column_info<'a>(env: Env<'a>, column: Term<'a>) -> Term<'a> {
    match column_ref(column) {
        Ok(res) => {
            let (rows, bytes) = {
                let c = res.0.read();
                (c.len(), c.heap_bytes())
            };
            rustler::term_map!(env, { atoms::rows() => rows, atoms::bytes() => bytes })
        }
        Err(e) => error(env, e),
    }
}

/// `procs_column_page/2` with opts `%{limit:, min:, after:}` (`after` as
/// for `procs_page/2`): `{:ok, [{pid, value}], more}` best first (value
/// descending, pid ascending), `more` true when entries follow the page.
#[rustler::nif(schedule = "DirtyCpu")]
fn procs_column_page<'a>(env: Env<'a>, column: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let result = (|| -> Result<_, ProcsError> {
        let res = column_ref(column)?;
        check_map(opts)?;
        let limit = bounded(opts, atoms::limit(), "limit", DEFAULT_LIMIT)?;
        let min = opt(opts, atoms::min())
            .map(|t| {
                t.decode::<u64>()
                    .map_err(|_| ProcsError::option("min", "expected a non-negative integer"))
            })
            .transpose()?;
        let after = match opt(opts, atoms::after()) {
            None => None,
            Some(t) => Some(cursor(t, Some(KeyKind::Pid))?),
        };
        let c = res.0.read();
        c.page(limit, min, after)
    })();
    match result {
        Ok(p) => {
            let entries: Vec<Term<'a>> = p
                .entries
                .iter()
                .map(|&(value, key)| (from_word(env, key), value).encode(env))
                .collect();
            (atom::ok(), entries, p.more).encode(env)
        }
        Err(e) => error(env, e),
    }
}

// ---------------------------------------------------------------------------
// Small writers
// ---------------------------------------------------------------------------

fn ok<'a>(env: Env<'a>, value: impl Encoder) -> Term<'a> {
    (atom::ok(), value).encode(env)
}

fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut bin = NewBinary::new(env, bytes.len());
    bin.as_mut_slice().copy_from_slice(bytes);
    bin.into()
}
