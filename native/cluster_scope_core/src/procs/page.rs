//! Rows of a snapshot in a stable order, a page at a time.
//!
//! The order is the sort metric descending, then key ascending: total, so
//! a cursor `(value, key)` names a place in it that stays meaningful while
//! the caller pages, and a page is "the first `limit` matched rows strictly
//! after the cursor". A cursor's key may also be [`CursorKey::Start`]
//! (before every key of that value: the page starts with the rows of
//! exactly that value) or [`CursorKey::End`] (after every key: the page
//! starts below that value).
//!
//! Cost: one pass over the matched rows with a bounded heap of `limit`
//! entries, O(n log limit); nothing is sorted but the page.

use super::filter::Filter;
use super::snapshot::Snapshot;
use super::top::{Cand, TopK};
use super::{Metric, ProcsError};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;

/// Where a cursor stands among the keys of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKey {
    /// Before every key: rows of exactly this value come next.
    Start,
    /// After this key.
    Key(u64),
    /// After every key: rows of a lower value come next.
    End,
}

/// A place in the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub value: u64,
    pub key: CursorKey,
}

impl Cursor {
    /// Whether a row of `value` and `key` comes strictly after the cursor.
    #[inline]
    pub(crate) fn before(&self, value: u64, key: u64) -> bool {
        value < self.value
            || (value == self.value
                && match self.key {
                    CursorKey::Start => true,
                    CursorKey::Key(k) => key > k,
                    CursorKey::End => false,
                })
    }
}

/// What to page through.
#[derive(Debug, Clone, PartialEq)]
pub struct PageOptions {
    pub filter: Filter,
    pub sort_by: Metric,
    pub limit: usize,
    /// `None`: from the start.
    pub after: Option<Cursor>,
}

impl Default for PageOptions {
    fn default() -> Self {
        PageOptions {
            filter: Filter::default(),
            sort_by: Metric::Memory,
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// One page: row indices in order, and the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub rows: Vec<usize>,
    /// `(value, key)` of the last row, when more matched rows follow.
    pub next: Option<(u64, u64)>,
}

/// The page of `snapshot` described by `opts`; `limit` must be 1 to
/// [`MAX_LIMIT`].
pub fn page(snapshot: &Snapshot, opts: &PageOptions) -> Result<Page, ProcsError> {
    if opts.limit == 0 || opts.limit > MAX_LIMIT {
        return Err(ProcsError::option(
            "limit",
            format!("is {}, must be between 1 and {MAX_LIMIT}", opts.limit),
        ));
    }
    let values = snapshot.metric(opts.sort_by);
    let keys = &snapshot.cols.keys;
    let mut filter = opts.filter.compile(snapshot);
    let mut top = TopK::new(opts.limit);
    let mut eligible = 0usize;
    for i in 0..snapshot.len() {
        let (value, key) = (values[i], keys[i]);
        if let Some(c) = &opts.after {
            if !c.before(value, key) {
                continue;
            }
        }
        if !filter.matches(i) {
            continue;
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
    let rows: Vec<usize> = top.into_sorted().iter().map(|c| c.row as usize).collect();
    let next = match rows.last() {
        Some(&last) if eligible > rows.len() => Some((values[last], keys[last])),
        _ => None,
    };
    Ok(Page { rows, next })
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::tests::text_row;
    use super::super::ProcType;
    use super::*;

    fn snap() -> Snapshot {
        let mut s = Snapshot::new();
        // key, memory
        let data = [(5, 10), (3, 30), (9, 10), (1, 20), (7, 10), (2, 0), (8, 30)];
        let rows: Vec<_> = data
            .iter()
            .map(|&(k, m)| {
                let app = if k % 2 == 0 { "even" } else { "odd" };
                text_row(&mut s, k, m, 0, 0, None, "m:f/0", app, ProcType::Plain)
            })
            .collect();
        s.push(&rows).unwrap();
        s
    }

    fn keys(s: &Snapshot, p: &Page) -> Vec<u64> {
        p.rows.iter().map(|&i| s.key(i)).collect()
    }

    #[test]
    fn pages_walk_the_whole_order_once() {
        let s = snap();
        let mut opts = PageOptions {
            limit: 3,
            ..PageOptions::default()
        };
        let mut all = Vec::new();
        loop {
            let p = page(&s, &opts).unwrap();
            all.extend(keys(&s, &p));
            match p.next {
                Some((value, key)) => {
                    opts.after = Some(Cursor {
                        value,
                        key: CursorKey::Key(key),
                    })
                }
                None => break,
            }
        }
        assert_eq!(all, [3, 8, 1, 5, 7, 9, 2]);
        // An exact fit has no next page.
        let p = page(
            &s,
            &PageOptions {
                limit: 7,
                ..PageOptions::default()
            },
        )
        .unwrap();
        assert_eq!(p.next, None);
        let p = page(
            &s,
            &PageOptions {
                limit: 6,
                ..PageOptions::default()
            },
        )
        .unwrap();
        assert_eq!(p.next, Some((10, 9)));
    }

    #[test]
    fn start_and_end_cursors() {
        let s = snap();
        let at = |key| PageOptions {
            limit: 10,
            after: Some(Cursor { value: 10, key }),
            ..PageOptions::default()
        };
        assert_eq!(
            keys(&s, &page(&s, &at(CursorKey::Start)).unwrap()),
            [5, 7, 9, 2]
        );
        assert_eq!(keys(&s, &page(&s, &at(CursorKey::End)).unwrap()), [2]);
        assert_eq!(
            keys(&s, &page(&s, &at(CursorKey::Key(5))).unwrap()),
            [7, 9, 2]
        );
    }

    #[test]
    fn filter_and_limits() {
        let s = snap();
        let opts = PageOptions {
            filter: Filter {
                application: Some("even".into()),
                ..Filter::default()
            },
            ..PageOptions::default()
        };
        assert_eq!(keys(&s, &page(&s, &opts).unwrap()), [8, 2]);
        for limit in [0, MAX_LIMIT + 1] {
            let e = page(
                &s,
                &PageOptions {
                    limit,
                    ..PageOptions::default()
                },
            )
            .unwrap_err();
            assert_eq!(e.code(), "invalid_option");
        }
        let empty = page(&Snapshot::new(), &PageOptions::default()).unwrap();
        assert!(empty.rows.is_empty() && empty.next.is_none());
    }
}
