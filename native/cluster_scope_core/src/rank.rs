//! Cluster-wide top-K of the node views (ETS tables, ports and sockets):
//! the merge of per-node ranked lists.
//!
//! Each node ranks its own rows (value descending, then its own key
//! ascending) and sends its best `limit`; the caller merges them here. The
//! order of the merged list is value descending, then list (node) rank
//! ascending, then position in its list ascending: a total order, so the
//! answer does not depend on the order the lists arrive in, and it agrees
//! with every node's own order (a node's rows keep their relative order).
//!
//! The selection is the bounded heap of the process ranking
//! ([`crate::procs`]'s top-K), so both rankings break ties alike.
//!
//! Cost: one pass over every offered value with a heap of `limit` entries,
//! O(n log limit): 100 nodes x 1,000 rows (the most a caller sends) take
//! well under a millisecond; the NIF wrapper runs on a dirty scheduler
//! anyway, as decoding the lists grows with n.

use crate::error::{CoreError, ErrorCode};
use crate::procs::top::{Cand, TopK};

/// The largest `limit` of a merge.
pub const MAX_LIMIT: usize = 1000;
/// The most lists (nodes) merged at once.
pub const MAX_LISTS: usize = 4096;
/// The most values a list may hold.
pub const MAX_PER_LIST: usize = 100_000;

/// A merged page: `(list, position)` of each winner, best first, and
/// whether more rows than `limit` were offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub entries: Vec<(u32, u32)>,
    pub more: bool,
}

/// The best `limit` (1 to [`MAX_LIMIT`]) values of all `lists`, as
/// `(list index, position in the list)`, in the order value descending,
/// list ascending, position ascending. Each list is expected in its node's
/// own order (value descending): a list that is not is still merged
/// correctly by value, its ties broken by position.
pub fn merge_top(lists: &[Vec<u64>], limit: usize) -> Result<Merged, CoreError> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(CoreError::new(
            ErrorCode::InvalidOption,
            format!("limit: is {limit}, must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if lists.len() > MAX_LISTS {
        return Err(CoreError::new(
            ErrorCode::TooLarge,
            format!("lists: {} lists, at most {MAX_LISTS}", lists.len()),
        ));
    }
    let mut top = TopK::new(limit);
    let mut offered = 0usize;
    for (i, list) in lists.iter().enumerate() {
        if list.len() > MAX_PER_LIST {
            return Err(CoreError::new(
                ErrorCode::TooLarge,
                format!("lists[{i}]: {} values, at most {MAX_PER_LIST}", list.len()),
            ));
        }
        for (pos, &value) in list.iter().enumerate() {
            offered += 1;
            top.offer(Cand {
                value,
                node: i as u32,
                key: pos as u64,
                input: 0,
                row: pos as u32,
                aux: 0,
            });
        }
    }
    let entries: Vec<(u32, u32)> = top.into_sorted().iter().map(|c| (c.node, c.row)).collect();
    Ok(Merged {
        more: offered > entries.len(),
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_value_then_list_then_position() {
        let lists = vec![vec![9, 5, 5, 1], vec![10, 5, 2], vec![], vec![5]];
        let m = merge_top(&lists, 5).unwrap();
        assert_eq!(m.entries, [(1, 0), (0, 0), (0, 1), (0, 2), (1, 1)]);
        assert!(m.more);
        let all = merge_top(&lists, 1000).unwrap();
        assert_eq!(all.entries.len(), 8);
        assert!(!all.more);
        assert_eq!(all.entries[5], (3, 0));
        assert!(merge_top(&[], 3).unwrap().entries.is_empty());
    }

    #[test]
    fn refuses_bad_input_naming_the_field() {
        let e = merge_top(&[vec![1]], 0).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidOption);
        assert!(e.detail().starts_with("limit:"));
        assert!(merge_top(&[vec![1]], MAX_LIMIT + 1).is_err());
        let many = vec![Vec::new(); MAX_LISTS + 1];
        assert!(merge_top(&many, 1)
            .unwrap_err()
            .detail()
            .starts_with("lists:"));
        let long = vec![vec![0; MAX_PER_LIST + 1]];
        assert!(merge_top(&long, 1)
            .unwrap_err()
            .detail()
            .starts_with("lists[0]:"));
    }

    /// Property: the merge equals a full sort of every (value, list,
    /// position) triple cut at `limit`, whatever the lists.
    #[test]
    fn equals_a_full_sort_of_the_union() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..200 {
            let nlists = (next() % 8) as usize;
            let lists: Vec<Vec<u64>> = (0..nlists)
                .map(|_| {
                    let n = (next() % 30) as usize;
                    let mut v: Vec<u64> = (0..n).map(|_| next() % 12).collect();
                    v.sort_by(|a, b| b.cmp(a));
                    v
                })
                .collect();
            let limit = 1 + (next() % 40) as usize;
            let mut all: Vec<(u64, u32, u32)> = lists
                .iter()
                .enumerate()
                .flat_map(|(i, l)| {
                    l.iter()
                        .enumerate()
                        .map(move |(p, &v)| (v, i as u32, p as u32))
                })
                .collect();
            let total = all.len();
            all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let want: Vec<(u32, u32)> = all.iter().take(limit).map(|t| (t.1, t.2)).collect();
            let got = merge_top(&lists, limit).unwrap();
            assert_eq!(got.entries, want, "round {round}");
            assert_eq!(got.more, total > limit, "round {round}");
        }
    }
}
