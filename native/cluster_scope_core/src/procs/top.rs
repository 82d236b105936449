//! Bounded top-K selection shared by summaries, windows and pages.
//!
//! Candidates are ordered by value descending, then node rank ascending,
//! then key ascending: a total order, so the K kept are the same whatever
//! the order rows are offered in. A max-heap of the K best keeps the worst
//! of them on top: each offer is one comparison, plus O(log K) when it
//! gets in.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A row offered for a top list. `input` and `row` locate it; `aux` is for
/// the caller (a window's before-row index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cand {
    pub value: u64,
    pub node: u32,
    pub key: u64,
    pub input: u32,
    pub row: u32,
    pub aux: u32,
}

impl Ord for Cand {
    /// `Less` is better: higher value, then lower node rank, then lower key.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .value
            .cmp(&self.value)
            .then(self.node.cmp(&other.node))
            .then(self.key.cmp(&other.key))
            .then(self.input.cmp(&other.input))
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The K best candidates offered.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Cand>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    #[inline]
    pub fn offer(&mut self, c: Cand) {
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }

    /// The kept candidates, best first.
    pub fn into_sorted(self) -> Vec<Cand> {
        // Ascending in `Ord` is best first.
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(value: u64, node: u32, key: u64) -> Cand {
        Cand {
            value,
            node,
            key,
            input: 0,
            row: 0,
            aux: 0,
        }
    }

    #[test]
    fn keeps_the_best_in_order() {
        let mut t = TopK::new(3);
        for (v, n, k) in [
            (5, 0, 9),
            (7, 1, 1),
            (7, 0, 2),
            (1, 0, 0),
            (7, 0, 1),
            (6, 0, 0),
        ] {
            t.offer(cand(v, n, k));
        }
        let got: Vec<_> = t
            .into_sorted()
            .iter()
            .map(|c| (c.value, c.node, c.key))
            .collect();
        assert_eq!(got, [(7, 0, 1), (7, 0, 2), (7, 1, 1)]);
        let mut empty = TopK::new(0);
        empty.offer(cand(1, 0, 0));
        assert!(empty.into_sorted().is_empty());
    }
}
