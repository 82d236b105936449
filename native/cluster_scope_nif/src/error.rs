//! The one error of every NIF, and its one encoder.
//!
//! Every NIF answers bad input (and every other failure it reports rather
//! than raises) as `{:error, {code, detail}}`:
//!
//! * `code` is an atom named by `cluster_scope_core::ErrorCode`, stable and
//!   snake_case, taken from the fixed list below (created when the library
//!   loads): nothing from the input ever becomes an atom;
//! * `detail` is a binary for people, naming the field or the cause
//!   (`"reach[2][5]: expected :unknown, :reachable or :unreachable"`).
//!
//! The module errors of the core (`JsonError`, `MetricsError`, ...) convert
//! into a `CoreError`, which [`Error`] wraps; the few errors of this crate's
//! own (`busy`, a term that is not a histogram reference) are built with
//! [`Error::new`]. Every NIF answers through [`error`] (an `Error` in
//! rustler's `Err` encoding would give the same term).
//!
//! NIFs take their arguments as terms and read them with [`arg`] (or their
//! own readers), so a wrongly typed argument is an error in this shape too,
//! never a `badarg` exception from rustler's decoding.
//!
//! Not errors, and so not in this shape: `:use_dirty` (metrics: call the
//! dirty twin) and the decisions of the throttle (`:drop`, `:limit`, ...).

use cluster_scope_core::{CoreError, ErrorCode};
use rustler::types::atom;
use rustler::{Atom, Decoder, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        invalid_argument,
        invalid_option,
        invalid_config,
        invalid_value,
        invalid_limits,
        too_large,
        invalid_utf8,
        syntax,
        non_finite_float,
        unsupported,
        too_deep,
        integer_out_of_range,
        invalid_quantile,
        invalid_batch,
        invalid_serialized,
        empty,
        invalid_observation,
        invalid_row,
        invalid_summary,
        invalid_window,
        too_many_peers,
        too_many_rows,
        busy,
        serialize_failed,
    }
}

/// The atom of a code. Exhaustive: a new code does not build until it has
/// its atom in the list above.
fn code_atom(code: ErrorCode) -> Atom {
    match code {
        ErrorCode::InvalidArgument => atoms::invalid_argument(),
        ErrorCode::InvalidOption => atoms::invalid_option(),
        ErrorCode::InvalidConfig => atoms::invalid_config(),
        ErrorCode::InvalidValue => atoms::invalid_value(),
        ErrorCode::InvalidLimits => atoms::invalid_limits(),
        ErrorCode::TooLarge => atoms::too_large(),
        ErrorCode::InvalidUtf8 => atoms::invalid_utf8(),
        ErrorCode::Syntax => atoms::syntax(),
        ErrorCode::NonFiniteFloat => atoms::non_finite_float(),
        ErrorCode::Unsupported => atoms::unsupported(),
        ErrorCode::TooDeep => atoms::too_deep(),
        ErrorCode::IntegerOutOfRange => atoms::integer_out_of_range(),
        ErrorCode::InvalidQuantile => atoms::invalid_quantile(),
        ErrorCode::InvalidBatch => atoms::invalid_batch(),
        ErrorCode::InvalidSerialized => atoms::invalid_serialized(),
        ErrorCode::Empty => atoms::empty(),
        ErrorCode::InvalidObservation => atoms::invalid_observation(),
        ErrorCode::InvalidRow => atoms::invalid_row(),
        ErrorCode::InvalidSummary => atoms::invalid_summary(),
        ErrorCode::InvalidWindow => atoms::invalid_window(),
        ErrorCode::TooManyPeers => atoms::too_many_peers(),
        ErrorCode::TooManyRows => atoms::too_many_rows(),
        ErrorCode::Busy => atoms::busy(),
        ErrorCode::SerializeFailed => atoms::serialize_failed(),
    }
}

/// An error as a NIF answers it. Its [`Encoder`] writes the reason,
/// `{code, detail}`; [`error`] (or rustler's `Err` encoding) puts it in
/// `{:error, _}`.
pub struct Error(CoreError);

impl Error {
    /// An error of this crate's own, not of a core call.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Error(CoreError::new(code, detail))
    }
}

impl<E: Into<CoreError>> From<E> for Error {
    fn from(e: E) -> Self {
        Error(e.into())
    }
}

impl Encoder for Error {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        (code_atom(self.0.code()), self.0.detail()).encode(env)
    }
}

/// `{:error, {code, detail}}`: how every NIF answers an error.
pub fn error<'a>(env: Env<'a>, e: impl Into<Error>) -> Term<'a> {
    (atom::error(), e.into()).encode(env)
}

/// Argument `field` read as a `T`, or the error `{code, "field: expected
/// <expected>"}`.
pub fn arg<'a, T: Decoder<'a>>(
    term: Term<'a>,
    code: ErrorCode,
    field: &str,
    expected: &str,
) -> Result<T, Error> {
    term.decode()
        .map_err(|_| Error::new(code, format!("{field}: expected {expected}")))
}

/// `error_codes/0`: every code a NIF error can carry, as atoms, in the
/// core's order. Constants only, far below 1 ms. `ClusterScope.Error`'s
/// tests check that it classifies every one of them.
#[rustler::nif]
fn error_codes() -> Vec<Atom> {
    ErrorCode::ALL.iter().map(|&c| code_atom(c)).collect()
}
