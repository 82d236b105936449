//! The bounded ring of kept events.
//!
//! Every pushed event gets the next sequence number (from 1, never reused).
//! The ring holds at most `capacity` events and `max_bytes` payload bytes;
//! a push that would pass either bound first drops the oldest events
//! (counted as evicted), so the newest are always kept. Readers hold a
//! cursor (the last sequence number they read, 0 at first) and learn how
//! many events after it were overwritten before they read them.

use std::collections::VecDeque;

use super::ThrottleError;

/// The largest payload of one event (64 KiB); a bigger one is refused with
/// [`ThrottleError::TooLarge`].
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// The most events one read returns.
pub const MAX_READ: usize = 1_000;
/// A read stops before passing this many payload bytes (256 KiB), so one
/// read copies at most 256 KiB (it always returns at least one event when
/// there is one).
pub const MAX_READ_BYTES: usize = 256 * 1024;

/// One formatted trace event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it happened (microseconds, the tracer's clock).
    pub ts_us: i64,
    /// What it is about (a traced process, in the tracer's terms).
    pub key: u64,
    /// Its formatted form.
    pub bytes: Vec<u8>,
}

/// What a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPage<'a> {
    /// Events with their sequence numbers, in order.
    pub events: Vec<(u64, &'a Event)>,
    /// The cursor for the next read: the last sequence number returned, or
    /// past the missed ones when none was returned.
    pub next: u64,
    /// Events after the cursor that were overwritten before this read.
    pub missed: u64,
}

/// A bounded ring of events with sequence numbers.
#[derive(Debug, Clone)]
pub struct Ring {
    events: VecDeque<Event>,
    /// The sequence number of `events[0]` (or of the next push when empty).
    first_seq: u64,
    bytes: usize,
    capacity: usize,
    max_bytes: usize,
    evicted: u64,
}

impl Ring {
    /// An empty ring of `capacity` events (at least 1) and `max_bytes`
    /// payload bytes (at least [`MAX_EVENT_BYTES`]). Memory grows with use.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Ring {
            events: VecDeque::new(),
            first_seq: 1,
            bytes: 0,
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(MAX_EVENT_BYTES),
            evicted: 0,
        }
    }

    /// Appends `event` and returns its sequence number, evicting the oldest
    /// events while over either bound; `TooLarge` (nothing changes) for a
    /// payload over [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, event: Event) -> Result<u64, ThrottleError> {
        check_size(event.bytes.len())?;
        while !self.events.is_empty()
            && (self.events.len() >= self.capacity
                || self.bytes + event.bytes.len() > self.max_bytes)
        {
            self.evict();
        }
        self.bytes += event.bytes.len();
        self.events.push_back(event);
        Ok(self.last_seq())
    }

    fn evict(&mut self) {
        if let Some(old) = self.events.pop_front() {
            self.bytes -= old.bytes.len();
            self.first_seq += 1;
            self.evicted += 1;
        }
    }

    /// Up to `limit` (1..=[`MAX_READ`]) events with sequence numbers after
    /// `after`, in order, stopping early past [`MAX_READ_BYTES`]. A cursor
    /// past the last event returns nothing and keeps the cursor.
    pub fn read(&self, after: u64, limit: usize) -> Result<ReadPage<'_>, ThrottleError> {
        if !(1..=MAX_READ).contains(&limit) {
            return Err(ThrottleError::argument(
                "limit",
                format!("expected an integer in 1..={MAX_READ}, got {limit}"),
            ));
        }
        // Sequence numbers first_seq..next_seq are in the ring; those under
        // first_seq were overwritten.
        let missed = self.first_seq.saturating_sub(after.saturating_add(1));
        let start = after.saturating_add(1).max(self.first_seq);
        let mut events = Vec::new();
        let mut next = after.max(start - 1);
        if start < self.next_seq() {
            let mut bytes = 0usize;
            let from = (start - self.first_seq) as usize;
            for (i, e) in self.events.range(from..).take(limit).enumerate() {
                if i > 0 && bytes + e.bytes.len() > MAX_READ_BYTES {
                    break;
                }
                bytes += e.bytes.len();
                let seq = start + i as u64;
                events.push((seq, e));
                next = seq;
            }
        }
        Ok(ReadPage {
            events,
            next,
            missed,
        })
    }

    /// The sequence number the next push gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }

    /// The oldest sequence number held, if any.
    pub fn first_seq(&self) -> Option<u64> {
        (!self.events.is_empty()).then_some(self.first_seq)
    }

    /// The last sequence number pushed (0 before the first push).
    pub fn last_seq(&self) -> u64 {
        self.next_seq() - 1
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Events overwritten before anyone could be sure to read them.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Events pushed in all.
    pub fn pushed(&self) -> u64 {
        self.last_seq()
    }
}

/// `TooLarge` for a payload over [`MAX_EVENT_BYTES`].
pub fn check_size(bytes: usize) -> Result<(), ThrottleError> {
    if bytes > MAX_EVENT_BYTES {
        Err(ThrottleError::TooLarge {
            bytes,
            limit: MAX_EVENT_BYTES,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(i: u64, len: usize) -> Event {
        Event {
            ts_us: i as i64 * 10,
            key: i,
            bytes: vec![(i % 251) as u8; len],
        }
    }

    fn seqs(p: &ReadPage<'_>) -> Vec<u64> {
        p.events.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn empty_ring() {
        let r = Ring::new(4, MAX_EVENT_BYTES);
        let p = r.read(0, 10).unwrap();
        assert_eq!((p.events.len(), p.next, p.missed), (0, 0, 0));
        assert_eq!((r.first_seq(), r.last_seq(), r.next_seq()), (None, 0, 1));
        assert!(r.is_empty());
    }

    #[test]
    fn sequence_numbers_start_at_one() {
        let mut r = Ring::new(4, MAX_EVENT_BYTES);
        assert_eq!(r.push(ev(1, 3)).unwrap(), 1);
        assert_eq!(r.push(ev(2, 3)).unwrap(), 2);
        let p = r.read(0, 10).unwrap();
        assert_eq!(seqs(&p), [1, 2]);
        assert_eq!(p.events[1].1, &ev(2, 3));
        assert_eq!((p.next, p.missed), (2, 0));
        let p = r.read(2, 10).unwrap();
        assert_eq!((p.events.len(), p.next, p.missed), (0, 2, 0));
        assert_eq!(r.bytes(), 6);
    }

    #[test]
    fn wraps_around_and_reports_missed() {
        let mut r = Ring::new(3, MAX_EVENT_BYTES);
        for i in 1..=7 {
            r.push(ev(i, 1)).unwrap();
        }
        assert_eq!((r.first_seq(), r.last_seq(), r.len()), (Some(5), 7, 3));
        assert_eq!(r.evicted(), 4);
        assert_eq!(r.pushed(), 7);
        // A reader at 0 missed 1..=4.
        let p = r.read(0, 2).unwrap();
        assert_eq!(seqs(&p), [5, 6]);
        assert_eq!((p.next, p.missed), (6, 4));
        assert_eq!(p.events[0].1.key, 5);
        // Its next read misses nothing more.
        let p = r.read(6, 10).unwrap();
        assert_eq!(seqs(&p), [7]);
        assert_eq!((p.next, p.missed), (7, 0));
        // A reader at 3 missed 4 only.
        assert_eq!(r.read(3, 10).unwrap().missed, 1);
        // A cursor from the future: nothing, cursor kept.
        let p = r.read(100, 10).unwrap();
        assert_eq!((p.events.len(), p.next, p.missed), (0, 100, 0));
    }

    #[test]
    fn a_reader_fully_lapped_skips_past_the_missed() {
        let mut r = Ring::new(2, MAX_EVENT_BYTES);
        for i in 1..=5 {
            r.push(ev(i, 1)).unwrap();
        }
        let p = r.read(1, 1).unwrap();
        assert_eq!(seqs(&p), [4]);
        assert_eq!((p.next, p.missed), (4, 2));
    }

    #[test]
    fn byte_cap_evicts_oldest() {
        let mut r = Ring::new(1_000, MAX_EVENT_BYTES);
        let quarter = MAX_EVENT_BYTES / 4;
        for i in 1..=4 {
            r.push(ev(i, quarter)).unwrap();
        }
        assert_eq!((r.len(), r.bytes(), r.evicted()), (4, MAX_EVENT_BYTES, 0));
        r.push(ev(5, 1)).unwrap();
        assert_eq!((r.len(), r.evicted()), (4, 1));
        assert_eq!(r.bytes(), 3 * quarter + 1);
        // A maximal event clears everything else.
        r.push(ev(6, MAX_EVENT_BYTES)).unwrap();
        assert_eq!(
            (r.len(), r.bytes(), r.first_seq()),
            (1, MAX_EVENT_BYTES, Some(6))
        );
        assert_eq!(r.read(0, 10).unwrap().missed, 5);
    }

    #[test]
    fn too_large_is_refused_and_changes_nothing() {
        let mut r = Ring::new(4, MAX_EVENT_BYTES);
        r.push(ev(1, 1)).unwrap();
        let e = r.push(ev(2, MAX_EVENT_BYTES + 1)).unwrap_err();
        assert_eq!(e.code(), "too_large");
        assert_eq!((r.len(), r.last_seq()), (1, 1));
        r.push(ev(3, MAX_EVENT_BYTES)).unwrap();
    }

    #[test]
    fn read_limits() {
        let mut r = Ring::new(2_000, MAX_RING);
        for i in 1..=1_500 {
            r.push(ev(i, 1)).unwrap();
        }
        assert_eq!(r.read(0, 0).unwrap_err().field(), Some("limit"));
        assert_eq!(r.read(0, MAX_READ + 1).unwrap_err().field(), Some("limit"));
        assert_eq!(r.read(0, MAX_READ).unwrap().events.len(), MAX_READ);
    }

    const MAX_RING: usize = 64 * 1024 * 1024;

    #[test]
    fn a_read_stops_at_the_byte_cap() {
        let mut r = Ring::new(100, MAX_RING);
        for i in 1..=40 {
            r.push(ev(i, MAX_EVENT_BYTES)).unwrap();
        }
        let p = r.read(0, 1_000).unwrap();
        assert_eq!(p.events.len(), MAX_READ_BYTES / MAX_EVENT_BYTES);
        assert_eq!(p.next, (MAX_READ_BYTES / MAX_EVENT_BYTES) as u64);
        // Pages stop before the cap, whatever the sizes before.
        let mut r = Ring::new(100, MAX_RING);
        r.push(ev(1, 1)).unwrap();
        r.push(ev(2, MAX_EVENT_BYTES)).unwrap();
        for _ in 0..(MAX_READ_BYTES / MAX_EVENT_BYTES) {
            r.push(ev(3, MAX_EVENT_BYTES)).unwrap();
        }
        let p = r.read(0, 1_000).unwrap();
        assert_eq!(p.events.len(), MAX_READ_BYTES / MAX_EVENT_BYTES);
        assert_eq!(r.read(1, 1).unwrap().events.len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Consecutive reads with the returned cursor never return an event
        /// twice, return them in sequence order, and account for every
        /// event pushed: read + missed + still unread = pushed.
        #[test]
        fn reads_never_repeat_and_lose_nothing_silently(
            capacity in 1usize..50,
            ops in prop::collection::vec((0usize..20, 1usize..30, 0usize..3000), 1..100),
        ) {
            let mut r = Ring::new(capacity, MAX_EVENT_BYTES * 2);
            let (mut cursor, mut read, mut missed, mut last) = (0u64, 0u64, 0u64, 0u64);
            let mut n = 0u64;
            for (pushes, limit, size) in ops {
                for _ in 0..pushes {
                    n += 1;
                    prop_assert_eq!(r.push(ev(n, size)).unwrap(), n);
                }
                prop_assert!(r.len() <= capacity);
                prop_assert!(r.bytes() <= MAX_EVENT_BYTES * 2);
                let p = r.read(cursor, limit).unwrap();
                prop_assert!(p.events.len() <= limit);
                for (seq, e) in &p.events {
                    prop_assert!(*seq > last, "{} after {}", seq, last);
                    prop_assert_eq!(e.key, *seq);
                    last = *seq;
                }
                read += p.events.len() as u64;
                missed += p.missed;
                prop_assert!(p.next >= cursor);
                cursor = p.next;
            }
            prop_assert_eq!(read + missed + (n - cursor), n);
            prop_assert_eq!(r.evicted() + r.len() as u64, n);
        }
    }
}
