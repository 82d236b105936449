//! Histogram NIFs: a resource around `cluster_scope_core::metrics::ShardedHistogram`
//! and term conversion only. Ranges, clamping, quantiles, merging and the
//! serialized form are the core's.
//!
//! Costs (2-core x86-64, 1 us..1 h at 3 figures): a record is tens of
//! nanoseconds; quantiles a few microseconds and stats tens (they walk the
//! counts); creating and merging about 100 us (mostly the OS mapping a fresh
//! 184 KiB counts array). Serializing, deserializing and merging a list of
//! serialized histograms always run on a dirty CPU scheduler (the deflate
//! encoder alone costs up to several hundred microseconds, and a serialized
//! histogram's configuration is only known once it is read). So do batch
//! records above 64 KiB (`ClusterScope.Metrics.Histogram` picks the `_dirty`
//! variant by size).
//!
//! Calls whose cost grows with the counts array (create, quantiles, stats,
//! reset, merge) answer `:use_dirty` on a normal scheduler when that array is
//! over [`DIRTY_ABOVE_BYTES`] (a histogram of 5 significant figures can have
//! 16 MiB of counts: milliseconds to walk), and `ClusterScope.Metrics.Histogram`
//! then calls their `_dirty` twin: no call on a normal scheduler walks more
//! than 1 MiB.

use cluster_scope_core::metrics::{
    default_shards, Format, Histogram, HistogramConfig, ShardedHistogram,
};
use cluster_scope_core::ErrorCode;
use rustler::types::atom;
use rustler::{Binary, Encoder, Env, NewBinary, ResourceArc, Term};

use crate::error::{arg, error, Error};

mod atoms {
    rustler::atoms! {
        use_dirty,
        count,
        min,
        max,
        mean,
        stdev,
        saturated,
        lowest,
        highest,
        significant_figures,
    }
}

/// Histograms whose counts array is larger than this are created, read,
/// reset and merged on dirty CPU schedulers only (see the module doc).
pub const DIRTY_ABOVE_BYTES: usize = 1024 * 1024;

/// The histogram behind an Elixir reference, and whether it is large (over
/// [`DIRTY_ABOVE_BYTES`] of counts). Freed when the last reference to it is
/// garbage collected.
pub struct HistogramResource {
    hist: ShardedHistogram,
    large: bool,
}

#[rustler::resource_impl]
impl rustler::Resource for HistogramResource {}

fn resource(hist: ShardedHistogram) -> ResourceArc<HistogramResource> {
    let large = is_large(hist.config());
    ResourceArc::new(HistogramResource { hist, large })
}

fn is_large(config: HistogramConfig) -> bool {
    config
        .counts_bytes()
        .map_or(true, |bytes| bytes > DIRTY_ABOVE_BYTES)
}

/// What a normal-scheduler NIF answers for a large histogram.
fn use_dirty(env: Env<'_>) -> Term<'_> {
    atoms::use_dirty().encode(env)
}

fn from_histogram(h: Histogram) -> ResourceArc<HistogramResource> {
    resource(ShardedHistogram::from_histogram(h, default_shards()))
}

/// Runs `f` on the histogram behind `term`, or answers `{:error,
/// {:invalid_value, "not a histogram reference"}}` when `term` is not one (a
/// plain reference from `make_ref/0`, say) instead of raising. The resource
/// is borrowed for the call, not reference-counted: schedulers recording into
/// one histogram share no cache line but their own buffers'.
fn with_hist<'a>(
    env: Env<'a>,
    term: Term<'a>,
    f: impl FnOnce(&HistogramResource) -> Term<'a>,
) -> Term<'a> {
    match term.decode::<&HistogramResource>() {
        Ok(h) => f(h),
        Err(_) => error(
            env,
            Error::new(ErrorCode::InvalidValue, "not a histogram reference"),
        ),
    }
}

/// `hist_new/3`: `{:ok, ref}`, `{:error, {:invalid_config, detail}}`, or
/// `:use_dirty` for a configuration over [`DIRTY_ABOVE_BYTES`] of counts.
#[rustler::nif]
fn hist_new<'a>(
    env: Env<'a>,
    lowest: Term<'a>,
    highest: Term<'a>,
    significant_figures: Term<'a>,
) -> Term<'a> {
    new(env, lowest, highest, significant_figures, false)
}

/// `hist_new_dirty/3`: `hist_new/3` on a dirty CPU scheduler, any size.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_new_dirty<'a>(
    env: Env<'a>,
    lowest: Term<'a>,
    highest: Term<'a>,
    significant_figures: Term<'a>,
) -> Term<'a> {
    new(env, lowest, highest, significant_figures, true)
}

fn new<'a>(
    env: Env<'a>,
    lowest: Term<'a>,
    highest: Term<'a>,
    figures: Term<'a>,
    dirty: bool,
) -> Term<'a> {
    let config = (|| -> Result<HistogramConfig, Error> {
        let integer = "an integer from 1 to 2^64 - 1";
        let lowest = arg(lowest, ErrorCode::InvalidConfig, "lowest", integer)?;
        let highest = arg(highest, ErrorCode::InvalidConfig, "highest", integer)?;
        let figures = arg(
            figures,
            ErrorCode::InvalidConfig,
            "significant_figures",
            "an integer from 1 to 5",
        )?;
        Ok(HistogramConfig::new(lowest, highest, figures)?)
    })();
    match config {
        Ok(config) if !dirty && is_large(config) => use_dirty(env),
        Ok(config) => ok(env, resource(ShardedHistogram::new(config))),
        Err(e) => error(env, e),
    }
}

/// A value or count to record: an integer from 0 to 2^64 - 1.
fn value(term: Term<'_>, field: &str) -> Result<u64, Error> {
    arg(
        term,
        ErrorCode::InvalidValue,
        field,
        "an integer from 0 to 2^64 - 1",
    )
}

/// `hist_record/2`: `:ok`. The hot path: one uncontended lock, an append.
#[rustler::nif]
fn hist_record<'a>(env: Env<'a>, h: Term<'a>, v: Term<'a>) -> Term<'a> {
    with_hist(env, h, |h| match value(v, "value") {
        Ok(v) => {
            h.hist.record(v);
            atom::ok().encode(env)
        }
        Err(e) => error(env, e),
    })
}

/// `hist_record_n/3`: `:ok`.
#[rustler::nif]
fn hist_record_n<'a>(env: Env<'a>, h: Term<'a>, v: Term<'a>, n: Term<'a>) -> Term<'a> {
    with_hist(env, h, |h| {
        match value(v, "value").and_then(|v| Ok((v, value(n, "n")?))) {
            Ok((v, n)) => {
                h.hist.record_n(v, n);
                atom::ok().encode(env)
            }
            Err(e) => error(env, e),
        }
    })
}

/// `hist_record_batch/2`: `{:ok, count}` or `{:error, {:invalid_batch, _}}`.
/// For batches of at most 64 KiB (8192 values, well under 100 us).
#[rustler::nif]
fn hist_record_batch<'a>(env: Env<'a>, h: Term<'a>, batch: Term<'a>) -> Term<'a> {
    record_batch(env, h, batch)
}

/// `hist_record_batch_dirty/2`: `hist_record_batch/2` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_record_batch_dirty<'a>(env: Env<'a>, h: Term<'a>, batch: Term<'a>) -> Term<'a> {
    record_batch(env, h, batch)
}

fn record_batch<'a>(env: Env<'a>, h: Term<'a>, batch: Term<'a>) -> Term<'a> {
    with_hist(env, h, |h| {
        let recorded = arg::<Binary>(
            batch,
            ErrorCode::InvalidBatch,
            "batch",
            "a binary of little-endian unsigned 64-bit integers",
        )
        .and_then(|batch| Ok(h.hist.record_le_bytes(&batch)?));
        match recorded {
            Ok(n) => ok(env, n),
            Err(e) => error(env, e),
        }
    })
}

/// `hist_quantiles/2`: `{:ok, [value]}` in the order of the quantiles given
/// (or `:use_dirty`).
#[rustler::nif]
fn hist_quantiles<'a>(env: Env<'a>, h: Term<'a>, quantiles: Term<'a>) -> Term<'a> {
    quantiles_of(env, h, quantiles, false)
}

/// `hist_quantiles_dirty/2`: `hist_quantiles/2` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_quantiles_dirty<'a>(env: Env<'a>, h: Term<'a>, quantiles: Term<'a>) -> Term<'a> {
    quantiles_of(env, h, quantiles, true)
}

fn quantiles_of<'a>(env: Env<'a>, h: Term<'a>, quantiles: Term<'a>, dirty: bool) -> Term<'a> {
    with_hist(env, h, |h| {
        if h.large && !dirty {
            return use_dirty(env);
        }
        let values = arg::<Vec<f64>>(
            quantiles,
            ErrorCode::InvalidQuantile,
            "quantiles",
            "a list of floats between 0.0 and 1.0",
        )
        .and_then(|quantiles| Ok(h.hist.quantiles(&quantiles)?));
        match values {
            Ok(values) => ok(env, values),
            Err(e) => error(env, e),
        }
    })
}

/// `hist_stats/1`: a map of count, min, max, mean, stdev, saturated and the
/// configuration (lowest, highest, significant_figures), or `:use_dirty`.
#[rustler::nif]
fn hist_stats<'a>(env: Env<'a>, h: Term<'a>) -> Term<'a> {
    stats(env, h, false)
}

/// `hist_stats_dirty/1`: `hist_stats/1` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_stats_dirty<'a>(env: Env<'a>, h: Term<'a>) -> Term<'a> {
    stats(env, h, true)
}

fn stats<'a>(env: Env<'a>, h: Term<'a>, dirty: bool) -> Term<'a> {
    with_hist(env, h, |h| {
        if h.large && !dirty {
            return use_dirty(env);
        }
        let s = h.hist.stats();
        let c = h.hist.config();
        rustler::term_map!(env, {
            atoms::count() => s.count,
            atoms::min() => s.min,
            atoms::max() => s.max,
            atoms::mean() => s.mean,
            atoms::stdev() => s.stdev,
            atoms::saturated() => s.saturated,
            atoms::lowest() => c.lowest(),
            atoms::highest() => c.highest(),
            atoms::significant_figures() => c.significant_figures(),
        })
        .encode(env)
    })
}

/// `hist_reset/1`: `:ok` (or `:use_dirty`).
#[rustler::nif]
fn hist_reset<'a>(env: Env<'a>, h: Term<'a>) -> Term<'a> {
    reset(env, h, false)
}

/// `hist_reset_dirty/1`: `hist_reset/1` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_reset_dirty<'a>(env: Env<'a>, h: Term<'a>) -> Term<'a> {
    reset(env, h, true)
}

fn reset<'a>(env: Env<'a>, h: Term<'a>, dirty: bool) -> Term<'a> {
    with_hist(env, h, |h| {
        if h.large && !dirty {
            return use_dirty(env);
        }
        h.hist.reset();
        atom::ok().encode(env)
    })
}

/// `hist_merge/2`: adds `from`'s values to `into`; `:ok` (or `:use_dirty`
/// when either is large).
#[rustler::nif]
fn hist_merge<'a>(env: Env<'a>, into: Term<'a>, from: Term<'a>) -> Term<'a> {
    merge(env, into, from, false)
}

/// `hist_merge_dirty/2`: `hist_merge/2` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_merge_dirty<'a>(env: Env<'a>, into: Term<'a>, from: Term<'a>) -> Term<'a> {
    merge(env, into, from, true)
}

fn merge<'a>(env: Env<'a>, into: Term<'a>, from: Term<'a>, dirty: bool) -> Term<'a> {
    with_hist(env, into, |into| {
        with_hist(env, from, |from| {
            if (into.large || from.large) && !dirty {
                return use_dirty(env);
            }
            into.hist.merge(&from.hist);
            atom::ok().encode(env)
        })
    })
}

/// `hist_serialize/1`: the V2 compressed (deflate) form, a binary.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_serialize<'a>(env: Env<'a>, h: Term<'a>) -> Term<'a> {
    serialize(env, h, Format::Compressed)
}

/// `hist_serialize_uncompressed/1`: the V2 uncompressed form, a binary.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_serialize_uncompressed<'a>(env: Env<'a>, h: Term<'a>) -> Term<'a> {
    serialize(env, h, Format::Uncompressed)
}

fn serialize<'a>(env: Env<'a>, h: Term<'a>, format: Format) -> Term<'a> {
    with_hist(env, h, |h| match h.hist.serialize(format) {
        Ok(bytes) => binary(env, &bytes),
        Err(e) => error(env, e),
    })
}

/// `hist_deserialize/1`: `{:ok, ref}`. Dirty: the configuration, and so
/// the size of the counts array to allocate, is only known once read.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_deserialize<'a>(env: Env<'a>, bytes: Term<'a>) -> Term<'a> {
    let read = arg::<Binary>(
        bytes,
        ErrorCode::InvalidSerialized,
        "serialized",
        "a binary (a serialized histogram)",
    )
    .and_then(|bytes| Ok(Histogram::deserialize(&bytes)?));
    match read {
        Ok(h) => ok(env, from_histogram(h)),
        Err(e) => error(env, e),
    }
}

/// `hist_merge_serialized/1`: a list of serialized histograms merged into a
/// new one, `{:ok, ref}`. Dirty: its cost grows with the list.
#[rustler::nif(schedule = "DirtyCpu")]
fn hist_merge_serialized<'a>(env: Env<'a>, inputs: Term<'a>) -> Term<'a> {
    let merged = arg::<Vec<Binary>>(
        inputs,
        ErrorCode::InvalidSerialized,
        "serialized",
        "a list of binaries (serialized histograms)",
    )
    .and_then(|inputs| {
        let slices: Vec<&[u8]> = inputs.iter().map(|b| b.as_slice()).collect();
        Ok(Histogram::merge_serialized(&slices)?)
    });
    match merged {
        Ok(h) => ok(env, from_histogram(h)),
        Err(e) => error(env, e),
    }
}

fn ok<'a>(env: Env<'a>, value: impl Encoder) -> Term<'a> {
    (atom::ok(), value).encode(env)
}

fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut bin = NewBinary::new(env, bytes.len());
    bin.as_mut_slice().copy_from_slice(bytes);
    bin.into()
}
