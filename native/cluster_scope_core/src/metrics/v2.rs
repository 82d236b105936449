//! A reader of HdrHistogram's V2 serialized form that adds the counts of
//! many serialized histograms into one counts array, for
//! [`super::Histogram::merge_serialized`].
//!
//! Reading each input into its own `hdrhistogram::Histogram` and adding it
//! costs, per input, a fresh counts array (184 KiB for 1 us..1 h at 3
//! figures: allocated, zeroed, walked again by the addition), a fresh
//! inflate state (tens of KiB, zeroed) and a restat pass. Here every input
//! whose configuration is the first one's is decoded straight into one
//! counts array with the same layout (the index of a count in the V2 stream
//! is its index in that array), through one reused inflater and one reused
//! buffer; the histogram is built once at the end.
//!
//! # The format (from HdrHistogram's specification)
//!
//! * V2, cookie `0x1c849313`, all integers big-endian: cookie (4 bytes),
//!   payload length (4), normalizing index offset (4, must be 0),
//!   significant figures (4), lowest discernible value (8), highest trackable
//!   value (8), integer-to-double ratio (an f64, must be 1.0): 40 bytes, then
//!   `payload length` bytes of counts.
//! * The counts, from index 0: ZigZag-encoded LEB128 varints of at most 9
//!   bytes (the 9th byte carries 8 bits). A value `n >= 0` is the count at
//!   the current index (then the next index); `n < 0` skips `-n` indexes of
//!   zero counts.
//! * V2 compressed, cookie `0x1c849314`: cookie, length of what follows (4
//!   bytes), then a zlib stream of a V2 histogram.
//!
//! The reader accepts and refuses exactly what `hdrhistogram`'s deserializer
//! does (the property tests compare the two): it reads the compressed
//! stream only as far as the V2 form needs (the zlib checksum is not
//! checked), ignores bytes after the payload, accepts zero counts and runs of
//! zeros past the end of the counts array but refuses a non-zero count there.
//! An input it does not decode itself ([`Step::Other`]: another
//! configuration, or a compressed payload longer than any histogram of its
//! configuration can need) is left to the generic path.

use flate2::{Decompress, FlushDecompress, Status};

use super::{HistogramConfig, MetricsError};

/// Cookie of the V2 form.
const V2_COOKIE: u32 = 0x1c84_9313;
/// Cookie of the V2 compressed form.
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// Bytes of the V2 header, cookie included.
const HEADER_BYTES: usize = 40;
/// The longest varint.
const MAX_VARINT_BYTES: usize = 9;
/// The largest V2 form inflated in one call (1 MiB: a full latency
/// histogram of 23,552 counts of 9 bytes takes 207 KiB); larger ones are
/// inflated the streaming way.
const WHOLE_MAX_BYTES: usize = 1024 * 1024;

/// How [`Reader::add`] handled one input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Its counts were added.
    Added,
    /// Not decoded here: its configuration differs from the accumulator's
    /// (or its payload is longer than a histogram of it can need); nothing
    /// was added.
    Other,
}

/// The counts array of one configuration, with HdrHistogram's layout.
#[derive(Debug)]
pub(crate) struct Counts {
    config: HistogramConfig,
    counts: Vec<u64>,
    /// The highest index with a non-zero count, plus one.
    used: usize,
    unit_magnitude: u32,
    sub_bucket_half_count_magnitude: u32,
}

impl Counts {
    /// An all-zero counts array for `config`.
    pub(crate) fn new(config: HistogramConfig) -> Result<Self, MetricsError> {
        let len = config.counts_bytes()? / 8;
        // The same (floating-point) computations as hdrhistogram's
        // new_with_bounds and HistogramConfig::counts_bytes.
        let unit_magnitude = (config.lowest() as f64).log2().floor() as u32;
        let largest = 2 * 10u32.pow(u32::from(config.significant_figures()));
        let sub_bucket_count_magnitude = f64::from(largest).log2().ceil() as u32;
        Ok(Counts {
            config,
            counts: vec![0; len],
            used: 0,
            unit_magnitude,
            sub_bucket_half_count_magnitude: sub_bucket_count_magnitude - 1,
        })
    }

    /// This array emptied for `config` (only its used part is zeroed), or a
    /// new one when the configuration differs.
    pub(crate) fn reset_for(mut self, config: HistogramConfig) -> Result<Self, MetricsError> {
        if self.config != config {
            return Counts::new(config);
        }
        self.counts[..self.used].fill(0);
        self.used = 0;
        Ok(self)
    }

    /// The lowest value of the counts at `index` (HdrHistogram's
    /// `value_for`). `index` must be below the array's length.
    pub(crate) fn value_at(&self, index: usize) -> u64 {
        let half_magnitude = self.sub_bucket_half_count_magnitude;
        let half = 1u64 << half_magnitude;
        let bucket = index >> half_magnitude;
        let sub = index as u64 & (half - 1);
        if bucket == 0 {
            // The lower half of the first bucket.
            sub << self.unit_magnitude
        } else {
            (sub + half) << ((bucket - 1) as u32 + self.unit_magnitude)
        }
    }

    /// Adds another array of the same configuration to this one.
    pub(crate) fn add_counts(&mut self, other: &Counts) {
        debug_assert_eq!(self.config, other.config);
        for (a, b) in self.counts.iter_mut().zip(&other.counts[..other.used]) {
            *a = a.saturating_add(*b);
        }
        self.used = self.used.max(other.used);
    }

    /// Every non-zero count with its index, lowest first.
    pub(crate) fn non_zero(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts[..self.used]
            .iter()
            .enumerate()
            .filter(|(_, &c)| c != 0)
            .map(|(i, &c)| (i, c))
    }

    /// Decodes the counts of a V2 payload into the array. On an error the
    /// counts decoded before it stay added (the caller drops the array).
    ///
    /// Latency data alternates counts, single zeros and runs of zeros at
    /// random (a third of the buckets below 2048 us are empty), so the loop
    /// has no branch on the kind of number: a run adds 0 where it starts.
    fn add_payload(&mut self, payload: &[u8]) -> Result<(), String> {
        let counts = &mut self.counts[..];
        let len = counts.len();
        let mut index: usize = 0;
        let mut used = self.used;
        let mut pos = 0;
        while pos < payload.len() {
            // One byte in almost every varint of latency data.
            let first = payload[pos];
            let zigzag = if first < 0x80 {
                pos += 1;
                u64::from(first)
            } else {
                let (value, read) = read_varint(&payload[pos..])
                    .ok_or_else(|| "the counts end inside a number".to_string())?;
                pos += read;
                value
            };
            let n = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
            if n == i64::MIN {
                return Err("a run of zeros is too long".into());
            }
            // A count (then the next index), or a run of -n zeros.
            let (count, step) = if n < 0 {
                (0, n.unsigned_abs() as usize)
            } else {
                (n as u64, 1)
            };
            match counts.get_mut(index) {
                Some(slot) => {
                    *slot = slot.saturating_add(count);
                    // used = max(used, index + 1) when count != 0, without
                    // a branch.
                    let mask = 0usize.wrapping_sub(usize::from(count != 0));
                    used = used.max((index + 1) & mask);
                }
                // Zeros past the end are accepted, as hdrhistogram does.
                None if count == 0 => {}
                None => return Err("the counts are longer than the histogram's range".into()),
            }
            index = index
                .checked_add(step)
                .ok_or("a run of zeros is too long")?;
        }
        debug_assert!(used <= len);
        self.used = used;
        Ok(())
    }
}

/// Reads V2 histograms (compressed or not) into a [`Counts`]. Keeps its
/// inflater and buffer from one input to the next.
pub(crate) struct Reader {
    inflater: Option<Decompress>,
    /// The inflated V2 form, read the streaming way.
    buf: Vec<u8>,
    /// The inflated V2 form, read in one call.
    whole: Vec<u8>,
}

impl Reader {
    pub(crate) fn new() -> Self {
        Reader {
            inflater: None,
            buf: Vec::new(),
            whole: Vec::new(),
        }
    }

    /// The configuration of a serialized histogram (its header only).
    pub(crate) fn config_of(&mut self, bytes: &[u8]) -> Result<HistogramConfig, MetricsError> {
        let header = match cookie(bytes)? {
            V2_COOKIE => parse_header(bytes)?,
            _ => {
                self.start_inflating(compressed_stream(bytes)?)?;
                parse_header(&self.buf)?
            }
        };
        Ok(header.config)
    }

    /// Adds the counts of one serialized histogram to `counts` when its
    /// configuration is `counts`'s; an error when it is not a valid V2
    /// histogram (compressed or not).
    pub(crate) fn add(&mut self, bytes: &[u8], counts: &mut Counts) -> Result<Step, MetricsError> {
        match cookie(bytes)? {
            V2_COOKIE => {
                let header = parse_header(bytes)?;
                if header.config != counts.config {
                    return Ok(Step::Other);
                }
                let payload = bytes
                    .get(HEADER_BYTES..)
                    .and_then(|rest| rest.get(..header.payload_len))
                    .ok_or_else(|| invalid("the counts are shorter than their length"))?;
                counts.add_payload(payload).map_err(invalid)?;
            }
            _ => {
                let stream = compressed_stream(bytes)?;
                // Each count takes at most 9 bytes; a longer payload is
                // valid only with zero counts past the end of the array:
                // left to the generic path rather than inflated here.
                let longest = counts.counts.len().saturating_mul(MAX_VARINT_BYTES);
                if let Some(whole) = self.inflate_whole(stream, HEADER_BYTES + longest) {
                    let header = parse_header(whole)?;
                    if header.config != counts.config {
                        return Ok(Step::Other);
                    }
                    let payload = whole[HEADER_BYTES..]
                        .get(..header.payload_len)
                        .ok_or_else(|| invalid("the compressed stream ends too early"))?;
                    counts.add_payload(payload).map_err(invalid)?;
                    return Ok(Step::Added);
                }
                // Not a whole stream that fits: read it as far as needed,
                // as hdrhistogram does.
                let rest = self.start_inflating(stream)?;
                let header = parse_header(&self.buf)?;
                if header.config != counts.config || header.payload_len > longest {
                    return Ok(Step::Other);
                }
                self.buf.resize(HEADER_BYTES + header.payload_len, 0);
                let inflater = self.inflater.as_mut().expect("started above");
                fill(inflater, rest, &mut self.buf, HEADER_BYTES)?;
                counts
                    .add_payload(&self.buf[HEADER_BYTES..])
                    .map_err(invalid)?;
            }
        }
        Ok(Step::Added)
    }

    /// Inflates all of `stream` in one call, straight into a buffer of up to
    /// `max` bytes (at most [`WHOLE_MAX_BYTES`]): the fast way, with no copy
    /// through the inflater's window. `None` unless the stream ends there
    /// with a good checksum (too long, truncated or corrupt: the caller then
    /// reads it the streaming way, which decides).
    fn inflate_whole(&mut self, stream: &[u8], max: usize) -> Option<&[u8]> {
        let max = max.min(WHOLE_MAX_BYTES);
        if self.whole.len() < max {
            // Zeroed pages from the allocator: untouched ones cost nothing.
            self.whole = vec![0; max];
        }
        let inflater = match self.inflater.as_mut() {
            Some(d) => {
                d.reset(true);
                d
            }
            None => self.inflater.insert(Decompress::new(true)),
        };
        match inflater.decompress(stream, &mut self.whole[..max], FlushDecompress::Finish) {
            Ok(Status::StreamEnd) => {
                let len = usize::try_from(inflater.total_out()).ok()?;
                self.whole.get(..len)
            }
            _ => None,
        }
    }

    /// Starts inflating `stream` (with the reused inflater) and fills the
    /// buffer with its first [`HEADER_BYTES`]; returns the input not
    /// consumed yet.
    fn start_inflating<'s>(&mut self, stream: &'s [u8]) -> Result<&'s [u8], MetricsError> {
        let inflater = match self.inflater.as_mut() {
            Some(d) => {
                d.reset(true);
                d
            }
            None => self.inflater.insert(Decompress::new(true)),
        };
        self.buf.clear();
        self.buf.resize(HEADER_BYTES, 0);
        fill(inflater, stream, &mut self.buf, 0)
    }
}

/// Inflates `input` (the rest of the stream) into `out[from..]`, exactly;
/// returns the input not consumed.
fn fill<'s>(
    inflater: &mut Decompress,
    mut input: &'s [u8],
    out: &mut [u8],
    mut from: usize,
) -> Result<&'s [u8], MetricsError> {
    while from < out.len() {
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let status = inflater
            .decompress(input, &mut out[from..], FlushDecompress::None)
            .map_err(|e| invalid(format!("the compressed stream is corrupt: {e}")))?;
        // Both at most the slices' lengths.
        let consumed = (inflater.total_in() - in_before) as usize;
        let produced = (inflater.total_out() - out_before) as usize;
        input = input.get(consumed..).unwrap_or(&[]);
        from += produced;
        if from < out.len() && (status == Status::StreamEnd || (consumed == 0 && produced == 0)) {
            return Err(invalid("the compressed stream ends too early"));
        }
    }
    Ok(input)
}

/// The first 4 bytes, one of the two V2 cookies.
fn cookie(bytes: &[u8]) -> Result<u32, MetricsError> {
    match be_u32(bytes, 0) {
        Some(c @ (V2_COOKIE | V2_COMPRESSED_COOKIE)) => Ok(c),
        Some(_) => Err(invalid("not a V2 cookie")),
        None => Err(invalid("too short for a cookie")),
    }
}

/// The zlib stream of a compressed V2 histogram: at most the length its
/// header gives (what is past it is ignored; a shorter input gives what it
/// has, and fails if the stream needs more).
fn compressed_stream(bytes: &[u8]) -> Result<&[u8], MetricsError> {
    let len = be_u32(bytes, 4).ok_or_else(|| invalid("too short for a length"))? as usize;
    let end = 8usize.saturating_add(len).min(bytes.len());
    Ok(&bytes[8..end])
}

struct Header {
    payload_len: usize,
    config: HistogramConfig,
}

/// Checks the 40-byte V2 header at the start of `bytes`.
fn parse_header(bytes: &[u8]) -> Result<Header, MetricsError> {
    let short = || invalid("too short for a V2 header");
    if be_u32(bytes, 0).ok_or_else(short)? != V2_COOKIE {
        return Err(invalid(
            "the compressed stream does not hold a V2 histogram",
        ));
    }
    let payload_len = be_u32(bytes, 4).ok_or_else(short)? as usize;
    if be_u32(bytes, 8).ok_or_else(short)? != 0 {
        return Err(invalid("a normalizing index offset is not supported"));
    }
    let figures = be_u32(bytes, 12).ok_or_else(short)?;
    let lowest = be_u64(bytes, 16).ok_or_else(short)?;
    let highest = be_u64(bytes, 24).ok_or_else(short)?;
    let ratio = f64::from_bits(be_u64(bytes, 32).ok_or_else(short)?);
    if ratio != 1.0 {
        return Err(invalid(
            "an integer-to-double ratio other than 1 is not supported",
        ));
    }
    let config =
        HistogramConfig::new(lowest, highest, figures).map_err(|e| invalid(e.to_string()))?;
    Ok(Header {
        payload_len,
        config,
    })
}

/// One LEB128 varint of at most 9 bytes (the 9th carries 8 bits) at the
/// start of `bytes`, and its length; `None` when `bytes` ends inside it.
#[inline]
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(MAX_VARINT_BYTES).enumerate() {
        if i == MAX_VARINT_BYTES - 1 {
            return Some((value | (u64::from(b) << 56), MAX_VARINT_BYTES));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((value, i + 1));
        }
    }
    None
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

fn invalid(message: impl Into<String>) -> MetricsError {
    MetricsError::InvalidSerialized {
        message: message.into(),
    }
}
