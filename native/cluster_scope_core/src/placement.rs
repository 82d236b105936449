//! Placement of a sandbox's processes on nodes: pure decisions from the
//! nodes' figures, the same code for a real cluster and a simulated one.
//!
//! A call places `count` processes on `nodes` (indices into the slice the
//! caller passes, so nothing here knows a node's name):
//!
//! * [`Strategy::RoundRobin`] - process `i` on node `(offset + i) % n`;
//! * [`Strategy::Spread`] - each process on the node with the fewest
//!   processes so far (its `current` ones plus the ones placed by this call),
//!   ties to the lower index: with equal `current` the counts differ by at
//!   most one;
//! * [`Strategy::Pinned`] - the caller's nodes, in their order, strictly
//!   round robin from index 0 (the caller pinned the list; nothing is skipped);
//! * [`Strategy::LeastLoaded`] - each process on the node with the lowest
//!   score `load + weight * (current + placed)`, ties to the lower index:
//!   `load` is the node's load figure (from the health data, e.g. run queue
//!   per scheduler) and `weight` the load one process is counted as.
//!
//! Failover and migration use the same call: the lost (or moved) processes
//! are placed on the remaining nodes with their `current` counts.
//!
//! Cost: O(count) for round robin and pinned, O(count * log n) for spread and
//! least loaded (a binary heap); 100,000 processes on 100 nodes take about
//! 3 ms, which is why the NIF has a dirty twin the Elixir caller picks above
//! 10,000 processes.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;

use crate::error::ErrorCode;

/// The most processes one call places.
pub const MAX_COUNT: usize = 1_000_000;
/// The most nodes one call places on.
pub const MAX_NODES: usize = 10_000;

/// How processes are spread over nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Process `i` on node `(offset + i) % n`.
    RoundRobin,
    /// Fewest processes first.
    Spread,
    /// The given nodes in order, from the first.
    Pinned,
    /// Lowest `load + weight * processes` first.
    LeastLoaded,
}

impl Strategy {
    /// The strategy named `name` (`round_robin`, `spread`, `pinned`,
    /// `least_loaded`).
    pub fn parse(name: &str) -> Result<Strategy, PlacementError> {
        match name {
            "round_robin" => Ok(Strategy::RoundRobin),
            "spread" => Ok(Strategy::Spread),
            "pinned" => Ok(Strategy::Pinned),
            "least_loaded" => Ok(Strategy::LeastLoaded),
            other => Err(PlacementError::UnknownStrategy(
                other.chars().take(64).collect(),
            )),
        }
    }
}

/// A node's figures as the placement sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeLoad {
    /// The node's load figure (>= 0, finite).
    pub load: f64,
    /// The processes of this sandbox already on the node.
    pub current: u64,
}

/// Why a placement was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum PlacementError {
    /// `strategy` is not one of the four.
    UnknownStrategy(String),
    /// No node to place on.
    NoNodes,
    /// More nodes than [`MAX_NODES`].
    TooManyNodes(usize),
    /// More processes than [`MAX_COUNT`].
    TooManyProcesses(usize),
    /// `nodes[i].load` is negative or not finite.
    BadLoad(usize),
    /// `weight` is negative or not finite.
    BadWeight,
}

impl PlacementError {
    /// The stable code of the error.
    pub fn code(&self) -> ErrorCode {
        match self {
            PlacementError::UnknownStrategy(_) => ErrorCode::InvalidOption,
            PlacementError::NoNodes => ErrorCode::Empty,
            PlacementError::TooManyNodes(_) | PlacementError::TooManyProcesses(_) => {
                ErrorCode::TooLarge
            }
            PlacementError::BadLoad(_) | PlacementError::BadWeight => ErrorCode::InvalidArgument,
        }
    }
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementError::UnknownStrategy(s) => write!(
                f,
                "strategy: unknown strategy {s:?} (round_robin, spread, pinned, least_loaded)"
            ),
            PlacementError::NoNodes => write!(f, "nodes: no node to place on"),
            PlacementError::TooManyNodes(n) => {
                write!(f, "nodes: {n} nodes, at most {MAX_NODES}")
            }
            PlacementError::TooManyProcesses(n) => {
                write!(f, "count: {n} processes, at most {MAX_COUNT}")
            }
            PlacementError::BadLoad(i) => {
                write!(f, "nodes[{i}].load: expected a finite number >= 0")
            }
            PlacementError::BadWeight => write!(f, "weight: expected a finite number >= 0"),
        }
    }
}

impl std::error::Error for PlacementError {}

/// A heap entry: lowest score first, then lowest index.
#[derive(PartialEq)]
struct Entry {
    score: f64,
    index: usize,
}

impl Eq for Entry {}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse both keys.
        other
            .score
            .partial_cmp(&self.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Places `count` processes on `nodes` with `strategy`; returns the node
/// index of each process, in order. `offset` shifts round robin's start,
/// `weight` is the load of one process for least loaded.
pub fn place(
    strategy: Strategy,
    count: usize,
    nodes: &[NodeLoad],
    offset: usize,
    weight: f64,
) -> Result<Vec<usize>, PlacementError> {
    if nodes.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    if nodes.len() > MAX_NODES {
        return Err(PlacementError::TooManyNodes(nodes.len()));
    }
    if count > MAX_COUNT {
        return Err(PlacementError::TooManyProcesses(count));
    }
    if let Some(i) = nodes
        .iter()
        .position(|n| !n.load.is_finite() || n.load < 0.0)
    {
        return Err(PlacementError::BadLoad(i));
    }
    if !weight.is_finite() || weight < 0.0 {
        return Err(PlacementError::BadWeight);
    }
    let n = nodes.len();
    Ok(match strategy {
        Strategy::RoundRobin => (0..count).map(|i| (offset % n + i) % n).collect(),
        Strategy::Pinned => (0..count).map(|i| i % n).collect(),
        Strategy::Spread => greedy(count, nodes, |node, placed| (node.current + placed) as f64),
        Strategy::LeastLoaded => greedy(count, nodes, |node, placed| {
            node.load + weight * (node.current + placed) as f64
        }),
    })
}

fn greedy(count: usize, nodes: &[NodeLoad], score: impl Fn(&NodeLoad, u64) -> f64) -> Vec<usize> {
    let mut placed = vec![0u64; nodes.len()];
    let mut heap: BinaryHeap<Entry> = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| Entry {
            score: score(node, 0),
            index,
        })
        .collect();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let top = heap.pop().expect("heap holds every node");
        out.push(top.index);
        placed[top.index] += 1;
        heap.push(Entry {
            score: score(&nodes[top.index], placed[top.index]),
            index: top.index,
        });
    }
    out
}

/// How many of `placement`'s processes each of `n` nodes got.
pub fn counts(placement: &[usize], n: usize) -> Vec<u64> {
    let mut c = vec![0u64; n];
    for &i in placement {
        if i < n {
            c[i] += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    fn idle(n: usize) -> Vec<NodeLoad> {
        vec![
            NodeLoad {
                load: 0.0,
                current: 0
            };
            n
        ]
    }

    #[test]
    fn round_robin_cycles_from_offset() {
        let p = place(Strategy::RoundRobin, 5, &idle(3), 1, 0.0).unwrap();
        assert_eq!(p, vec![1, 2, 0, 1, 2]);
    }

    #[test]
    fn pinned_follows_the_given_order_from_the_first() {
        let p = place(Strategy::Pinned, 4, &idle(2), 7, 0.0).unwrap();
        assert_eq!(p, vec![0, 1, 0, 1]);
    }

    #[test]
    fn spread_fills_the_emptiest_nodes_first() {
        let nodes = vec![
            NodeLoad {
                load: 0.0,
                current: 3,
            },
            NodeLoad {
                load: 0.0,
                current: 0,
            },
            NodeLoad {
                load: 0.0,
                current: 1,
            },
        ];
        let p = place(Strategy::Spread, 5, &nodes, 0, 0.0).unwrap();
        // Totals 3/0/1 become 3/3/3: node 1 takes three, node 2 two.
        assert_eq!(counts(&p, 3), vec![0, 3, 2]);
    }

    #[test]
    fn least_loaded_avoids_the_busy_node() {
        let nodes = vec![
            NodeLoad {
                load: 5.0,
                current: 0,
            },
            NodeLoad {
                load: 0.0,
                current: 0,
            },
            NodeLoad {
                load: 0.5,
                current: 0,
            },
        ];
        let p = place(Strategy::LeastLoaded, 10, &nodes, 0, 0.1).unwrap();
        let c = counts(&p, 3);
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > c[2], "{c:?}");
        assert_eq!(c.iter().sum::<u64>(), 10);
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(
            place(Strategy::Spread, 1, &[], 0, 0.0).unwrap_err(),
            PlacementError::NoNodes
        );
        let bad = vec![NodeLoad {
            load: f64::NAN,
            current: 0,
        }];
        let e = place(Strategy::LeastLoaded, 1, &bad, 0, 1.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "nodes[0].load: expected a finite number >= 0"
        );
        assert_eq!(e.code(), "invalid_argument");
        let e = Strategy::parse("random").unwrap_err();
        assert!(e.to_string().starts_with("strategy:"));
        assert_eq!(e.code(), "invalid_option");
        assert_eq!(
            place(Strategy::Spread, 1, &idle(1), 0, -1.0).unwrap_err(),
            PlacementError::BadWeight
        );
        assert_eq!(
            place(Strategy::Spread, MAX_COUNT + 1, &idle(1), 0, 0.0)
                .unwrap_err()
                .code(),
            "too_large"
        );
    }

    #[test]
    fn names_parse() {
        for (s, st) in [
            ("round_robin", Strategy::RoundRobin),
            ("spread", Strategy::Spread),
            ("pinned", Strategy::Pinned),
            ("least_loaded", Strategy::LeastLoaded),
        ] {
            assert_eq!(Strategy::parse(s).unwrap(), st);
        }
    }

    proptest! {
        #[test]
        fn every_process_is_placed_on_a_given_node(
            strategy in 0usize..4,
            count in 0usize..500,
            loads in proptest::collection::vec((0.0f64..10.0, 0u64..50), 1..20),
            offset in 0usize..100,
            weight in 0.0f64..2.0,
        ) {
            let st = [Strategy::RoundRobin, Strategy::Spread, Strategy::Pinned, Strategy::LeastLoaded][strategy];
            let nodes: Vec<NodeLoad> = loads.iter().map(|&(load, current)| NodeLoad { load, current }).collect();
            let p = place(st, count, &nodes, offset, weight).unwrap();
            prop_assert_eq!(p.len(), count);
            prop_assert!(p.iter().all(|&i| i < nodes.len()));
        }

        #[test]
        fn spread_and_round_robin_balance_within_one(
            count in 0usize..500,
            n in 1usize..20,
            offset in 0usize..100,
        ) {
            for st in [Strategy::RoundRobin, Strategy::Spread, Strategy::Pinned] {
                let c = counts(&place(st, count, &idle(n), offset, 0.0).unwrap(), n);
                let max = *c.iter().max().unwrap();
                let min = *c.iter().min().unwrap();
                prop_assert!(max - min <= 1, "{:?} {:?}", st, c);
            }
        }

        #[test]
        fn spread_levels_existing_counts(
            count in 0usize..300,
            current in proptest::collection::vec(0u64..30, 1..10),
        ) {
            let nodes: Vec<NodeLoad> = current.iter().map(|&c| NodeLoad { load: 0.0, current: c }).collect();
            let c = counts(&place(Strategy::Spread, count, &nodes, 0, 0.0).unwrap(), nodes.len());
            let totals: Vec<u64> = c.iter().zip(&current).map(|(a, b)| a + b).collect();
            // A node that got a process ends at most one above the lowest total.
            let min = *totals.iter().min().unwrap();
            for (i, &got) in c.iter().enumerate() {
                if got > 0 {
                    prop_assert!(totals[i] <= min + 1, "{:?} {:?}", current, totals);
                }
            }
        }

        #[test]
        fn least_loaded_with_equal_loads_is_spread(
            count in 0usize..300,
            n in 1usize..10,
            load in 0.0f64..5.0,
        ) {
            let nodes = vec![NodeLoad { load, current: 0 }; n];
            let a = place(Strategy::LeastLoaded, count, &nodes, 0, 0.5).unwrap();
            let b = place(Strategy::Spread, count, &nodes, 0, 0.5).unwrap();
            prop_assert_eq!(counts(&a, n), counts(&b, n));
        }
    }
}
