//! One number of every process: what a top-K by one key needs, and no more.
//!
//! A [`Column`] holds `(key, value)` for each process of a node, filled in
//! chunks by a walk that reads only that number of each process (one
//! `process_info/2` item), 16 bytes a process against a [`Snapshot`]'s 81
//! plus dictionary. Its pages ([`Column::page`]) follow exactly the order
//! and the cursors of [`page()`](super::page()): value descending, then key
//! ascending, strictly after an optional [`Cursor`], with an optional lower
//! bound on the value. The caller then reads the details of the few
//! processes of the page.
//!
//! Cost: a push is O(chunk); a page is one pass with a bounded heap of
//! `limit` entries, O(n log limit) (about 3 ms for 1,000,000 entries).
//!
//! [`Snapshot`]: super::Snapshot

use super::page::Cursor;
use super::snapshot::MAX_ROWS;
use super::top::{Cand, TopK};
use super::ProcsError;

/// `(key, value)` pairs of one number of every process.
#[derive(Debug, Clone, Default)]
pub struct Column {
    keys: Vec<u64>,
    values: Vec<u64>,
}

/// A page of a column: `(value, key)` best first, and whether more entries
/// follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPage {
    pub entries: Vec<(u64, u64)>,
    pub more: bool,
}

impl Column {
    /// An empty column.
    pub fn new() -> Self {
        Column::default()
    }

    /// Appends `keys[i]` with `values[i]` for each `i` whose value is
    /// `Some` (a `None` is a process that was gone when read). Refuses
    /// slices of different lengths and a push past [`MAX_ROWS`], appending
    /// nothing.
    pub fn push(&mut self, keys: &[u64], values: &[Option<u64>]) -> Result<(), ProcsError> {
        if keys.len() != values.len() {
            return Err(ProcsError::argument(
                "values",
                format!(
                    "has {} entries for {} pids: one value per pid",
                    values.len(),
                    keys.len()
                ),
            ));
        }
        if self.keys.len() + keys.len() > MAX_ROWS {
            return Err(ProcsError::TooManyRows { limit: MAX_ROWS });
        }
        for (&k, v) in keys.iter().zip(values) {
            if let Some(v) = *v {
                self.keys.push(k);
                self.values.push(v);
            }
        }
        Ok(())
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes held (capacity of both vectors).
    pub fn heap_bytes(&self) -> usize {
        (self.keys.capacity() + self.values.capacity()) * std::mem::size_of::<u64>()
    }

    /// The first `limit` (1 to [`MAX_LIMIT`](super::MAX_LIMIT)) entries of
    /// value at least `min`, strictly after `after`, in the order value
    /// descending then key ascending.
    pub fn page(
        &self,
        limit: usize,
        min: Option<u64>,
        after: Option<Cursor>,
    ) -> Result<ColumnPage, ProcsError> {
        if limit == 0 || limit > super::MAX_LIMIT {
            return Err(ProcsError::option(
                "limit",
                format!("is {limit}, must be between 1 and {}", super::MAX_LIMIT),
            ));
        }
        let min = min.unwrap_or(0);
        let mut top = TopK::new(limit);
        let mut eligible = 0usize;
        for (i, (&key, &value)) in self.keys.iter().zip(&self.values).enumerate() {
            if value < min {
                continue;
            }
            if let Some(c) = &after {
                if !c.before(value, key) {
                    continue;
                }
            }
            eligible += 1;
            top.offer(Cand {
                value,
                node: 0,
                key,
                input: 0,
                row: i as u32,
                aux: 0,
            });
        }
        let entries: Vec<(u64, u64)> = top.into_sorted().iter().map(|c| (c.value, c.key)).collect();
        Ok(ColumnPage {
            more: eligible > entries.len(),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::page::CursorKey;
    use super::*;

    fn col(data: &[(u64, u64)]) -> Column {
        let mut c = Column::new();
        let keys: Vec<u64> = data.iter().map(|d| d.0).collect();
        let values: Vec<Option<u64>> = data.iter().map(|d| Some(d.1)).collect();
        c.push(&keys, &values).unwrap();
        c
    }

    #[test]
    fn pages_in_value_then_key_order() {
        let c = col(&[(5, 10), (3, 30), (9, 10), (1, 20), (7, 10), (2, 0), (8, 30)]);
        let p = c.page(3, None, None).unwrap();
        assert_eq!(p.entries, [(30, 3), (30, 8), (20, 1)]);
        assert!(p.more);
        let after = Cursor {
            value: 20,
            key: CursorKey::Key(1),
        };
        let p = c.page(3, None, Some(after)).unwrap();
        assert_eq!(p.entries, [(10, 5), (10, 7), (10, 9)]);
        assert!(p.more);
        let after = Cursor {
            value: 10,
            key: CursorKey::Key(9),
        };
        let p = c.page(3, None, Some(after)).unwrap();
        assert_eq!(p.entries, [(0, 2)]);
        assert!(!p.more);
        let p = c.page(10, Some(10), None).unwrap();
        assert_eq!(p.entries.len(), 6);
        assert!(!p.more);
        let end = Cursor {
            value: 30,
            key: CursorKey::End,
        };
        assert_eq!(c.page(1, None, Some(end)).unwrap().entries, [(20, 1)]);
        let start = Cursor {
            value: 10,
            key: CursorKey::Start,
        };
        assert_eq!(c.page(1, None, Some(start)).unwrap().entries, [(10, 5)]);
    }

    #[test]
    fn skips_gone_processes_and_refuses_bad_input() {
        let mut c = Column::new();
        c.push(&[1, 2, 3], &[Some(4), None, Some(6)]).unwrap();
        assert_eq!(c.len(), 2);
        assert!(!c.is_empty());
        assert!(c.heap_bytes() >= 32);
        let e = c.push(&[1], &[]).unwrap_err();
        assert_eq!(e.code(), "invalid_argument");
        assert_eq!(c.page(0, None, None).unwrap_err().code(), "invalid_option");
        assert_eq!(
            c.page(1001, None, None).unwrap_err().code(),
            "invalid_option"
        );
        assert!(Column::new()
            .page(5, None, None)
            .unwrap()
            .entries
            .is_empty());
    }

    /// Every page sequence equals a full sort of the same entries.
    #[test]
    fn paging_through_equals_a_full_sort() {
        let mut state = 0x1234_5678_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20 {
            let n = 1 + (next() % 500) as usize;
            let data: Vec<(u64, u64)> = (0..n).map(|i| (i as u64 * 7 + 1, next() % 40)).collect();
            let c = col(&data);
            let mut sorted: Vec<(u64, u64)> = data.iter().map(|&(k, v)| (v, k)).collect();
            sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let limit = 1 + round % 17;
            let mut got = Vec::new();
            let mut after = None;
            loop {
                let p = c.page(limit, None, after).unwrap();
                got.extend_from_slice(&p.entries);
                if !p.more {
                    break;
                }
                let &(value, key) = p.entries.last().unwrap();
                after = Some(Cursor {
                    value,
                    key: CursorKey::Key(key),
                });
            }
            assert_eq!(got, sorted, "round {round}");
        }
    }
}
