//! A cursor over process identifiers, handed out in chunks.
//!
//! A collector walking every process of a node asks for the list once
//! (`Process.list/0`), stores it here and drops it, then takes
//! [`MAX_PIDS_NEXT`] identifiers or fewer at a time: its heap never holds
//! more than one chunk. The identifiers are opaque 64-bit words (the NIF
//! layer stores the raw term of each local pid).

use super::ProcsError;

/// The most identifiers one [`PidCursor::next_chunk`] call returns.
pub const MAX_PIDS_NEXT: usize = 5000;

/// Identifiers and how many have been handed out.
#[derive(Debug, Clone, Default)]
pub struct PidCursor {
    words: Vec<u64>,
    pos: usize,
}

impl PidCursor {
    /// A cursor at the start of `words`.
    pub fn new(words: Vec<u64>) -> Self {
        PidCursor { words, pos: 0 }
    }

    /// The next `n` identifiers (fewer at the end, none once exhausted).
    /// `n` must be 1 to [`MAX_PIDS_NEXT`].
    pub fn next_chunk(&mut self, n: usize) -> Result<&[u64], ProcsError> {
        if n == 0 || n > MAX_PIDS_NEXT {
            return Err(ProcsError::argument(
                "n",
                format!("is {n}, must be between 1 and {MAX_PIDS_NEXT}"),
            ));
        }
        let start = self.pos;
        let end = start.saturating_add(n).min(self.words.len());
        self.pos = end;
        Ok(&self.words[start..end])
    }

    /// How many identifiers are left.
    pub fn remaining(&self) -> usize {
        self.words.len() - self.pos
    }

    /// How many identifiers the cursor was made with.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether it was made with none.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_chunks_until_exhausted() {
        let mut c = PidCursor::new((0..12).collect());
        assert_eq!(c.len(), 12);
        assert_eq!(c.next_chunk(5).unwrap(), &[0, 1, 2, 3, 4]);
        assert_eq!(c.next_chunk(5).unwrap(), &[5, 6, 7, 8, 9]);
        assert_eq!(c.remaining(), 2);
        assert_eq!(c.next_chunk(5).unwrap(), &[10, 11]);
        assert!(c.next_chunk(5).unwrap().is_empty());
        assert!(c.next_chunk(MAX_PIDS_NEXT).unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_sizes() {
        let mut c = PidCursor::new(vec![1]);
        assert_eq!(c.next_chunk(0).unwrap_err().code(), "invalid_argument");
        assert!(c.next_chunk(MAX_PIDS_NEXT + 1).is_err());
        assert!(PidCursor::default().is_empty());
    }
}
