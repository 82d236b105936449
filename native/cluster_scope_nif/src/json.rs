//! JSON NIFs: conversion between terms and `cluster_scope_core::json::Value`
//! only. Parsing, encoding, limits and error messages are the core's.
//!
//! Each NIF exists twice: on the normal scheduler for small inputs and on a
//! dirty CPU scheduler for large ones; `ClusterScope.JSON` picks one (dirty
//! over 16 KiB of JSON, read or estimated: its `@dirty_threshold`). Every
//! walk here is bounded by `max_depth` (at most
//! `cluster_scope_core::json::MAX_DEPTH_CEILING`), so recursion stays shallow.

use std::collections::HashSet;

use cluster_scope_core::json::{self, JsonError, Limits, Value};
use cluster_scope_core::ErrorCode;
use rustler::types::atom;
use rustler::{Binary, Encoder, Env, MapIterator, NewBinary, Term, TermType};

use crate::error::{arg, error, Error};

/// `json_encode/3`: a term to `{:ok, json_binary}` or `{:error, {code, detail}}`.
#[rustler::nif]
fn json_encode<'a>(
    env: Env<'a>,
    term: Term<'a>,
    max_bytes: Term<'a>,
    max_depth: Term<'a>,
) -> Term<'a> {
    encode(env, term, max_bytes, max_depth)
}

/// `json_encode_dirty/3`: `json_encode/3` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn json_encode_dirty<'a>(
    env: Env<'a>,
    term: Term<'a>,
    max_bytes: Term<'a>,
    max_depth: Term<'a>,
) -> Term<'a> {
    encode(env, term, max_bytes, max_depth)
}

/// `json_decode/3`: a JSON binary to `{:ok, term}` or `{:error, {code, detail}}`.
#[rustler::nif]
fn json_decode<'a>(
    env: Env<'a>,
    input: Term<'a>,
    max_bytes: Term<'a>,
    max_depth: Term<'a>,
) -> Term<'a> {
    decode(env, input, max_bytes, max_depth)
}

/// `json_decode_dirty/3`: `json_decode/3` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn json_decode_dirty<'a>(
    env: Env<'a>,
    input: Term<'a>,
    max_bytes: Term<'a>,
    max_depth: Term<'a>,
) -> Term<'a> {
    decode(env, input, max_bytes, max_depth)
}

/// The limits, read and checked: `{:invalid_limits, detail}` otherwise.
fn limits(max_bytes: Term<'_>, max_depth: Term<'_>) -> Result<Limits, Error> {
    let integer = "a non-negative integer";
    let max_bytes = arg(max_bytes, ErrorCode::InvalidLimits, "max_bytes", integer)?;
    let max_depth = arg(max_depth, ErrorCode::InvalidLimits, "max_depth", integer)?;
    Ok(Limits::new(max_bytes, max_depth)?)
}

fn encode<'a>(env: Env<'a>, term: Term<'a>, max_bytes: Term<'a>, max_depth: Term<'a>) -> Term<'a> {
    let encoded = limits(max_bytes, max_depth).and_then(|limits| {
        let mut reader = TermReader {
            limits,
            min_output: 0,
        };
        let value = reader.value(term, 0)?;
        Ok(json::encode(&value, &limits)?)
    });
    match encoded {
        Ok(bytes) => (atom::ok(), binary(env, &bytes)).encode(env),
        Err(e) => error(env, e),
    }
}

fn decode<'a>(env: Env<'a>, input: Term<'a>, max_bytes: Term<'a>, max_depth: Term<'a>) -> Term<'a> {
    let decoded = limits(max_bytes, max_depth).and_then(|limits| {
        let input = arg::<Binary>(
            input,
            ErrorCode::InvalidArgument,
            "input",
            "a binary of JSON text",
        )?;
        Ok(json::decode(&input, &limits)?)
    });
    match decoded {
        Ok(value) => (atom::ok(), value_to_term(env, value)).encode(env),
        Err(e) => error(env, e),
    }
}

fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut bin = NewBinary::new(env, bytes.len());
    bin.as_mut_slice().copy_from_slice(bytes);
    bin.into()
}

/// Builds the term of a decoded value. Object keys become binaries, never
/// atoms. Recursion is bounded by the depth limit `json::decode` enforced.
fn value_to_term<'a>(env: Env<'a>, value: Value) -> Term<'a> {
    match value {
        Value::Null => atom::nil().encode(env),
        Value::Bool(b) => b.encode(env),
        Value::Int(n) => n.encode(env),
        Value::UInt(n) => n.encode(env),
        Value::Float(x) => x.encode(env),
        Value::String(s) => binary(env, s.as_bytes()),
        Value::Array(items) => {
            let terms: Vec<Term<'a>> = items.into_iter().map(|v| value_to_term(env, v)).collect();
            terms.encode(env)
        }
        Value::Object(entries) => {
            let (keys, values): (Vec<Term<'a>>, Vec<Term<'a>>) = entries
                .into_iter()
                .map(|(k, v)| (binary(env, k.as_bytes()), value_to_term(env, v)))
                .unzip();
            // Decoding leaves no duplicate keys, so this cannot fail; were it
            // to, putting the pairs one by one keeps the last value.
            Term::map_from_term_arrays(env, &keys, &values).unwrap_or_else(|_| {
                keys.iter()
                    .zip(&values)
                    .fold(Term::map_new(env), |map, (k, v)| {
                        map.map_put(*k, *v).unwrap_or(map)
                    })
            })
        }
    }
}

/// Reads a term into a `Value`, enforcing the depth limit as it descends and
/// stopping as soon as the JSON text would certainly pass `max_bytes`
/// (`min_output` is a lower bound of its size), so a huge term is refused
/// before it is copied.
struct TermReader {
    limits: Limits,
    min_output: usize,
}

impl TermReader {
    fn grow(&mut self, bytes: usize) -> Result<(), JsonError> {
        self.min_output = self.min_output.saturating_add(bytes);
        if self.min_output > self.limits.max_bytes {
            return Err(JsonError::TooLarge {
                limit: self.limits.max_bytes,
                actual: self.min_output,
                at_least: true,
            });
        }
        Ok(())
    }

    /// The depth of the children of a list or map at `depth`.
    fn enter(&self, depth: usize) -> Result<usize, JsonError> {
        if depth >= self.limits.max_depth {
            return Err(JsonError::too_deep(self.limits.max_depth));
        }
        Ok(depth + 1)
    }

    fn value(&mut self, term: Term<'_>, depth: usize) -> Result<Value, JsonError> {
        match term.get_type() {
            TermType::Atom => self.atom(term),
            TermType::Binary => self.string(term).map(Value::String),
            TermType::Integer => {
                self.grow(1)?;
                if let Ok(n) = term.decode::<i64>() {
                    Ok(Value::Int(n))
                } else if let Ok(n) = term.decode::<u64>() {
                    Ok(Value::UInt(n))
                } else {
                    Err(JsonError::integer_out_of_range())
                }
            }
            TermType::Float => {
                self.grow(3)?;
                term.decode::<f64>()
                    .map(Value::Float)
                    .map_err(|_| JsonError::unsupported("a float"))
            }
            TermType::List => self.list(term, depth),
            TermType::Map => self.map(term, depth),
            other => Err(JsonError::unsupported(type_name(other))),
        }
    }

    fn atom(&mut self, term: Term<'_>) -> Result<Value, JsonError> {
        if term == atom::nil().to_term(term.get_env()) {
            self.grow(4)?;
            Ok(Value::Null)
        } else if term == atom::true_().to_term(term.get_env()) {
            self.grow(4)?;
            Ok(Value::Bool(true))
        } else if term == atom::false_().to_term(term.get_env()) {
            self.grow(5)?;
            Ok(Value::Bool(false))
        } else {
            let text = atom_text(term)?;
            self.grow(text.len() + 2)?;
            Ok(Value::String(text))
        }
    }

    /// A binary's text; its size is counted before it is copied.
    fn string(&mut self, term: Term<'_>) -> Result<String, JsonError> {
        let bin = term.decode::<Binary>().map_err(|_| {
            JsonError::unsupported("a bitstring that is not a whole number of bytes")
        })?;
        self.grow(bin.len() + 2)?;
        std::str::from_utf8(bin.as_slice())
            .map(str::to_owned)
            .map_err(|e| JsonError::invalid_utf8_string(e.valid_up_to()))
    }

    fn list(&mut self, term: Term<'_>, depth: usize) -> Result<Value, JsonError> {
        let depth = self.enter(depth)?;
        self.grow(2)?;
        let mut items = Vec::new();
        let mut rest = term;
        while !rest.is_empty_list() {
            let Ok((head, tail)) = rest.list_get_cell() else {
                return Err(JsonError::unsupported("an improper list"));
            };
            let i = items.len();
            if i > 0 {
                self.grow(1)?;
            }
            items.push(self.value(head, depth).map_err(|e| e.within_index(i))?);
            rest = tail;
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, term: Term<'_>, depth: usize) -> Result<Value, JsonError> {
        let depth = self.enter(depth)?;
        self.grow(2)?;
        let iter = MapIterator::new(term).ok_or_else(|| JsonError::unsupported("a map"))?;
        let (mut atom_keys, mut binary_keys) = (false, false);
        let mut entries = Vec::new();
        for (key_term, value_term) in iter {
            let key = match key_term.get_type() {
                TermType::Binary => {
                    binary_keys = true;
                    self.string(key_term)
                        .map_err(|e| match key_term.decode::<Binary>() {
                            Ok(bin) => e.within_key(&String::from_utf8_lossy(&bin)),
                            Err(_) => e,
                        })?
                }
                TermType::Atom => {
                    atom_keys = true;
                    let text = atom_text(key_term)?;
                    self.grow(text.len() + 2)?;
                    text
                }
                other => {
                    return Err(JsonError::unsupported(format!(
                        "a map key that is {} (keys must be binaries or atoms)",
                        type_name(other)
                    )))
                }
            };
            // `:` and, after the first entry, `,`.
            self.grow(if entries.is_empty() { 1 } else { 2 })?;
            let value = self
                .value(value_term, depth)
                .map_err(|e| e.within_key(&key))?;
            entries.push((key, value));
        }
        // Only a map with both atom and binary keys can give two entries the
        // same JSON key (`%{:a => 1, "a" => 2}`): refuse rather than write it
        // twice.
        if atom_keys && binary_keys {
            let mut seen = HashSet::with_capacity(entries.len());
            if let Some((key, _)) = entries.iter().find(|(k, _)| !seen.insert(k.as_str())) {
                return Err(JsonError::unsupported(format!(
                    "a map with both an atom and a binary key {key:?}"
                )));
            }
        }
        Ok(Value::Object(entries))
    }
}

/// The text of an atom. rustler's reader (NIF 2.15) only knows Latin-1
/// atoms; any other atom is read from its external term format, where OTP
/// writes its name in UTF-8.
fn atom_text(term: Term<'_>) -> Result<String, JsonError> {
    if let Ok(text) = term.atom_to_string() {
        return Ok(text);
    }
    let external = term.to_binary();
    let (tag, rest) = match external.as_slice() {
        [131, tag, rest @ ..] => (*tag, rest),
        _ => return Err(JsonError::unsupported("an atom whose name cannot be read")),
    };
    let name = match (tag, rest) {
        // SMALL_ATOM_UTF8_EXT / SMALL_ATOM_EXT: one length byte.
        (119 | 115, [len, name @ ..]) if name.len() == usize::from(*len) => name,
        // ATOM_UTF8_EXT / ATOM_EXT: two length bytes, big-endian.
        (118 | 100, [hi, lo, name @ ..])
            if name.len() == usize::from(u16::from_be_bytes([*hi, *lo])) =>
        {
            name
        }
        _ => return Err(JsonError::unsupported("an atom whose name cannot be read")),
    };
    match tag {
        118 | 119 => String::from_utf8(name.to_vec())
            .map_err(|_| JsonError::unsupported("an atom whose name cannot be read")),
        _ => Ok(name.iter().map(|&b| char::from(b)).collect()),
    }
}

fn type_name(t: TermType) -> &'static str {
    match t {
        TermType::Atom => "an atom",
        TermType::Binary => "a binary",
        TermType::Fun => "a function",
        TermType::List => "a list",
        TermType::Map => "a map",
        TermType::Integer => "an integer",
        TermType::Float => "a float",
        TermType::Pid => "a pid",
        TermType::Port => "a port",
        TermType::Ref => "a reference",
        TermType::Tuple => "a tuple",
        TermType::Unknown => "a term of unknown type",
    }
}
