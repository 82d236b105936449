//! JSON codec with hard limits, for text that crosses the BEAM boundary.
//!
//! [`decode`] turns JSON text into a [`Value`]; [`encode`] turns a [`Value`]
//! into compact JSON text. Both enforce [`Limits`] while they work, so hostile
//! or accidental input can cost at most `max_bytes` of text and `max_depth`
//! levels of recursion: deep input is refused before it can overflow a
//! scheduler's stack, and a large value is refused as soon as its output
//! passes the limit instead of after building the whole text.
//!
//! Parsing is serde_json's (correctly rounded floats, strict RFC 8259: no
//! comments, no trailing commas, no NaN literals, nothing after the value but
//! whitespace). This module adds the depth limit, the integer rules and
//! structured errors ([`JsonError`]) that say what went wrong and where.
//!
//! # Numbers
//!
//! * An integer literal (no fraction, no exponent) decodes to [`Value::Int`]
//!   when it fits an `i64`, else to [`Value::UInt`] when it fits a `u64`;
//!   anything else is [`JsonError::IntegerOutOfRange`], never a silently
//!   rounded float. So `UInt` only ever holds values above `i64::MAX` after
//!   decoding; a smaller `UInt` encodes fine but decodes back as `Int`.
//! * A literal with a fraction or an exponent decodes to [`Value::Float`]
//!   (`1.0` and `1e2` are floats). One beyond the `f64` range (`1e400`) is
//!   [`JsonError::NonFiniteFloat`]; one too small underflows to `0.0`. `-0`
//!   decodes as the float `-0.0` (serde_json's reading of it).
//! * Floats encode in their shortest form that reads back as the same `f64`
//!   (`1.0`, `0.1`, `1e300`), so encode-then-decode gives the same value.
//!   NaN and infinities have no JSON form: [`JsonError::NonFiniteFloat`].

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::error::ErrorCode;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::ser::{CompactFormatter, Formatter};

/// A JSON value.
///
/// Objects are a list of `(key, value)` pairs that keeps the order of the
/// text (or of the caller). Decoding never produces duplicate keys: when the
/// text repeats a key, the last value wins and the key stays where it first
/// appeared (what JavaScript's `JSON.parse` does). Encoding writes the pairs
/// as given, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// An integer above `i64::MAX` (decoding only produces it there).
    UInt(u64),
    /// A finite float (encoding refuses NaN and infinities).
    Float(f64),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Default for [`Limits::max_bytes`]: 8 MiB of JSON text.
pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Default for [`Limits::max_depth`]: 64 nested arrays or objects.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// The highest [`Limits::max_depth`] accepted. serde_json refuses nesting of
/// 128 levels on its own; staying well below it means our own, clearer check
/// always fires first, and it bounds the recursion of every walk over a
/// value (decode, encode, drop, and the NIF's term conversions) to a few tens
/// of KiB of stack, far under a dirty scheduler's.
pub const MAX_DEPTH_CEILING: usize = 100;

/// Bounds on one encode or decode.
///
/// Depth counts nested arrays and objects: a scalar has depth 0, `[]` and
/// `{}` depth 1, `[[1]]` depth 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON text accepted by [`decode`] or produced by [`encode`], in
    /// bytes. At least 1.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects, at most [`MAX_DEPTH_CEILING`].
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

impl Limits {
    /// Validated limits.
    pub fn new(max_bytes: usize, max_depth: usize) -> Result<Self, JsonError> {
        let limits = Limits {
            max_bytes,
            max_depth,
        };
        limits.validate()?;
        Ok(limits)
    }

    /// Checks that `max_bytes` is at least 1 and `max_depth` at most
    /// [`MAX_DEPTH_CEILING`]. [`encode`] and [`decode`] call it first.
    pub fn validate(&self) -> Result<(), JsonError> {
        if self.max_bytes == 0 {
            return Err(JsonError::InvalidLimits {
                message: "max_bytes must be at least 1".into(),
            });
        }
        if self.max_depth > MAX_DEPTH_CEILING {
            return Err(JsonError::InvalidLimits {
                message: format!(
                    "max_depth is {}, over the ceiling of {MAX_DEPTH_CEILING}",
                    self.max_depth
                ),
            });
        }
        Ok(())
    }
}

/// One step of a [`Path`]: an array index or an object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Index(usize),
    /// The key, shortened to [`PATH_KEY_MAX_BYTES`] (and marked with `…`)
    /// when it is longer: a path is for messages.
    Key(String),
}

/// Longest key kept whole in a [`Path`].
pub const PATH_KEY_MAX_BYTES: usize = 64;

/// Where a value sits inside the value being encoded, from its root:
/// displayed as `$`, `$[2]`, `$.name[0]`, `$["a key"]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path {
    segments: Vec<PathSegment>,
}

impl Path {
    /// The root of the value: `$`.
    pub fn root() -> Self {
        Path::default()
    }

    /// The steps from the root, outermost first.
    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }

    /// Errors are built at the failing value and learn their path while they
    /// travel back to the root, so steps are added outermost-last. Depth is
    /// bounded by [`MAX_DEPTH_CEILING`], so inserting at the front is cheap.
    fn prepend(&mut self, segment: PathSegment) {
        self.segments.insert(0, segment);
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for segment in &self.segments {
            match segment {
                PathSegment::Index(i) => write!(f, "[{i}]")?,
                PathSegment::Key(k) if is_identifier(k) => write!(f, ".{k}")?,
                PathSegment::Key(k) => {
                    let mut quoted = Vec::with_capacity(k.len() + 2);
                    write_escaped(&mut quoted, k);
                    write!(f, "[{}]", String::from_utf8_lossy(&quoted))?;
                }
            }
        }
        Ok(())
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn shortened_key(key: &str) -> String {
    if key.len() <= PATH_KEY_MAX_BYTES {
        return key.to_owned();
    }
    let mut end = PATH_KEY_MAX_BYTES;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &key[..end])
}

/// Where an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In JSON text being decoded. Both 1-based; the column counts bytes.
    Text { line: usize, column: usize },
    /// In a value being encoded.
    Path(Path),
}

impl Location {
    /// The root of the value being encoded.
    pub fn root() -> Self {
        Location::Path(Path::root())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Text { line, column } => write!(f, "line {line} column {column}"),
            Location::Path(path) => write!(f, "{path}"),
        }
    }
}

/// Why a JSON encode or decode failed.
///
/// [`JsonError::code`] gives its stable [`ErrorCode`] and `Display` a message
/// for humans that says what went wrong and where; the two make the
/// [`CoreError`](crate::CoreError) the NIF layer answers as `{:error, {code,
/// detail}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonError {
    /// The [`Limits`] themselves are out of range.
    InvalidLimits { message: String },
    /// The JSON text is over [`Limits::max_bytes`]. When decoding, `actual` is
    /// the input's size and `at_least` is false. Encoding stops as soon as the
    /// output would pass the limit, so there `actual` is the size reached when
    /// it stopped, a lower bound of the full size, and `at_least` is true.
    TooLarge {
        limit: usize,
        actual: usize,
        at_least: bool,
    },
    /// Bytes that are not UTF-8. `offset` is the index of the first bad byte:
    /// in the JSON input when `path` is `None`, else in the string found at
    /// `path` of a value being encoded (the NIF layer reports binaries so).
    InvalidUtf8 { offset: usize, path: Option<Path> },
    /// The text is not JSON. `message` is serde_json's description.
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A float that JSON cannot hold: NaN or an infinity when encoding, a
    /// literal beyond the `f64` range (`1e400`) when decoding.
    NonFiniteFloat { at: Location },
    /// A value JSON has no form for (reported by the NIF layer: tuples, pids,
    /// non-string map keys...). `what` names it, e.g. `"a tuple"`.
    Unsupported { what: String, path: Path },
    /// Arrays and objects nested deeper than [`Limits::max_depth`].
    TooDeep { limit: usize, at: Location },
    /// An integer outside both `i64` and `u64`.
    IntegerOutOfRange { at: Location },
}

impl JsonError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            JsonError::InvalidLimits { .. } => ErrorCode::InvalidLimits,
            JsonError::TooLarge { .. } => ErrorCode::TooLarge,
            JsonError::InvalidUtf8 { .. } => ErrorCode::InvalidUtf8,
            JsonError::Syntax { .. } => ErrorCode::Syntax,
            JsonError::NonFiniteFloat { .. } => ErrorCode::NonFiniteFloat,
            JsonError::Unsupported { .. } => ErrorCode::Unsupported,
            JsonError::TooDeep { .. } => ErrorCode::TooDeep,
            JsonError::IntegerOutOfRange { .. } => ErrorCode::IntegerOutOfRange,
        }
    }

    /// [`JsonError::Unsupported`] at the root; see [`JsonError::within_index`].
    pub fn unsupported(what: impl Into<String>) -> Self {
        JsonError::Unsupported {
            what: what.into(),
            path: Path::root(),
        }
    }

    /// A string at the root of a value being encoded is not UTF-8.
    pub fn invalid_utf8_string(offset: usize) -> Self {
        JsonError::InvalidUtf8 {
            offset,
            path: Some(Path::root()),
        }
    }

    /// An integer at the root of a value being encoded is out of range.
    pub fn integer_out_of_range() -> Self {
        JsonError::IntegerOutOfRange {
            at: Location::root(),
        }
    }

    /// A container at the root of a value being encoded is one level too deep.
    pub fn too_deep(limit: usize) -> Self {
        JsonError::TooDeep {
            limit,
            at: Location::root(),
        }
    }

    /// The same error, found inside element `index` of an array: walkers call
    /// this while returning so that the error names the path to its value.
    /// Errors located in text are returned unchanged.
    pub fn within_index(self, index: usize) -> Self {
        self.within(PathSegment::Index(index))
    }

    /// The same error, found inside the value of `key` of an object.
    pub fn within_key(self, key: &str) -> Self {
        self.within(PathSegment::Key(shortened_key(key)))
    }

    fn within(mut self, segment: PathSegment) -> Self {
        match &mut self {
            JsonError::InvalidUtf8 {
                path: Some(path), ..
            }
            | JsonError::Unsupported { path, .. }
            | JsonError::NonFiniteFloat {
                at: Location::Path(path),
            }
            | JsonError::TooDeep {
                at: Location::Path(path),
                ..
            }
            | JsonError::IntegerOutOfRange {
                at: Location::Path(path),
            } => path.prepend(segment),
            _ => {}
        }
        self
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::InvalidLimits { message } => write!(f, "invalid JSON limits: {message}"),
            JsonError::TooLarge {
                limit,
                actual,
                at_least: false,
            } => write!(
                f,
                "JSON input is {actual} bytes, over the limit of {limit} bytes"
            ),
            JsonError::TooLarge {
                limit,
                actual,
                at_least: true,
            } => write!(
                f,
                "encoded JSON would be at least {actual} bytes, over the limit of {limit} bytes \
                 (encoding stopped there)"
            ),
            JsonError::InvalidUtf8 { offset, path: None } => {
                write!(f, "JSON input is not valid UTF-8 at byte offset {offset}")
            }
            JsonError::InvalidUtf8 {
                offset,
                path: Some(path),
            } => write!(
                f,
                "string at {path} is not valid UTF-8 (first bad byte at offset {offset})"
            ),
            JsonError::Syntax {
                line,
                column,
                message,
            } => write!(f, "invalid JSON: {message} at line {line} column {column}"),
            JsonError::NonFiniteFloat { at } => write!(
                f,
                "number at {at} is not a finite 64-bit float (NaN, infinity, or beyond ±1.8e308)"
            ),
            JsonError::Unsupported { what, path } => {
                write!(f, "cannot encode {what} as JSON, at {path}")
            }
            JsonError::TooDeep { limit, at } => write!(
                f,
                "arrays and objects nested deeper than the limit of {limit} levels at {at}"
            ),
            JsonError::IntegerOutOfRange { at } => write!(
                f,
                "integer at {at} is out of range: JSON integers must fit a signed or an \
                 unsigned 64-bit integer"
            ),
        }
    }
}

impl std::error::Error for JsonError {}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Parses one JSON value from `input`.
///
/// Checks, in order: the limits themselves, the size (before reading a byte),
/// UTF-8 (reporting the offset of the first bad byte), then the text itself,
/// with the depth limit enforced while parsing: an array or object one level
/// too deep stops the parse right there, so the recursion never goes past
/// `max_depth`. Anything but whitespace after the value is a syntax error.
/// See the module documentation for numbers and [`Value`] for duplicate keys.
pub fn decode(input: &[u8], limits: &Limits) -> Result<Value, JsonError> {
    limits.validate()?;
    if input.len() > limits.max_bytes {
        return Err(JsonError::TooLarge {
            limit: limits.max_bytes,
            actual: input.len(),
            at_least: false,
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| JsonError::InvalidUtf8 {
        offset: e.valid_up_to(),
        path: None,
    })?;

    let ctx = DecodeCtx {
        max_depth: limits.max_depth,
        too_deep: Cell::new(false),
        integral_float_beyond_i64: Cell::new(false),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = ValueSeed {
        ctx: &ctx,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));

    match parsed {
        Ok(value) => {
            // serde_json reads integer literals beyond u64 (or below i64::MIN)
            // as floats. Those floats are integral and at least 2^63 in
            // magnitude; only when one was seen is the text scanned (valid
            // JSON by now) for an integer literal that is out of range.
            if ctx.integral_float_beyond_i64.get() {
                if let Some(at) = find_out_of_range_integer(text) {
                    return Err(JsonError::IntegerOutOfRange { at });
                }
            }
            Ok(value)
        }
        Err(err) => Err(classify_error(&err, &ctx, text)),
    }
}

struct DecodeCtx {
    max_depth: usize,
    /// Set when the visitor refused a container for being too deep: serde_json
    /// only carries a message, this carries the meaning.
    too_deep: Cell<bool>,
    integral_float_beyond_i64: Cell<bool>,
}

/// Deserializes one value at `depth` (the number of containers around it).
#[derive(Clone, Copy)]
struct ValueSeed<'c> {
    ctx: &'c DecodeCtx,
    depth: usize,
}

impl ValueSeed<'_> {
    /// The depth of the children of a container opened here, or an error when
    /// that container is one level too deep.
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > self.ctx.max_depth {
            self.ctx.too_deep.set(true);
            return Err(E::custom("nesting too deep"));
        }
        Ok(depth)
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::UInt(v), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // 2^63: every integer literal that fits neither i64 nor u64 is read
        // by serde_json as a float at least this large in magnitude.
        if v.fract() == 0.0 && v.abs() >= 9_223_372_036_854_775_808.0 {
            self.ctx.integral_float_beyond_i64.set(true);
        }
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let child = ValueSeed {
            ctx: self.ctx,
            depth,
        };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let child = ValueSeed {
            ctx: self.ctx,
            depth,
        };
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(child)?;
            entries.push((key, value));
        }
        Ok(Value::Object(dedupe_keys(entries)))
    }
}

/// Removes repeated keys: each key keeps the position of its first
/// occurrence and the value of its last. Linear in the number of entries
/// (quadratic only below 16 entries, where it beats hashing).
fn dedupe_keys(entries: Vec<(String, Value)>) -> Vec<(String, Value)> {
    let n = entries.len();
    let has_duplicates = if n <= 16 {
        (1..n).any(|i| entries[..i].iter().any(|(k, _)| *k == entries[i].0))
    } else {
        let mut seen = HashSet::with_capacity(n);
        !entries.iter().all(|(k, _)| seen.insert(k.as_str()))
    };
    if !has_duplicates {
        return entries;
    }

    // plan[i] = Some(j): entry i is the first occurrence of its key, whose
    // last occurrence is entry j. None: a later occurrence, dropped.
    let plan: Vec<Option<usize>> = {
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(n);
        for (i, (k, _)) in entries.iter().enumerate() {
            last.insert(k.as_str(), i);
        }
        let mut seen = HashSet::with_capacity(last.len());
        entries
            .iter()
            .map(|(k, _)| seen.insert(k.as_str()).then(|| last[k.as_str()]))
            .collect()
    };
    let mut slots: Vec<Option<(String, Value)>> = entries.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(plan.iter().flatten().count());
    for (i, last) in plan.into_iter().enumerate() {
        let Some(j) = last else { continue };
        let Some((key, first_value)) = slots[i].take() else {
            continue;
        };
        let value = if j == i {
            first_value
        } else {
            match slots[j].take() {
                Some((_, v)) => v,
                None => first_value,
            }
        };
        out.push((key, value));
    }
    out
}

/// Turns a serde_json error into ours, keeping its position.
fn classify_error(err: &serde_json::Error, ctx: &DecodeCtx, text: &str) -> JsonError {
    let (line, column) = (err.line(), err.column());
    let full = err.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full);

    if ctx.too_deep.get() || message == "recursion limit exceeded" {
        // serde_json's position is somewhere after the bracket (it may have
        // read on); point at the bracket itself.
        let at = find_too_deep(text, ctx.max_depth).unwrap_or(Location::Text { line, column });
        return JsonError::TooDeep {
            limit: ctx.max_depth,
            at,
        };
    }
    if message == "number out of range" {
        return classify_number_out_of_range(text, line, column);
    }
    JsonError::Syntax {
        line,
        column,
        message: message.to_owned(),
    }
}

fn is_number_byte(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
}

/// serde_json says "number out of range" both for `1e400` and for a
/// 400-digit integer: look at the literal around the error to tell them apart
/// and to point at its first byte.
fn classify_number_out_of_range(text: &str, line: usize, column: usize) -> JsonError {
    let bytes = text.as_bytes();
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    };
    // The error sits just after the literal, or one byte further when
    // serde_json had already peeked at the byte that ends it.
    let mut end = (line_start + column).min(bytes.len());
    if end > 0 && !is_number_byte(bytes[end - 1]) {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && is_number_byte(bytes[start - 1]) {
        start -= 1;
    }
    let literal = &bytes[start..end];
    let at = Location::Text {
        line,
        column: start - line_start.min(start) + 1,
    };
    if !literal.is_empty() && !literal.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        JsonError::IntegerOutOfRange { at }
    } else {
        JsonError::NonFiniteFloat { at }
    }
}

/// The position of the first `[` or `{` of `text` nested deeper than
/// `max_depth`. Strings are skipped by their quotes; the text only has to be
/// valid JSON up to that bracket, which the parser has checked.
fn find_too_deep(text: &str, max_depth: usize) -> Option<Location> {
    let bytes = text.as_bytes();
    let (mut i, mut line, mut line_start, mut depth) = (0, 1, 0, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_string(bytes, i),
            b'\n' => {
                i += 1;
                line += 1;
                line_start = i;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some(Location::Text {
                        line,
                        column: i - line_start + 1,
                    });
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// The index just after the string that starts with the quote at `start`.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != b'"' {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// The position of the first integer literal of `text` that fits neither
/// `i64` nor `u64`. `text` must be valid JSON: strings are skipped by their
/// quotes, so digits inside them are not mistaken for numbers.
fn find_out_of_range_integer(text: &str) -> Option<Location> {
    let bytes = text.as_bytes();
    let (mut i, mut line, mut line_start) = (0, 1, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_string(bytes, i),
            b'\n' => {
                i += 1;
                line += 1;
                line_start = i;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && is_number_byte(bytes[i]) {
                    i += 1;
                }
                let literal = &text[start..i];
                let integral = !literal.contains(['.', 'e', 'E']);
                if integral && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    return Some(Location::Text {
                        line,
                        column: start - line_start + 1,
                    });
                }
            }
            _ => i += 1,
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Writes `value` as compact JSON (no whitespace).
///
/// Fails on NaN or infinite floats and on nesting deeper than `max_depth`,
/// naming the path of the offending value, and with
/// [`JsonError::TooLarge`] as soon as the output would pass `max_bytes`: the
/// buffer never grows past the limit. Object keys are written in their order,
/// duplicates included.
pub fn encode(value: &Value, limits: &Limits) -> Result<Vec<u8>, JsonError> {
    limits.validate()?;
    let mut encoder = Encoder {
        out: Vec::new(),
        max_bytes: limits.max_bytes,
        max_depth: limits.max_depth,
    };
    encoder.value(value, 0)?;
    Ok(encoder.out)
}

struct Encoder {
    out: Vec<u8>,
    max_bytes: usize,
    max_depth: usize,
}

impl Encoder {
    fn push(&mut self, bytes: &[u8]) -> Result<(), JsonError> {
        let actual = self.out.len().saturating_add(bytes.len());
        if actual > self.max_bytes {
            return Err(JsonError::TooLarge {
                limit: self.max_bytes,
                actual,
                at_least: true,
            });
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes a number with serde_json's formatter (itoa / shortest
    /// round-trip float) through a stack buffer.
    fn number(
        &mut self,
        write: impl FnOnce(&mut &mut [u8]) -> std::io::Result<()>,
    ) -> Result<(), JsonError> {
        let mut buf = [0u8; 40];
        let mut cursor: &mut [u8] = &mut buf;
        // 40 bytes hold any i64, u64 or f64: a failure would be a bug in the
        // formatter, reported rather than panicking inside a NIF.
        write(&mut cursor).map_err(|_| JsonError::unsupported("a number"))?;
        let written = 40 - cursor.len();
        self.push(&buf[..written])
    }

    fn value(&mut self, value: &Value, depth: usize) -> Result<(), JsonError> {
        match value {
            Value::Null => self.push(b"null"),
            Value::Bool(true) => self.push(b"true"),
            Value::Bool(false) => self.push(b"false"),
            Value::Int(n) => self.number(|w| CompactFormatter.write_i64(w, *n)),
            Value::UInt(n) => self.number(|w| CompactFormatter.write_u64(w, *n)),
            Value::Float(x) if !x.is_finite() => Err(JsonError::NonFiniteFloat {
                at: Location::root(),
            }),
            Value::Float(x) => self.number(|w| CompactFormatter.write_f64(w, *x)),
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                let depth = self.enter(depth)?;
                self.push(b"[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(b",")?;
                    }
                    self.value(item, depth).map_err(|e| e.within_index(i))?;
                }
                self.push(b"]")
            }
            Value::Object(entries) => {
                let depth = self.enter(depth)?;
                self.push(b"{")?;
                for (i, (key, item)) in entries.iter().enumerate() {
                    if i > 0 {
                        self.push(b",")?;
                    }
                    self.string(key)?;
                    self.push(b":")?;
                    self.value(item, depth).map_err(|e| e.within_key(key))?;
                }
                self.push(b"}")
            }
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, JsonError> {
        if depth >= self.max_depth {
            return Err(JsonError::too_deep(self.max_depth));
        }
        Ok(depth + 1)
    }

    /// Writes a quoted string, escaping as RFC 8259 requires (quote,
    /// backslash, control characters); other characters are written as UTF-8.
    fn string(&mut self, s: &str) -> Result<(), JsonError> {
        self.push(b"\"")?;
        let bytes = s.as_bytes();
        let mut start = 0;
        let mut unicode = [0u8; 6];
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match escape_of(b, &mut unicode) {
                Some(escape) => escape,
                None => continue,
            };
            self.push(&bytes[start..i])?;
            self.push(escape)?;
            start = i + 1;
        }
        self.push(&bytes[start..])?;
        self.push(b"\"")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The escape sequence of byte `b` inside a JSON string, if it needs one.
fn escape_of(b: u8, unicode: &mut [u8; 6]) -> Option<&[u8]> {
    Some(match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        0x00..=0x1f => {
            *unicode = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            unicode
        }
        _ => return None,
    })
}

/// Appends `s` as a quoted, escaped JSON string (for messages).
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let mut unicode = [0u8; 6];
    for &b in s.as_bytes() {
        match escape_of(b, &mut unicode) {
            Some(escape) => out.extend_from_slice(escape),
            None => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(text: &str) -> Result<Value, JsonError> {
        decode(text.as_bytes(), &Limits::default())
    }

    fn enc(value: &Value) -> Result<String, JsonError> {
        encode(value, &Limits::default()).map(|b| String::from_utf8(b).expect("UTF-8 output"))
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn obj(entries: &[(&str, Value)]) -> Value {
        Value::Object(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn nested_arrays(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn nested_value(depth: usize) -> Value {
        let mut v = Value::Int(1);
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    }

    // -- limits -------------------------------------------------------------

    #[test]
    fn default_limits() {
        let l = Limits::default();
        assert_eq!(l.max_bytes, 8 * 1024 * 1024);
        assert_eq!(l.max_depth, 64);
        assert_eq!(l.validate(), Ok(()));
    }

    #[test]
    fn limits_are_validated() {
        assert!(Limits::new(1, 0).is_ok());
        assert!(Limits::new(usize::MAX, MAX_DEPTH_CEILING).is_ok());

        let e = Limits::new(0, 10).unwrap_err();
        assert_eq!(e.code(), "invalid_limits");
        assert!(e.to_string().contains("max_bytes"), "{e}");

        let e = Limits::new(10, MAX_DEPTH_CEILING + 1).unwrap_err();
        assert_eq!(e.code(), "invalid_limits");
        assert!(e.to_string().contains("max_depth is 101"), "{e}");

        let bad = Limits {
            max_bytes: 10,
            max_depth: 1000,
        };
        assert_eq!(decode(b"1", &bad).unwrap_err().code(), "invalid_limits");
        assert_eq!(
            encode(&Value::Null, &bad).unwrap_err().code(),
            "invalid_limits"
        );
    }

    // -- decode: normal cases -------------------------------------------------

    #[test]
    fn decodes_scalars() {
        assert_eq!(dec("null"), Ok(Value::Null));
        assert_eq!(dec("true"), Ok(Value::Bool(true)));
        assert_eq!(dec(" false \n"), Ok(Value::Bool(false)));
        assert_eq!(dec("0"), Ok(Value::Int(0)));
        assert_eq!(dec("-42"), Ok(Value::Int(-42)));
        assert_eq!(dec("1.5"), Ok(Value::Float(1.5)));
        assert_eq!(dec("1.0"), Ok(Value::Float(1.0)));
        assert_eq!(dec("1E2"), Ok(Value::Float(100.0)));
        assert_eq!(dec("-2.5e-3"), Ok(Value::Float(-0.0025)));
        assert_eq!(dec("\"hi\""), Ok(s("hi")));
    }

    #[test]
    fn decodes_escapes_and_unicode() {
        assert_eq!(
            dec(r#""a\"b\\c\/d\b\f\n\r\t""#),
            Ok(s("a\"b\\c/d\u{8}\u{c}\n\r\t"))
        );
        assert_eq!(dec(r#""\u00e9\u4e2d""#), Ok(s("é中")));
        // A surrogate pair is one character.
        assert_eq!(dec(r#""\ud83d\ude00""#), Ok(s("😀")));
        assert_eq!(dec("\"😀 é 中\""), Ok(s("😀 é 中")));
        assert_eq!(dec(r#""\u0000""#), Ok(s("\u{0}")));
    }

    #[test]
    fn lone_surrogates_are_syntax_errors() {
        for text in [r#""\ud800""#, r#""\udc00""#, r#""\ud800\u0041""#] {
            let e = dec(text).unwrap_err();
            assert_eq!(e.code(), "syntax", "{text}: {e}");
        }
    }

    #[test]
    fn decodes_integer_boundaries() {
        assert_eq!(dec("9223372036854775807"), Ok(Value::Int(i64::MAX)));
        assert_eq!(dec("-9223372036854775808"), Ok(Value::Int(i64::MIN)));
        assert_eq!(
            dec("9223372036854775808"),
            Ok(Value::UInt(i64::MAX as u64 + 1))
        );
        assert_eq!(dec("18446744073709551615"), Ok(Value::UInt(u64::MAX)));
    }

    #[test]
    fn decodes_extreme_floats() {
        assert_eq!(dec("1e308"), Ok(Value::Float(1e308)));
        assert_eq!(dec("1.7976931348623157e308"), Ok(Value::Float(f64::MAX)));
        assert_eq!(dec("5e-324"), Ok(Value::Float(5e-324)));
        // Underflow rounds to zero, it is not an error.
        assert_eq!(dec("1e-400"), Ok(Value::Float(0.0)));
        // Big floats written as floats stay floats.
        assert_eq!(dec("1e19"), Ok(Value::Float(1e19)));
        assert_eq!(
            dec("[2e19, -1e19]"),
            Ok(Value::Array(vec![Value::Float(2e19), Value::Float(-1e19)]))
        );
        // serde_json reads -0 as the float -0.0.
        match dec("-0") {
            Ok(Value::Float(z)) => assert!(z == 0.0 && z.is_sign_negative()),
            other => panic!("{other:?}"),
        }
        // Correctly rounded (serde_json's float_roundtrip feature).
        assert_eq!(dec("0.1"), Ok(Value::Float(0.1)));
        assert_eq!(
            dec("2.2250738585072011e-308"),
            Ok(Value::Float(2.225_073_858_507_201e-308))
        );
    }

    #[test]
    fn decodes_nested_and_empty_containers() {
        assert_eq!(dec("[]"), Ok(Value::Array(vec![])));
        assert_eq!(dec("{}"), Ok(Value::Object(vec![])));
        assert_eq!(dec(" [ ] "), Ok(Value::Array(vec![])));
        assert_eq!(
            dec(r#"{"a": [1, {"b": null, "c": []}], "d": {}}"#),
            Ok(obj(&[
                (
                    "a",
                    Value::Array(vec![
                        Value::Int(1),
                        obj(&[("b", Value::Null), ("c", Value::Array(vec![]))]),
                    ])
                ),
                ("d", Value::Object(vec![])),
            ]))
        );
    }

    #[test]
    fn objects_keep_key_order() {
        assert_eq!(
            dec(r#"{"z": 1, "a": 2, "m": 3}"#),
            Ok(obj(&[
                ("z", Value::Int(1)),
                ("a", Value::Int(2)),
                ("m", Value::Int(3))
            ]))
        );
    }

    #[test]
    fn duplicate_keys_last_value_wins_at_first_position() {
        assert_eq!(
            dec(r#"{"a": 1, "b": 2, "a": 3}"#),
            Ok(obj(&[("a", Value::Int(3)), ("b", Value::Int(2))]))
        );
        assert_eq!(
            dec(r#"{"a": 1, "a": 2, "a": 3}"#),
            Ok(obj(&[("a", Value::Int(3))]))
        );
        // Large objects go through the hashing path.
        let mut text = String::from("{");
        for i in 0..40 {
            text.push_str(&format!("\"k{}\": {i},", i % 20));
        }
        text.push_str("\"k0\": \"last\"}");
        let Ok(Value::Object(entries)) = dec(&text) else {
            panic!("not an object")
        };
        assert_eq!(entries.len(), 20);
        assert_eq!(entries[0], ("k0".to_owned(), s("last")));
        assert_eq!(entries[1], ("k1".to_owned(), Value::Int(21)));
        assert_eq!(entries[19], ("k19".to_owned(), Value::Int(39)));
    }

    #[test]
    fn dedupe_keeps_unique_objects_untouched() {
        let entries: Vec<(String, Value)> =
            (0..100).map(|i| (format!("k{i}"), Value::Int(i))).collect();
        assert_eq!(dedupe_keys(entries.clone()), entries);
    }

    // -- decode: errors -------------------------------------------------------

    #[test]
    fn too_large_is_checked_before_anything_else() {
        let limits = Limits::new(4, 64).unwrap();
        assert_eq!(decode(b"1234", &limits), Ok(Value::Int(1234)));
        let e = decode(b"\xff\xff\xff\xff\xff", &limits).unwrap_err();
        assert_eq!(
            e,
            JsonError::TooLarge {
                limit: 4,
                actual: 5,
                at_least: false
            }
        );
        assert_eq!(e.code(), "too_large");
        assert_eq!(
            e.to_string(),
            "JSON input is 5 bytes, over the limit of 4 bytes"
        );
    }

    #[test]
    fn invalid_utf8_reports_the_offset() {
        let e = decode(b"[\"ab\xffc\"]", &Limits::default()).unwrap_err();
        assert_eq!(
            e,
            JsonError::InvalidUtf8 {
                offset: 4,
                path: None
            }
        );
        assert_eq!(e.code(), "invalid_utf8");
        assert!(e.to_string().contains("byte offset 4"), "{e}");
        // A truncated multi-byte sequence.
        let e = decode("\"é".as_bytes().split_last().unwrap().1, &Limits::default());
        assert_eq!(
            e,
            Err(JsonError::InvalidUtf8 {
                offset: 1,
                path: None
            })
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = dec("[1,\n  x]").unwrap_err();
        assert_eq!(e.code(), "syntax");
        let JsonError::Syntax { line, column, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!((*line, *column), (2, 3));
        assert_eq!(
            e.to_string(),
            "invalid JSON: expected value at line 2 column 3"
        );

        for bad in [
            "",
            " ",
            "[",
            "[1,]",
            "{\"a\":}",
            "{\"a\" 1}",
            "{1: 2}",
            "tru",
            "nul",
            "01",
            "1.",
            "-",
            "+1",
            ".5",
            "NaN",
            "Infinity",
            "'a'",
            "\"\t\"",
            "[1] x",
            "1 2",
            "{} {}",
            "\u{feff}1",
            "/* */ 1",
        ] {
            let e = dec(bad).unwrap_err();
            assert_eq!(e.code(), "syntax", "{bad:?} gave {e}");
            assert!(e.to_string().contains(" at line "), "{e}");
        }
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let e = dec("{\"a\": 1}x").unwrap_err();
        assert_eq!(
            e,
            JsonError::Syntax {
                line: 1,
                column: 9,
                message: "trailing characters".into()
            }
        );
        assert_eq!(dec("{\"a\": 1} \n\t "), Ok(obj(&[("a", Value::Int(1))])));
    }

    #[test]
    fn out_of_range_integers_are_errors_not_floats() {
        for (text, column) in [
            ("18446744073709551616", 1),
            ("-9223372036854775809", 1),
            ("[1, 99999999999999999999999]", 5),
            ("{\"n\": -18446744073709551616}", 7),
        ] {
            let e = dec(text).unwrap_err();
            assert_eq!(
                e,
                JsonError::IntegerOutOfRange {
                    at: Location::Text { line: 1, column }
                },
                "{text}"
            );
            assert_eq!(e.code(), "integer_out_of_range");
            assert!(
                e.to_string().contains(&format!("line 1 column {column}")),
                "{e}"
            );
        }
        // Digits in strings are not numbers.
        assert_eq!(
            dec(r#"["99999999999999999999999", 1e300]"#),
            Ok(Value::Array(vec![
                s("99999999999999999999999"),
                Value::Float(1e300)
            ]))
        );
        // On a later line.
        assert_eq!(
            dec("[\n\"x\",\n  -99999999999999999999]").unwrap_err(),
            JsonError::IntegerOutOfRange {
                at: Location::Text { line: 3, column: 3 }
            }
        );
    }

    #[test]
    fn huge_literals_are_told_apart() {
        let digits = "9".repeat(400);
        for (text, code) in [
            (digits.clone(), "integer_out_of_range"),
            (format!("[{digits}]"), "integer_out_of_range"),
            (format!("[1,\n -{digits} ]"), "integer_out_of_range"),
            ("1e400".to_owned(), "non_finite_float"),
            ("[-1.5e999]".to_owned(), "non_finite_float"),
            (format!("{digits}.5"), "non_finite_float"),
            (format!("{{\"a\": {digits}e2}}"), "non_finite_float"),
        ] {
            let e = dec(&text).unwrap_err();
            assert_eq!(e.code(), code, "{text}: {e}");
        }
        assert_eq!(
            dec("[1, 1e400]").unwrap_err(),
            JsonError::NonFiniteFloat {
                at: Location::Text { line: 1, column: 5 }
            }
        );
        assert_eq!(
            dec(&format!("[1,\n -{digits} ]")).unwrap_err(),
            JsonError::IntegerOutOfRange {
                at: Location::Text { line: 2, column: 2 }
            }
        );
    }

    #[test]
    fn depth_limit_is_exact() {
        let limits = Limits::new(1 << 20, 3).unwrap();
        assert!(decode(nested_arrays(3).as_bytes(), &limits).is_ok());
        assert!(decode(br#"{"a":{"b":[1]}}"#, &limits).is_ok());
        let e = decode(nested_arrays(4).as_bytes(), &limits).unwrap_err();
        assert_eq!(
            e,
            JsonError::TooDeep {
                limit: 3,
                at: Location::Text { line: 1, column: 4 }
            }
        );
        assert_eq!(e.code(), "too_deep");
        assert!(
            e.to_string()
                .contains("limit of 3 levels at line 1 column 4"),
            "{e}"
        );
        let e = decode(br#"{"a":{"b":{"c":{}}}}"#, &limits).unwrap_err();
        assert_eq!(
            e,
            JsonError::TooDeep {
                limit: 3,
                at: Location::Text {
                    line: 1,
                    column: 16
                }
            }
        );
        // Brackets inside strings do not count.
        let e = decode(b"{\"[[[\\\"{{\": [\n [ [ [1]]]]}", &limits).unwrap_err();
        assert_eq!(
            e,
            JsonError::TooDeep {
                limit: 3,
                at: Location::Text { line: 2, column: 4 }
            }
        );

        // Depth 0: scalars only.
        let scalars = Limits::new(100, 0).unwrap();
        assert_eq!(decode(b"1", &scalars), Ok(Value::Int(1)));
        assert_eq!(decode(b"[]", &scalars).unwrap_err().code(), "too_deep");
    }

    #[test]
    fn deep_input_never_overflows_the_stack() {
        // Far beyond serde_json's own limit of 128 and beyond any stack.
        let limits = Limits::new(usize::MAX, MAX_DEPTH_CEILING).unwrap();
        for text in [
            nested_arrays(1_000_000),
            "[".repeat(1_000_000),
            "{\"a\":".repeat(200_000),
        ] {
            let e = decode(text.as_bytes(), &limits).unwrap_err();
            assert_eq!(e.code(), "too_deep");
        }
        // The ceiling itself is allowed.
        assert!(decode(nested_arrays(MAX_DEPTH_CEILING).as_bytes(), &limits).is_ok());
    }

    // -- encode ---------------------------------------------------------------

    #[test]
    fn encodes_scalars() {
        assert_eq!(enc(&Value::Null).unwrap(), "null");
        assert_eq!(enc(&Value::Bool(true)).unwrap(), "true");
        assert_eq!(enc(&Value::Bool(false)).unwrap(), "false");
        assert_eq!(enc(&Value::Int(i64::MIN)).unwrap(), "-9223372036854775808");
        assert_eq!(enc(&Value::UInt(u64::MAX)).unwrap(), "18446744073709551615");
        assert_eq!(enc(&Value::UInt(7)).unwrap(), "7");
        assert_eq!(enc(&Value::Float(1.0)).unwrap(), "1.0");
        assert_eq!(enc(&Value::Float(0.1)).unwrap(), "0.1");
        assert_eq!(enc(&Value::Float(-0.0)).unwrap(), "-0.0");
        assert_eq!(enc(&Value::Float(1e300)).unwrap(), "1e+300");
        assert_eq!(enc(&Value::Float(1.5e-7)).unwrap(), "1.5e-7");
        assert_eq!(
            enc(&Value::Float(f64::MIN_POSITIVE)).unwrap(),
            "2.2250738585072014e-308"
        );
    }

    #[test]
    fn encodes_strings_with_escapes() {
        assert_eq!(enc(&s("")).unwrap(), r#""""#);
        assert_eq!(
            enc(&s("a\"b\\c/\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}")).unwrap(),
            "\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0000\\u001f\u{7f}\""
        );
        assert_eq!(enc(&s("é中😀")).unwrap(), "\"é中😀\"");
    }

    #[test]
    fn encodes_containers_in_order() {
        let v = obj(&[
            ("z", Value::Array(vec![])),
            ("a", Value::Object(vec![])),
            (
                "k\"ey",
                Value::Array(vec![Value::Int(1), Value::Null, s("x")]),
            ),
        ]);
        assert_eq!(enc(&v).unwrap(), r#"{"z":[],"a":{},"k\"ey":[1,null,"x"]}"#);
        // Duplicates are written as given.
        let dup = obj(&[("a", Value::Int(1)), ("a", Value::Int(2))]);
        assert_eq!(enc(&dup).unwrap(), r#"{"a":1,"a":2}"#);
    }

    #[test]
    fn encode_refuses_non_finite_floats_naming_the_path() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                enc(&Value::Float(x)),
                Err(JsonError::NonFiniteFloat {
                    at: Location::root()
                })
            );
        }
        let v = Value::Array(vec![
            Value::Int(1),
            obj(&[("x", Value::Array(vec![Value::Float(f64::NAN)]))]),
        ]);
        let e = enc(&v).unwrap_err();
        assert_eq!(e.code(), "non_finite_float");
        assert_eq!(
            e.to_string(),
            "number at $[1].x[0] is not a finite 64-bit float (NaN, infinity, or beyond ±1.8e308)"
        );
    }

    #[test]
    fn encode_enforces_depth() {
        let limits = Limits::new(1 << 20, 3).unwrap();
        assert_eq!(encode(&nested_value(3), &limits).map(|b| b.len()), Ok(7));
        let e = encode(&nested_value(4), &limits).unwrap_err();
        assert_eq!(e.code(), "too_deep");
        assert_eq!(
            e.to_string(),
            "arrays and objects nested deeper than the limit of 3 levels at $[0][0][0]"
        );
        // A value much deeper than the limit stops at the limit.
        let e = encode(&nested_value(5_000), &Limits::default()).unwrap_err();
        assert_eq!(e.code(), "too_deep");
    }

    #[test]
    fn encode_stops_as_soon_as_the_output_is_too_large() {
        let limits = Limits::new(1000, 64).unwrap();
        // 100 000 strings of 100 bytes: 10 MB if it were all written.
        let big = Value::Array(vec![s(&"x".repeat(100)); 100_000]);
        let e = encode(&big, &limits).unwrap_err();
        let JsonError::TooLarge {
            limit,
            actual,
            at_least,
        } = e.clone()
        else {
            panic!("{e:?}")
        };
        assert_eq!(limit, 1000);
        assert!(at_least);
        assert!(actual > 1000 && actual <= 1000 + 100, "{actual}");
        assert_eq!(e.code(), "too_large");
        assert!(e.to_string().contains("at least"), "{e}");

        // Exactly at the limit is fine.
        let exact = Limits::new(4, 64).unwrap();
        assert_eq!(encode(&Value::Null, &exact), Ok(b"null".to_vec()));
        assert_eq!(
            encode(&Value::Bool(false), &exact).unwrap_err().code(),
            "too_large"
        );
        // One huge string is cut at the limit too.
        let e = encode(&s(&"y".repeat(1 << 20)), &limits).unwrap_err();
        assert_eq!(e.code(), "too_large");
    }

    // -- errors ---------------------------------------------------------------

    #[test]
    fn codes_are_stable_snake_case() {
        let all = [
            (
                JsonError::InvalidLimits {
                    message: "m".into(),
                },
                "invalid_limits",
            ),
            (
                JsonError::TooLarge {
                    limit: 1,
                    actual: 2,
                    at_least: false,
                },
                "too_large",
            ),
            (
                JsonError::InvalidUtf8 {
                    offset: 0,
                    path: None,
                },
                "invalid_utf8",
            ),
            (
                JsonError::Syntax {
                    line: 1,
                    column: 1,
                    message: "m".into(),
                },
                "syntax",
            ),
            (
                JsonError::NonFiniteFloat {
                    at: Location::root(),
                },
                "non_finite_float",
            ),
            (JsonError::unsupported("a tuple"), "unsupported"),
            (JsonError::too_deep(1), "too_deep"),
            (JsonError::integer_out_of_range(), "integer_out_of_range"),
        ];
        for (e, code) in &all {
            assert_eq!(e.code(), *code);
            assert!(code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn errors_learn_their_path() {
        let e = JsonError::unsupported("a tuple")
            .within_key("b c")
            .within_index(2)
            .within_key("a");
        assert_eq!(
            e.to_string(),
            r#"cannot encode a tuple as JSON, at $.a[2]["b c"]"#
        );
        let e = JsonError::invalid_utf8_string(3).within_key("name");
        assert_eq!(
            e.to_string(),
            "string at $.name is not valid UTF-8 (first bad byte at offset 3)"
        );
        let e = JsonError::integer_out_of_range().within_index(0);
        assert_eq!(
            e,
            JsonError::IntegerOutOfRange {
                at: Location::Path(Path {
                    segments: vec![PathSegment::Index(0)]
                })
            }
        );
        // Errors located in text, or without a location, are left alone.
        let syntax = JsonError::Syntax {
            line: 1,
            column: 2,
            message: "m".into(),
        };
        assert_eq!(syntax.clone().within_index(3), syntax);
        let input = JsonError::InvalidUtf8 {
            offset: 1,
            path: None,
        };
        assert_eq!(input.clone().within_key("k"), input);
    }

    #[test]
    fn long_keys_are_shortened_in_paths() {
        let key = "é".repeat(100);
        let e = JsonError::unsupported("a pid").within_key(&key);
        let JsonError::Unsupported { path, .. } = &e else {
            unreachable!()
        };
        let PathSegment::Key(k) = &path.segments()[0] else {
            unreachable!()
        };
        assert!(k.len() <= PATH_KEY_MAX_BYTES + '…'.len_utf8());
        assert!(k.ends_with('…'));
        assert_eq!(
            Path {
                segments: vec![
                    PathSegment::Key("a\nb".into()),
                    PathSegment::Key("_x1".into())
                ]
            }
            .to_string(),
            r#"$["a\nb"]._x1"#
        );
        assert_eq!(Path::root().to_string(), "$");
    }

    // -- properties -----------------------------------------------------------

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z]{0,6}", any::<String>(),]
    }

    /// Values as decoding produces them: UInt only above i64::MAX, finite
    /// floats, objects without duplicate keys.
    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Value::UInt),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(Value::Float),
            prop_oneof![
                Just(0.0),
                Just(-0.0),
                Just(1e300),
                Just(5e-324),
                Just(9.3e18)
            ]
            .prop_map(Value::Float),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(8, 256, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((arb_key(), inner), 0..8).prop_map(|entries| {
                    let mut seen = HashSet::new();
                    Value::Object(
                        entries
                            .into_iter()
                            .filter(|(k, _)| seen.insert(k.clone()))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// Bytes that look like JSON, to get past the first byte more often than
    /// uniformly random bytes do.
    fn jsonish_bytes() -> impl Strategy<Value = Vec<u8>> {
        let alphabet: &[u8] = b"[]{}\",:0123456789-+.eE \n\\u/truefalsnl\xc3\xa9\xff";
        prop::collection::vec(prop::sample::select(alphabet.to_vec()), 0..200)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn round_trip(value in arb_value()) {
            let text = encode(&value, &Limits::default()).unwrap();
            prop_assert_eq!(decode(&text, &Limits::default()), Ok(value));
        }

        #[test]
        fn encode_output_is_valid_json(value in arb_value()) {
            let text = encode(&value, &Limits::default()).unwrap();
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&text).is_ok());
        }

        #[test]
        fn decode_never_panics_on_random_bytes(bytes in any::<Vec<u8>>()) {
            let _ = decode(&bytes, &Limits::default());
        }

        #[test]
        fn decode_never_panics_on_jsonish_bytes(bytes in jsonish_bytes()) {
            if let Ok(value) = decode(&bytes, &Limits::default()) {
                // What decodes re-encodes to text that decodes the same.
                let text = encode(&value, &Limits::default()).unwrap();
                prop_assert_eq!(decode(&text, &Limits::default()), Ok(value));
            }
        }

        #[test]
        fn deep_nesting_is_too_deep_not_a_crash(
            depth in 0usize..5_000,
            max_depth in 0usize..=MAX_DEPTH_CEILING,
            object in any::<bool>(),
            closed in any::<bool>(),
        ) {
            let (open, close) = if object { ("{\"k\":", "}") } else { ("[", "]") };
            let mut text = open.repeat(depth);
            text.push('0');
            if closed {
                text.push_str(&close.repeat(depth));
            }
            let limits = Limits::new(usize::MAX, max_depth).unwrap();
            match decode(text.as_bytes(), &limits) {
                Err(e) if depth > max_depth => prop_assert_eq!(e.code(), "too_deep"),
                // With no nesting there is nothing to close.
                Ok(_) => prop_assert!((closed || depth == 0) && depth <= max_depth),
                Err(e) => prop_assert!(!closed && e.code() == "syntax", "{}", e),
            }
            let value = (0..depth.min(2 * MAX_DEPTH_CEILING)).fold(Value::Null, |v, _| Value::Array(vec![v]));
            let encoded = encode(&value, &limits);
            if depth.min(2 * MAX_DEPTH_CEILING) > max_depth {
                prop_assert_eq!(encoded.unwrap_err().code(), "too_deep");
            } else {
                prop_assert!(encoded.is_ok());
            }
        }

        #[test]
        fn encode_never_passes_max_bytes(value in arb_value(), max_bytes in 1usize..200) {
            let limits = Limits::new(max_bytes, 64).unwrap();
            match encode(&value, &limits) {
                Ok(text) => prop_assert!(text.len() <= max_bytes),
                Err(e) => prop_assert_eq!(e.code(), "too_large"),
            }
        }
    }
}
