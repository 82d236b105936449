//! Classification of a cluster's connectivity from one node's point of view.
//!
//! The caller (this node, `self_index`) gathers an [`Observation`]: for every
//! pair of nodes what the first says of the second (`reach[i][j]`, from i's
//! failure detector: its own row from its own detectors, other rows from
//! views the other nodes shared recently, a whole row [`Reach::Unknown`] when
//! there is no recent view from that node), plus what the Erlang
//! distribution says of this node's own connections (`connected`, `down`,
//! `net_loss`). [`classify`] says what that picture means
//! ([`Classification`]); [`heals`] says which links came back between two
//! pictures.
//!
//! # Rules
//!
//! The diagonal (`reach[i][i]`) and this node's own entries of `connected`,
//! `down` and `net_loss` are ignored. "Reports on j" means a row `i ≠ j`
//! whose entry for j is not `Unknown`.
//!
//! **Links.** Two nodes `i ≠ j` are *linked* when neither says the other is
//! `Unreachable` and at least one says the other is `Reachable`. `Unknown`
//! is the absence of a report: it is no evidence of a cut, and no evidence
//! of reachability either. So a row we do not have never breaks a link that
//! the other side reports (`Reachable` one way, `Unknown` the other is a
//! link), but two nodes of which nothing is known are not linked by default.
//!
//! **Components** are the connected components of the links (transitively:
//! a and b are in one component when a chain of links joins them, so a
//! one-way or a cut pair inside a mesh leaves it whole). One refinement
//! covers the far side of a partition, whose rows are normally unknown: among
//! the *cut-off* nodes (live nodes, see below, outside this node's
//! component), two nodes of which both directions are `Unknown` are joined
//! as well; nothing known separates them, and a partition's far side is
//! usually one group. Components are listed biggest first, ties by lowest
//! node index, each sorted.
//!
//! **Node states**, for every node `j` but this one:
//!
//! * *down*: `down[j]` (Erlang reported nodedown: the connection closed) and
//!   no node of this node's component reports j `Reachable`. A crashed node,
//!   or one whose connection the kernel or the net tick closed.
//! * *frozen*: not down, `connected[j]`, not `net_loss[j]`, and every node
//!   that reports on j says `Unreachable` (at least one does). The node is
//!   silent while its TCP connection is up and acknowledges data: a stopped
//!   or wedged VM (SIGSTOP, a long GC, a stuck scheduler).
//! * *unobserved*: nobody reports on j and j reports on nobody: there is no
//!   evidence about it at all (typically a node that just joined).
//! * otherwise *live*. A silent node with `net_loss[j]` (unacknowledged data
//!   or retransmits on this node's connection to it) is live: it is cut off
//!   by the network, not frozen. The first seconds of a network cut look
//!   exactly like a frozen node from the outside; `net_loss` is what tells
//!   them apart.
//!
//! **Anomalies**, each reported in its own list:
//!
//! * `NodeDown`: a down node. `Frozen`: a frozen node.
//! * `Split`: a live node outside this node's component, that is, two or
//!   more components hold live nodes. Components made only of down, frozen
//!   or unobserved nodes are explained by those states and make no split.
//! * `OneWay`: `(a, b)` with `reach[a][b] == Unreachable` and `reach[b][a]
//!   == Reachable` (a does not hear b, b still hears a), neither down nor
//!   frozen.
//! * `Indirect`: `(a, b, via)` where a and b are in the same component but
//!   cut from each other (both say `Unreachable`, or one does and the other
//!   row is `Unknown`), neither down nor frozen; `via` lists the nodes
//!   linked to both (a single cut link in a mesh: traffic could go through
//!   any of them). `via` is empty when a and b are joined only through a
//!   longer chain.
//!
//! The [`Status`] is `Healthy` when there is no anomaly, the anomaly when
//! there is one kind, `Mixed` when several kinds coexist (all are listed in
//! [`Classification::anomalies`]). Every `Unreachable` report is explained
//! by at least one anomaly, so `Healthy` means no node reports another
//! unreachable and no node is down; `Unknown` entries alone never make a
//! cluster unhealthy.
//!
//! **Side.** With `quorum: Some(q)`, this node is on the `Majority` side when
//! its component has at least q nodes, else `Minority`. Without a quorum,
//! the component is compared with the whole node list: `Majority` when it
//! holds more than half of the nodes, `Tie` at exactly half, `Minority`
//! below. Comparing with the whole list, not with the other components as
//! this node sees them, guarantees that two sides of one partition never
//! both claim the majority, whatever each believes of the other; it also
//! means that a node which has heard from nobody is in the minority, and
//! that a crashed node counts against the quorum until the caller drops it
//! from `nodes`.
//!
//! # Cost
//!
//! The matrix is turned into bit rows (`Reachable` and `Unreachable`, and
//! their transposes through 64 × 64 bit-block transposes); components are
//! found by a breadth-first search over bit rows, and every per-node rule is
//! a few row operations. A classification is O(n² / 64) word operations
//! plus O(n²) to read the matrix once, plus the size of the output, which is
//! bounded: [`MAX_LISTED_PAIRS`] pairs per list, [`MAX_INDIRECT_PAIRS`]
//! indirect pairs with at most [`MAX_WITNESSES`] witnesses each
//! ([`Classification::truncated`] says when a list was cut; the status and
//! the counts always consider everything). A 1,000-node matrix takes about
//! half a millisecond (see `benches/partition.rs`).

use std::collections::HashMap;

use super::bits::{self, BitMatrix};
use super::PartitionError;

/// Largest number of nodes in an [`Observation`] (its matrix then holds 25
/// million entries).
pub const MAX_NODES: usize = 5_000;
/// Largest observation classified on a normal scheduler: decoding the n x n
/// matrix and classifying it took 0.12 ms at 100 nodes, 0.4 ms at 200 and
/// 10 ms at 1,000 (2-core x86-64), so past this the NIF wrappers answer
/// `:use_dirty` and their dirty CPU twins do the work (under 1 ms with room
/// for a slower machine).
pub const NORMAL_SCHEDULER_MAX_NODES: usize = 200;
/// Longest `one_way` and `unreachable_pairs` lists returned.
pub const MAX_LISTED_PAIRS: usize = 10_000;
/// Longest `indirect` list returned.
pub const MAX_INDIRECT_PAIRS: usize = 1_000;
/// Most witnesses listed for one indirect pair.
pub const MAX_WITNESSES: usize = 64;

/// What one node says of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Reach {
    /// No report: no recent view from the observer, or its detector has no
    /// opinion yet.
    #[default]
    Unknown = 0,
    Reachable = 1,
    Unreachable = 2,
}

impl Reach {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Unknown => "unknown",
            Reach::Reachable => "reachable",
            Reach::Unreachable => "unreachable",
        }
    }
}

/// One node's picture of the cluster. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Node names, unique. Index `i` in every other field is `nodes[i]`.
    pub nodes: Vec<String>,
    /// This node's index in `nodes`.
    pub self_index: usize,
    /// `reach[i][j]`: what node i says of node j. n rows of n entries.
    pub reach: Vec<Vec<Reach>>,
    /// Whether this node's distribution (TCP) connection to node j is up.
    pub connected: Vec<bool>,
    /// Whether Erlang reported nodedown for node j (connection closed).
    pub down: Vec<bool>,
    /// Whether this node's TCP connection to node j shows unacknowledged
    /// data or retransmits (the network loses what it sends).
    pub net_loss: Vec<bool>,
    /// A static quorum: this node's side is the majority when its component
    /// has at least this many nodes. `None`: more than half of `nodes`.
    pub quorum: Option<usize>,
}

impl Observation {
    /// A picture where every node reaches every other and every connection
    /// is up: the starting point of tests and benchmarks.
    pub fn fully_reachable(nodes: Vec<String>, self_index: usize) -> Self {
        let n = nodes.len();
        Observation {
            nodes,
            self_index,
            reach: vec![vec![Reach::Reachable; n]; n],
            connected: vec![true; n],
            down: vec![false; n],
            net_loss: vec![false; n],
            quorum: None,
        }
    }

    /// Checks the shape: at least one and at most [`MAX_NODES`] unique
    /// names, `self_index` among them, an n × n matrix, flag lists of n, a
    /// quorum of at least 1. The error names the field (`reach[3]`,
    /// `self_index`, ...).
    pub fn validate(&self) -> Result<(), PartitionError> {
        let n = self.nodes.len();
        if n == 0 {
            return Err(PartitionError::observation(
                "nodes",
                "is empty; it must list at least this node",
            ));
        }
        if n > MAX_NODES {
            return Err(PartitionError::observation(
                "nodes",
                format!("has {n} nodes, over the limit of {MAX_NODES}"),
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
        for (j, name) in self.nodes.iter().enumerate() {
            if let Some(first) = seen.insert(name.as_str(), j) {
                return Err(PartitionError::observation(
                    format!("nodes[{j}]"),
                    format!(
                        "{:?} is listed twice (first at index {first}); names must be unique",
                        shortened(name)
                    ),
                ));
            }
        }
        if self.self_index >= n {
            return Err(PartitionError::observation(
                "self_index",
                format!(
                    "is {}, out of range for {n} nodes (indices 0 to {})",
                    self.self_index,
                    n - 1
                ),
            ));
        }
        if self.reach.len() != n {
            return Err(PartitionError::observation(
                "reach",
                format!("has {} rows, expected {n} (one per node)", self.reach.len()),
            ));
        }
        for (i, row) in self.reach.iter().enumerate() {
            if row.len() != n {
                return Err(PartitionError::observation(
                    format!("reach[{i}]"),
                    format!("has {} entries, expected {n} (one per node)", row.len()),
                ));
            }
        }
        for (field, flags) in [
            ("connected", &self.connected),
            ("down", &self.down),
            ("net_loss", &self.net_loss),
        ] {
            if flags.len() != n {
                return Err(PartitionError::observation(
                    field,
                    format!("has {} entries, expected {n} (one per node)", flags.len()),
                ));
            }
        }
        if self.quorum == Some(0) {
            return Err(PartitionError::observation("quorum", "must be at least 1"));
        }
        Ok(())
    }
}

fn shortened(name: &str) -> &str {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Healthy,
    NodeDown,
    Frozen,
    Split,
    OneWay,
    Indirect,
    /// Several of the anomalies above at once.
    Mixed,
}

impl Status {
    /// Every status, in a stable order.
    pub const ALL: [Status; 7] = [
        Status::Healthy,
        Status::NodeDown,
        Status::Frozen,
        Status::Split,
        Status::OneWay,
        Status::Indirect,
        Status::Mixed,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::NodeDown => "node_down",
            Status::Frozen => "frozen",
            Status::Split => "split",
            Status::OneWay => "one_way",
            Status::Indirect => "indirect",
            Status::Mixed => "mixed",
        }
    }
}

/// Where this node's component stands. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Majority,
    Minority,
    Tie,
}

impl Side {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Majority => "majority",
            Side::Minority => "minority",
            Side::Tie => "tie",
        }
    }
}

/// What an [`Observation`] means. Indices refer to `Observation::nodes`;
/// every list is sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub status: Status,
    /// The anomalies present, in the order `NodeDown`, `Frozen`, `Split`,
    /// `OneWay`, `Indirect`; empty when healthy.
    pub anomalies: Vec<Status>,
    /// A partition of the nodes: groups joined by links, biggest first, ties
    /// by lowest index.
    pub components: Vec<Vec<usize>>,
    /// Index in `components` of this node's component.
    pub self_component: usize,
    pub side: Side,
    pub down: Vec<usize>,
    pub frozen: Vec<usize>,
    /// Nodes there is no evidence about (neither reported on nor
    /// reporting). Not an anomaly.
    pub unobserved: Vec<usize>,
    /// `(a, b)`: a does not hear b, b still hears a.
    pub one_way: Vec<(usize, usize)>,
    /// `(a, b, via)`, `a < b`: a and b are cut from each other and both
    /// linked to every node of `via`.
    pub indirect: Vec<(usize, usize, Vec<usize>)>,
    /// `(a, b)`, `a < b`: at least one of them says the other is
    /// unreachable.
    pub unreachable_pairs: Vec<(usize, usize)>,
    /// How many unreachable pairs there are, listed or not.
    pub unreachable_pair_count: usize,
    /// Whether `one_way`, `indirect` (or a `via` list) or
    /// `unreachable_pairs` was cut at its bound.
    pub truncated: bool,
}

/// The matrix as bit rows: `r` (`Reachable`), `x` (`Unreachable`) and their
/// transposes (`rt` row j: who says j is reachable). The diagonal is clear.
struct Bits {
    r: BitMatrix,
    x: BitMatrix,
    rt: BitMatrix,
    xt: BitMatrix,
}

impl Bits {
    fn new(reach: &[Vec<Reach>]) -> Self {
        let n = reach.len();
        let mut r = BitMatrix::new(n);
        let mut x = BitMatrix::new(n);
        // One byte per entry (the discriminant: 0, 1 or 2), padded to a
        // multiple of 64 with Unknown.
        let mut bytes = vec![0u8; bits::words_for(n) * 64];
        for (i, row) in reach.iter().enumerate() {
            for (byte, &v) in bytes.iter_mut().zip(row) {
                *byte = v as u8;
            }
            let (r_row, x_row) = (r.row_mut(i), x.row_mut(i));
            for ((r_word, x_word), chunk) in r_row.iter_mut().zip(x_row).zip(bytes.chunks_exact(64))
            {
                let (mut rw, mut xw) = (0u64, 0u64);
                for (k, eight) in chunk.chunks_exact(8).enumerate() {
                    let word = u64::from_le_bytes(eight.try_into().unwrap_or([0; 8]));
                    rw |= pack_low_bits(word) << (8 * k);
                    xw |= pack_low_bits(word >> 1) << (8 * k);
                }
                *r_word = rw;
                *x_word = xw;
            }
            r.clear(i, i);
            x.clear(i, i);
        }
        let rt = r.transpose();
        let xt = x.transpose();
        Bits { r, x, rt, xt }
    }

    /// Whether i and j are linked: no `Unreachable` either way, at least one
    /// `Reachable`.
    fn links(&self) -> BitMatrix {
        let n = self.r.n();
        let mut links = BitMatrix::new(n);
        for i in 0..n {
            let (r, rt, x, xt) = (self.r.row(i), self.rt.row(i), self.x.row(i), self.xt.row(i));
            for (k, word) in links.row_mut(i).iter_mut().enumerate() {
                *word = (r[k] | rt[k]) & !(x[k] | xt[k]);
            }
        }
        links
    }
}

/// The lowest bit of each of the 8 bytes of `word`, packed into 8 bits
/// (byte k's bit at bit k). The multiplication moves byte k's bit to bit
/// 56 + k; every other partial product lands on a distinct lower bit, so
/// nothing carries into the top byte.
fn pack_low_bits(word: u64) -> u64 {
    ((word & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Classifies `obs`. See the module documentation for the rules.
pub fn classify(obs: &Observation) -> Result<Classification, PartitionError> {
    obs.validate()?;
    let n = obs.nodes.len();
    let me = obs.self_index;
    let words = bits::words_for(n);
    let b = Bits::new(&obs.reach);
    let links = b.links();

    // This node's component.
    let mut unvisited = bits::full(n);
    let mut queue = Vec::with_capacity(n);
    let mine = search(me, &mut unvisited, &mut queue, |u, next| {
        next.copy_from_slice(links.row(u))
    });
    let mut in_mine = vec![0u64; words];
    for &j in &mine {
        bits::set(&mut in_mine, j);
    }

    // Node states.
    let (mut down, mut frozen, mut unobserved) = (Vec::new(), Vec::new(), Vec::new());
    let mut explained = vec![0u64; words]; // down or frozen
    let mut cut_off = vec![0u64; words]; // live, outside this node's component
    for j in (0..n).filter(|&j| j != me) {
        let (rt, xt) = (b.rt.row(j), b.xt.row(j));
        let heard_in_mine = rt.iter().zip(&in_mine).any(|(a, m)| a & m != 0);
        let silent = bits::any(xt) && !bits::any(rt);
        if obs.down[j] && !heard_in_mine {
            down.push(j);
            bits::set(&mut explained, j);
        } else if !obs.down[j] && obs.connected[j] && !obs.net_loss[j] && silent {
            frozen.push(j);
            bits::set(&mut explained, j);
        } else if !bits::any(rt)
            && !bits::any(xt)
            && !bits::any(b.r.row(j))
            && !bits::any(b.x.row(j))
        {
            unobserved.push(j);
        } else if !bits::get(&in_mine, j) {
            bits::set(&mut cut_off, j);
        }
    }

    // The other components; cut-off nodes that nothing separates are joined.
    let mut components = vec![mine];
    for start in 0..n {
        if !bits::get(&unvisited, start) {
            continue;
        }
        components.push(search(start, &mut unvisited, &mut queue, |u, next| {
            let link = links.row(u);
            if bits::get(&cut_off, u) {
                let (r, x, rt, xt) = (b.r.row(u), b.x.row(u), b.rt.row(u), b.xt.row(u));
                for k in 0..next.len() {
                    let unknown_both_ways = !(r[k] | x[k] | rt[k] | xt[k]);
                    next[k] = link[k] | (unknown_both_ways & cut_off[k]);
                }
            } else {
                next.copy_from_slice(link);
            }
        }));
    }
    // Biggest first, ties by lowest index (components are sorted and
    // disjoint, so their first indices differ).
    components.sort_unstable_by_key(|c| (std::cmp::Reverse(c.len()), c[0]));
    let self_component = components
        .iter()
        .position(|c| c.binary_search(&me).is_ok())
        .unwrap_or(0);

    let size = components[self_component].len();
    let side = match obs.quorum {
        Some(q) if size >= q => Side::Majority,
        Some(_) => Side::Minority,
        None => match (2 * size).cmp(&n) {
            std::cmp::Ordering::Greater => Side::Majority,
            std::cmp::Ordering::Equal => Side::Tie,
            std::cmp::Ordering::Less => Side::Minority,
        },
    };

    let mut truncated = false;

    // One-way pairs: a says b is unreachable, b says a is reachable.
    let mut one_way = Vec::new();
    let mut one_way_count = 0;
    for a in (0..n).filter(|&a| !bits::get(&explained, a)) {
        let (x, rt) = (b.x.row(a), b.rt.row(a));
        for k in 0..words {
            let mut word = x[k] & rt[k] & !explained[k];
            one_way_count += word.count_ones() as usize;
            while word != 0 && one_way.len() < MAX_LISTED_PAIRS {
                one_way.push((a, k * 64 + word.trailing_zeros() as usize));
                word &= word - 1;
            }
        }
    }
    truncated |= one_way.len() < one_way_count;

    // Unreachable pairs, either way.
    let mut unreachable_pairs = Vec::new();
    let mut unreachable_pair_count = 0;
    let mut either = vec![0u64; words];
    for a in 0..n {
        for (k, word) in either.iter_mut().enumerate() {
            *word = b.x.row(a)[k] | b.xt.row(a)[k];
        }
        for j in bits::ones_above(&either, a) {
            unreachable_pair_count += 1;
            if unreachable_pairs.len() < MAX_LISTED_PAIRS {
                unreachable_pairs.push((a, j));
            } else {
                // Count the rest of this row at once.
                unreachable_pair_count += bits::count_above(&either, j);
                break;
            }
        }
    }
    truncated |= unreachable_pairs.len() < unreachable_pair_count;

    // Indirect pairs: cut from each other inside one component.
    let mut indirect = Vec::new();
    let mut indirect_count = 0;
    let mut members = vec![0u64; words];
    let mut cut = vec![0u64; words];
    for component in components.iter().filter(|c| c.len() >= 2) {
        for &j in component {
            bits::set(&mut members, j);
        }
        for (k, word) in members.iter_mut().enumerate() {
            *word &= !explained[k];
        }
        for &a in component.iter().filter(|&&a| !bits::get(&explained, a)) {
            let (r, x, rt, xt) = (b.r.row(a), b.x.row(a), b.rt.row(a), b.xt.row(a));
            for k in 0..words {
                // Unreachable one way, and not Reachable the other way.
                cut[k] = ((x[k] & !rt[k]) | (xt[k] & !r[k])) & members[k];
            }
            for other in bits::ones_above(&cut, a) {
                indirect_count += 1;
                if indirect.len() >= MAX_INDIRECT_PAIRS {
                    indirect_count += bits::count_above(&cut, other);
                    break;
                }
                let (la, lb) = (links.row(a), links.row(other));
                let mut via = Vec::new();
                for k in 0..words {
                    let mut word = la[k] & lb[k];
                    while word != 0 {
                        if via.len() == MAX_WITNESSES {
                            truncated = true;
                            break;
                        }
                        via.push(k * 64 + word.trailing_zeros() as usize);
                        word &= word - 1;
                    }
                }
                indirect.push((a, other, via));
            }
        }
        for &j in component {
            bits::clear(&mut members, j);
        }
    }
    truncated |= indirect.len() < indirect_count;
    indirect.sort_unstable_by_key(|(a, b, _)| (*a, *b));

    let present = [
        (Status::NodeDown, !down.is_empty()),
        (Status::Frozen, !frozen.is_empty()),
        (Status::Split, bits::any(&cut_off)),
        (Status::OneWay, one_way_count > 0),
        (Status::Indirect, indirect_count > 0),
    ];
    let anomalies: Vec<Status> = present
        .iter()
        .filter(|(_, here)| *here)
        .map(|(status, _)| *status)
        .collect();
    let status = match anomalies.as_slice() {
        [] => Status::Healthy,
        [one] => *one,
        _ => Status::Mixed,
    };

    Ok(Classification {
        status,
        anomalies,
        components,
        self_component,
        side,
        down,
        frozen,
        unobserved,
        one_way,
        indirect,
        unreachable_pairs,
        unreachable_pair_count,
        truncated,
    })
}

/// Breadth-first search from `start` over the nodes still set in
/// `unvisited`, whose neighbours are given by `neighbours(u, row)` (which
/// fills `row` with u's neighbour bits). Clears what it visits and returns
/// the component, sorted.
fn search(
    start: usize,
    unvisited: &mut [u64],
    queue: &mut Vec<usize>,
    mut neighbours: impl FnMut(usize, &mut [u64]),
) -> Vec<usize> {
    let mut next = vec![0u64; unvisited.len()];
    queue.clear();
    queue.push(start);
    bits::clear(unvisited, start);
    let mut head = 0;
    while head < queue.len() {
        let u = queue[head];
        head += 1;
        neighbours(u, &mut next);
        for (k, word) in next.iter_mut().enumerate() {
            *word &= unvisited[k];
            unvisited[k] &= !*word;
        }
        queue.extend(bits::ones(&next));
    }
    let mut component = queue.clone();
    component.sort_unstable();
    component
}

/// The links that healed between two pictures: pairs of nodes (by name,
/// since the node lists may differ) that were unreachable in `prev` (either
/// said the other was `Unreachable`) and are linked in `next` (neither says
/// `Unreachable`, at least one says `Reachable`). Nodes missing from either
/// picture are skipped. Each pair is ordered, and the list sorted, by the
/// nodes' indices in `prev`.
///
/// Errors name the field with a `prev.` or `next.` prefix.
pub fn heals(
    prev: &Observation,
    next: &Observation,
) -> Result<Vec<(String, String)>, PartitionError> {
    Ok(heals_indices(prev, next)?
        .into_iter()
        .map(|(a, b)| (prev.nodes[a].clone(), prev.nodes[b].clone()))
        .collect())
}

/// [`heals`] as indices into `prev.nodes` (`a < b`), without copying names.
pub fn heals_indices(
    prev: &Observation,
    next: &Observation,
) -> Result<Vec<(usize, usize)>, PartitionError> {
    for (which, obs) in [("prev", prev), ("next", next)] {
        obs.validate().map_err(|e| match e {
            PartitionError::InvalidObservation { field, message } => {
                PartitionError::observation(format!("{which}.{field}"), message)
            }
            other => other,
        })?;
    }
    let index: HashMap<&str, usize> = next
        .nodes
        .iter()
        .enumerate()
        .map(|(j, name)| (name.as_str(), j))
        .collect();
    let to_next: Vec<Option<usize>> = prev
        .nodes
        .iter()
        .map(|name| index.get(name.as_str()).copied())
        .collect();
    let (before, after) = (Bits::new(&prev.reach), Bits::new(&next.reach));
    let words = bits::words_for(prev.nodes.len());
    let mut cut = vec![0u64; words];
    let mut healed = Vec::new();
    for a in 0..prev.nodes.len() {
        let Some(na) = to_next[a] else { continue };
        for (k, word) in cut.iter_mut().enumerate() {
            *word = before.x.row(a)[k] | before.xt.row(a)[k];
        }
        let (ax, axt, ar, art) = (
            after.x.row(na),
            after.xt.row(na),
            after.r.row(na),
            after.rt.row(na),
        );
        for other in bits::ones_above(&cut, a) {
            let Some(nb) = to_next[other] else { continue };
            let unreachable = bits::get(ax, nb) || bits::get(axt, nb);
            let reachable = bits::get(ar, nb) || bits::get(art, nb);
            if reachable && !unreachable {
                healed.push((a, other));
            }
        }
    }
    Ok(healed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Reach::{Reachable as R, Unknown as U, Unreachable as X};

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i}@127.0.0.{}", i + 1)).collect()
    }

    fn healthy(n: usize, me: usize) -> Observation {
        Observation::fully_reachable(names(n), me)
    }

    /// Row `i` unknown: no recent view from node i.
    fn unknown_row(obs: &mut Observation, i: usize) {
        obs.reach[i] = vec![U; obs.nodes.len()];
    }

    /// Everybody whose row is known says `j` is unreachable.
    fn silent(obs: &mut Observation, j: usize) {
        for i in 0..obs.nodes.len() {
            if i != j && obs.reach[i][j] != U {
                obs.reach[i][j] = X;
            }
        }
        unknown_row(obs, j);
    }

    /// A clean partition into `groups`, seen from `me`: rows of the other
    /// groups unknown, this side says they are unreachable, connections up
    /// with losses.
    fn partition(groups: &[&[usize]], me: usize) -> Observation {
        let n: usize = groups.iter().map(|g| g.len()).sum();
        let mut obs = healthy(n, me);
        let mine = groups.iter().find(|g| g.contains(&me)).unwrap();
        for i in 0..n {
            if !mine.contains(&i) {
                unknown_row(&mut obs, i);
                obs.net_loss[i] = true;
            }
        }
        for &i in mine.iter() {
            for j in 0..n {
                if !mine.contains(&j) {
                    obs.reach[i][j] = X;
                }
            }
        }
        obs
    }

    fn run(obs: &Observation) -> Classification {
        let c = classify(obs).expect("valid observation");
        check_invariants(obs, &c);
        c
    }

    fn check_invariants(obs: &Observation, c: &Classification) {
        let n = obs.nodes.len();
        let mut all: Vec<usize> = c.components.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..n).collect::<Vec<_>>(),
            "components partition the nodes"
        );
        assert!(c.components[c.self_component].contains(&obs.self_index));
        assert!(c
            .components
            .windows(2)
            .all(|w| (w[0].len(), std::cmp::Reverse(w[0][0]))
                >= (w[1].len(), std::cmp::Reverse(w[1][0]))));
        assert!(c
            .components
            .iter()
            .all(|g| g.windows(2).all(|w| w[0] < w[1])));
    }

    // -- validation ---------------------------------------------------------

    #[test]
    fn validation_names_the_field() {
        type Breaks = fn(&mut Observation);
        let cases: [(Breaks, &str); 9] = [
            (|o| o.nodes.clear(), "nodes"),
            (|o| o.nodes[2] = o.nodes[0].clone(), "nodes[2]"),
            (|o| o.self_index = 3, "self_index"),
            (|o| o.reach.truncate(2), "reach"),
            (|o| o.reach[1].push(R), "reach[1]"),
            (|o| o.connected.truncate(2), "connected"),
            (|o| o.down.push(true), "down"),
            (|o| o.net_loss.clear(), "net_loss"),
            (|o| o.quorum = Some(0), "quorum"),
        ];
        for (breaks, field) in cases {
            let mut obs = healthy(3, 0);
            breaks(&mut obs);
            let err = classify(&obs).unwrap_err();
            assert_eq!(err.code(), "invalid_observation");
            assert!(
                matches!(&err, PartitionError::InvalidObservation { field: f, .. } if f == field),
                "{field}: {err}"
            );
        }
        let mut obs = healthy(3, 0);
        obs.nodes = names(MAX_NODES + 1);
        assert!(classify(&obs).unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn one_node_alone_is_healthy_and_the_majority() {
        let c = run(&healthy(1, 0));
        assert_eq!(c.status, Status::Healthy);
        assert_eq!(c.components, vec![vec![0]]);
        assert_eq!(c.side, Side::Majority);
    }

    // -- scenarios ----------------------------------------------------------

    #[test]
    fn healthy_five_nodes() {
        for me in 0..5 {
            let c = run(&healthy(5, me));
            assert_eq!(c.status, Status::Healthy);
            assert!(c.anomalies.is_empty());
            assert_eq!(c.components, vec![vec![0, 1, 2, 3, 4]]);
            assert_eq!(c.self_component, 0);
            assert_eq!(c.side, Side::Majority);
            assert!(c.down.is_empty() && c.frozen.is_empty() && c.unobserved.is_empty());
            assert!(c.one_way.is_empty() && c.indirect.is_empty());
            assert!(c.unreachable_pairs.is_empty());
            assert!(!c.truncated);
        }
    }

    #[test]
    fn the_diagonal_is_ignored() {
        let mut obs = healthy(3, 0);
        for i in 0..3 {
            obs.reach[i][i] = X;
        }
        assert_eq!(run(&obs).status, Status::Healthy);
    }

    #[test]
    fn only_our_own_row_is_enough_when_all_is_well() {
        let mut obs = healthy(4, 1);
        for i in [0, 2, 3] {
            unknown_row(&mut obs, i);
        }
        let c = run(&obs);
        assert_eq!(c.status, Status::Healthy);
        assert_eq!(c.components, vec![vec![0, 1, 2, 3]]);
        assert_eq!(c.side, Side::Majority);
    }

    #[test]
    fn one_node_crashed() {
        let mut obs = healthy(5, 0);
        silent(&mut obs, 3);
        obs.down[3] = true;
        obs.connected[3] = false;
        let c = run(&obs);
        assert_eq!(c.status, Status::NodeDown);
        assert_eq!(c.down, vec![3]);
        assert!(c.frozen.is_empty());
        assert_eq!(c.components, vec![vec![0, 1, 2, 4], vec![3]]);
        assert_eq!(c.side, Side::Majority);
        assert_eq!(c.unreachable_pairs, vec![(0, 3), (1, 3), (2, 3), (3, 4)]);
        assert!(c.indirect.is_empty() && c.one_way.is_empty());
    }

    #[test]
    fn a_down_node_nobody_reports_on_is_still_down() {
        let mut obs = healthy(3, 0);
        unknown_row(&mut obs, 2);
        for i in 0..2 {
            obs.reach[i][2] = U;
        }
        obs.down[2] = true;
        let c = run(&obs);
        assert_eq!(c.status, Status::NodeDown);
        assert_eq!(c.down, vec![2]);
        assert!(c.unobserved.is_empty());
    }

    #[test]
    fn one_node_frozen() {
        let mut obs = healthy(5, 2);
        silent(&mut obs, 4);
        let c = run(&obs);
        assert_eq!(c.status, Status::Frozen);
        assert_eq!(c.frozen, vec![4]);
        assert!(c.down.is_empty());
        assert_eq!(c.components, vec![vec![0, 1, 2, 3], vec![4]]);
        assert_eq!(c.self_component, 0);
        assert_eq!(c.side, Side::Majority);
    }

    #[test]
    fn frozen_seen_through_our_own_row_only() {
        let mut obs = healthy(5, 0);
        for i in 1..5 {
            unknown_row(&mut obs, i);
        }
        obs.reach[0][4] = X;
        let c = run(&obs);
        assert_eq!(c.status, Status::Frozen);
        assert_eq!(c.frozen, vec![4]);
        assert_eq!(c.components, vec![vec![0, 1, 2, 3], vec![4]]);
    }

    #[test]
    fn one_node_cut_off_with_net_loss_is_a_split() {
        let mut obs = healthy(5, 0);
        silent(&mut obs, 4);
        obs.net_loss[4] = true;
        let c = run(&obs);
        assert_eq!(c.status, Status::Split);
        assert!(c.frozen.is_empty() && c.down.is_empty());
        assert_eq!(c.components, vec![vec![0, 1, 2, 3], vec![4]]);
        assert_eq!(c.side, Side::Majority);
        // The same silence without losses is a frozen node.
        obs.net_loss[4] = false;
        assert_eq!(run(&obs).status, Status::Frozen);
    }

    #[test]
    fn the_cut_off_node_sees_itself_in_the_minority() {
        // Node 4's own view: it hears nobody, has nobody's row.
        let mut obs = healthy(5, 4);
        for i in 0..4 {
            unknown_row(&mut obs, i);
            obs.reach[4][i] = X;
            obs.net_loss[i] = true;
        }
        let c = run(&obs);
        assert_eq!(c.status, Status::Split);
        assert_eq!(c.components, vec![vec![0, 1, 2, 3], vec![4]]);
        assert_eq!(c.self_component, 1);
        assert_eq!(c.side, Side::Minority);
    }

    #[test]
    fn clean_two_two_split_from_both_sides() {
        let groups: &[&[usize]] = &[&[0, 1], &[2, 3]];
        for me in 0..4 {
            let c = run(&partition(groups, me));
            assert_eq!(c.status, Status::Split, "from {me}");
            assert_eq!(c.components, vec![vec![0, 1], vec![2, 3]]);
            assert_eq!(c.self_component, me / 2);
            assert_eq!(c.side, Side::Tie);
            assert!(c.indirect.is_empty() && c.one_way.is_empty());
            assert_eq!(c.unreachable_pair_count, 4);
        }
    }

    #[test]
    fn three_two_split_from_the_majority_and_the_minority() {
        let groups: &[&[usize]] = &[&[0, 2, 4], &[1, 3]];
        for me in [0, 2, 4] {
            let c = run(&partition(groups, me));
            assert_eq!(c.status, Status::Split);
            assert_eq!(c.components, vec![vec![0, 2, 4], vec![1, 3]]);
            assert_eq!(c.self_component, 0);
            assert_eq!(c.side, Side::Majority);
        }
        for me in [1, 3] {
            let c = run(&partition(groups, me));
            assert_eq!(c.status, Status::Split);
            assert_eq!(c.components, vec![vec![0, 2, 4], vec![1, 3]]);
            assert_eq!(c.self_component, 1);
            assert_eq!(c.side, Side::Minority);
        }
    }

    #[test]
    fn split_seen_through_our_own_row_only() {
        // Only this node's detectors: the other rows are all unknown.
        let mut obs = partition(&[&[0, 1, 2], &[3, 4]], 0);
        unknown_row(&mut obs, 1);
        unknown_row(&mut obs, 2);
        let c = run(&obs);
        assert_eq!(c.status, Status::Split);
        assert_eq!(c.components, vec![vec![0, 1, 2], vec![3, 4]]);
        assert_eq!(c.side, Side::Majority);
    }

    #[test]
    fn tie_in_a_three_three_split_and_a_two_node_cut() {
        let c = run(&partition(&[&[0, 1, 2], &[3, 4, 5]], 4));
        assert_eq!(c.status, Status::Split);
        assert_eq!(c.components, vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(c.self_component, 1);
        assert_eq!(c.side, Side::Tie);

        let c = run(&partition(&[&[0], &[1]], 0));
        assert_eq!(c.status, Status::Split);
        assert_eq!(c.components, vec![vec![0], vec![1]]);
        assert_eq!(c.side, Side::Tie);
    }

    #[test]
    fn static_quorum() {
        let groups: &[&[usize]] = &[&[0, 1, 2], &[3, 4]];
        let mut majority = partition(groups, 0);
        let mut minority = partition(groups, 3);
        for (q, big, small) in [
            (3, Side::Majority, Side::Minority),
            (2, Side::Majority, Side::Majority),
            (4, Side::Minority, Side::Minority),
            (1, Side::Majority, Side::Majority),
        ] {
            majority.quorum = Some(q);
            minority.quorum = Some(q);
            assert_eq!(run(&majority).side, big, "quorum {q}");
            assert_eq!(run(&minority).side, small, "quorum {q}");
        }
        // A quorum over the node count is allowed: nobody reaches it.
        let mut obs = healthy(3, 0);
        obs.quorum = Some(5);
        assert_eq!(run(&obs).side, Side::Minority);
    }

    #[test]
    fn one_way_in_three_nodes() {
        // 0 does not hear 1; 1 still hears 0; both talk to 2.
        let mut obs = healthy(3, 2);
        obs.reach[0][1] = X;
        let c = run(&obs);
        assert_eq!(c.status, Status::OneWay);
        assert_eq!(c.one_way, vec![(0, 1)]);
        assert_eq!(c.components, vec![vec![0, 1, 2]]);
        assert!(c.indirect.is_empty());
        assert_eq!(c.unreachable_pairs, vec![(0, 1)]);
        assert_eq!(c.side, Side::Majority);
        // The same from each node's point of view.
        for me in 0..3 {
            obs.self_index = me;
            assert_eq!(run(&obs).status, Status::OneWay);
        }
    }

    #[test]
    fn indirect_single_cut_link_in_a_three_node_mesh() {
        let mut obs = healthy(3, 0);
        obs.reach[0][1] = X;
        obs.reach[1][0] = X;
        let c = run(&obs);
        assert_eq!(c.status, Status::Indirect);
        assert_eq!(c.indirect, vec![(0, 1, vec![2])]);
        assert_eq!(c.components, vec![vec![0, 1, 2]]);
        assert!(c.one_way.is_empty());
        assert_eq!(c.side, Side::Majority);

        // Node 0 has no row from 1 (it cannot hear it): still indirect.
        unknown_row(&mut obs, 1);
        obs.reach[1][1] = R;
        let c = run(&obs);
        assert_eq!(c.status, Status::Indirect);
        assert_eq!(c.indirect, vec![(0, 1, vec![2])]);
        assert!(c.down.is_empty() && c.frozen.is_empty());
    }

    #[test]
    fn indirect_when_our_connection_closed_but_others_reach_the_node() {
        let mut obs = healthy(4, 0);
        obs.reach[0][3] = X;
        unknown_row(&mut obs, 3);
        obs.down[3] = true;
        obs.connected[3] = false;
        let c = run(&obs);
        // Nodes 1 and 2 still hear 3: not down, only our link is cut.
        assert_eq!(c.status, Status::Indirect);
        assert!(c.down.is_empty());
        assert_eq!(c.indirect, vec![(0, 3, vec![1, 2])]);
    }

    #[test]
    fn indirect_through_a_longer_chain_lists_no_witness() {
        // Links 0-1, 1-2, 2-3 only; 0 and 3 are cut from each other.
        let mut obs = healthy(4, 0);
        for (a, b) in [(0, 2), (1, 3)] {
            obs.reach[a][b] = U;
            obs.reach[b][a] = U;
        }
        obs.reach[0][3] = X;
        obs.reach[3][0] = X;
        let c = run(&obs);
        assert_eq!(c.status, Status::Indirect);
        assert_eq!(c.indirect, vec![(0, 3, vec![])]);
    }

    #[test]
    fn mixed_anomalies() {
        // Node 5 crashed, node 4 frozen, nodes 1 and 2 cut from each other.
        let mut obs = healthy(6, 0);
        silent(&mut obs, 5);
        obs.down[5] = true;
        silent(&mut obs, 4);
        obs.reach[1][2] = X;
        obs.reach[2][1] = X;
        let c = run(&obs);
        assert_eq!(c.status, Status::Mixed);
        assert_eq!(
            c.anomalies,
            vec![Status::NodeDown, Status::Frozen, Status::Indirect]
        );
        assert_eq!(c.down, vec![5]);
        assert_eq!(c.frozen, vec![4]);
        assert_eq!(c.indirect, vec![(1, 2, vec![0, 3])]);
        assert_eq!(c.components, vec![vec![0, 1, 2, 3], vec![4], vec![5]]);
        assert_eq!(c.side, Side::Majority);
    }

    #[test]
    fn split_with_a_crashed_node_is_mixed() {
        let mut obs = partition(&[&[0, 1, 2], &[3, 4]], 0);
        obs.down[4] = true;
        obs.net_loss[4] = false;
        let c = run(&obs);
        assert_eq!(c.status, Status::Mixed);
        assert_eq!(c.anomalies, vec![Status::NodeDown, Status::Split]);
        assert_eq!(c.down, vec![4]);
        assert_eq!(c.components, vec![vec![0, 1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn after_nodedown_the_far_side_is_down_and_we_know_our_side() {
        // The net tick expired on both sides of a 2-3 cut.
        let mut obs = partition(&[&[0, 1, 2], &[3, 4]], 3);
        for j in 0..3 {
            obs.down[j] = true;
            obs.connected[j] = false;
            obs.net_loss[j] = false;
        }
        let c = run(&obs);
        assert_eq!(c.status, Status::NodeDown);
        assert_eq!(c.down, vec![0, 1, 2]);
        assert_eq!(c.side, Side::Minority);
        assert_eq!(c.components[c.self_component], vec![3, 4]);
    }

    #[test]
    fn two_frozen_nodes_make_no_split() {
        let mut obs = healthy(5, 0);
        silent(&mut obs, 3);
        silent(&mut obs, 4);
        let c = run(&obs);
        assert_eq!(c.status, Status::Frozen);
        assert_eq!(c.frozen, vec![3, 4]);
        assert_eq!(c.components, vec![vec![0, 1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn unobserved_nodes_are_no_anomaly() {
        let mut obs = healthy(4, 0);
        unknown_row(&mut obs, 3);
        for i in 0..4 {
            obs.reach[i][3] = U;
        }
        let c = run(&obs);
        assert_eq!(c.status, Status::Healthy);
        assert_eq!(c.unobserved, vec![3]);
        assert_eq!(c.components, vec![vec![0, 1, 2], vec![3]]);
        assert_eq!(c.side, Side::Majority);
    }

    #[test]
    fn a_node_that_heard_from_nobody_is_in_the_minority() {
        let mut obs = healthy(3, 0);
        for i in 0..3 {
            unknown_row(&mut obs, i);
        }
        let c = run(&obs);
        assert_eq!(c.status, Status::Healthy);
        assert_eq!(c.unobserved, vec![1, 2]);
        assert_eq!(c.side, Side::Minority);
    }

    #[test]
    fn lists_are_bounded() {
        // 300 nodes, 150/150 split with every row known: 22,500 cut pairs.
        let n = 300;
        let mut obs = healthy(n, 0);
        for i in 0..n {
            for j in 0..n {
                if (i < 150) != (j < 150) {
                    obs.reach[i][j] = X;
                }
            }
        }
        let c = run(&obs);
        assert_eq!(c.status, Status::Split);
        assert_eq!(c.side, Side::Tie);
        assert_eq!(c.unreachable_pair_count, 150 * 150);
        assert_eq!(c.unreachable_pairs.len(), MAX_LISTED_PAIRS);
        assert!(c.truncated);
        assert!(c.unreachable_pairs.windows(2).all(|w| w[0] < w[1]));

        // A mesh of 200 where everybody is cut from everybody but node 0:
        // all indirect through 0.
        let n = 200;
        let mut obs = healthy(n, 0);
        for i in 1..n {
            for j in 1..n {
                if i != j {
                    obs.reach[i][j] = X;
                }
            }
        }
        let c = run(&obs);
        assert_eq!(c.status, Status::Indirect);
        assert_eq!(c.indirect.len(), MAX_INDIRECT_PAIRS);
        assert!(c.indirect.iter().all(|(_, _, via)| via == &vec![0]));
        assert!(c.truncated);

        // Many witnesses for one cut link.
        let mut obs = healthy(100, 0);
        obs.reach[0][1] = X;
        obs.reach[1][0] = X;
        let c = run(&obs);
        assert_eq!(c.indirect.len(), 1);
        assert_eq!(c.indirect[0].2, (2..2 + MAX_WITNESSES).collect::<Vec<_>>());
        assert!(c.truncated);
    }

    #[test]
    fn packing_low_bits_of_bytes() {
        assert_eq!(pack_low_bits(0), 0);
        assert_eq!(pack_low_bits(0x0101_0101_0101_0101), 0xFF);
        assert_eq!(pack_low_bits(0x0000_0000_0000_0001), 0b1);
        assert_eq!(pack_low_bits(0x0100_0000_0000_0000), 0b1000_0000);
        // Only the lowest bit of each byte counts.
        assert_eq!(pack_low_bits(0xFE02_0301_0000_0203), 0b0011_0001);
    }

    #[test]
    fn a_row_longer_than_a_word_is_read_whole() {
        // 130 nodes: three words per row, the last one partly used.
        let mut obs = healthy(130, 0);
        obs.reach[0][129] = X;
        obs.reach[129][0] = X;
        obs.reach[64][63] = X;
        let c = run(&obs);
        assert_eq!(c.unreachable_pairs, vec![(0, 129), (63, 64)]);
        assert_eq!(c.one_way, vec![(64, 63)]);
        assert_eq!(c.indirect[0].0, 0);
        assert_eq!(c.indirect[0].1, 129);
    }

    #[test]
    fn names_are_as_str_snake_case() {
        let names: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "healthy",
                "node_down",
                "frozen",
                "split",
                "one_way",
                "indirect",
                "mixed"
            ]
        );
        assert_eq!(
            [Side::Majority, Side::Minority, Side::Tie].map(Side::as_str),
            ["majority", "minority", "tie"]
        );
        assert_eq!(
            [U, R, X].map(Reach::as_str),
            ["unknown", "reachable", "unreachable"]
        );
    }

    // -- heals --------------------------------------------------------------

    #[test]
    fn heals_by_name() {
        let prev = partition(&[&[0, 1, 2], &[3, 4]], 0);
        let mut next = healthy(5, 0);
        // Node 3 is still cut off in `next`.
        silent(&mut next, 3);
        next.net_loss[3] = true;
        let healed = heals(&prev, &next).unwrap();
        let pairs: Vec<(&str, &str)> = healed
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("n0@127.0.0.1", "n4@127.0.0.5"),
                ("n1@127.0.0.2", "n4@127.0.0.5"),
                ("n2@127.0.0.3", "n4@127.0.0.5"),
            ]
        );
    }

    #[test]
    fn heals_follows_names_across_different_node_lists() {
        let mut prev = healthy(3, 0);
        prev.reach[0][2] = X;
        prev.reach[1][2] = X;
        // `next` lists the nodes in another order, with one more and one
        // fewer.
        let mut next = healthy(3, 1);
        next.nodes = vec![
            "n2@127.0.0.3".into(),
            "n0@127.0.0.1".into(),
            "new@127.0.0.9".into(),
        ];
        let healed = heals(&prev, &next).unwrap();
        assert_eq!(
            healed,
            vec![("n0@127.0.0.1".to_string(), "n2@127.0.0.3".to_string())]
        );
        // Nothing heals between identical pictures.
        assert!(heals(&prev, &prev).unwrap().is_empty());
        // A link only half-known in `next` (reachable one way, unknown the
        // other) counts as healed; one still reported unreachable does not.
        let mut half = prev.clone();
        half.reach[0][2] = R;
        half.reach[2][0] = U;
        half.reach[1][2] = X;
        let healed = heals(&prev, &half).unwrap();
        assert_eq!(healed.len(), 1);
    }

    #[test]
    fn heals_names_the_bad_picture() {
        let good = healthy(3, 0);
        let mut bad = healthy(3, 0);
        bad.reach[2].pop();
        let err = heals(&good, &bad).unwrap_err();
        assert!(err.to_string().contains("next.reach[2]"), "{err}");
        let err = heals(&bad, &good).unwrap_err();
        assert!(err.to_string().contains("prev.reach[2]"), "{err}");
    }

    // -- properties ---------------------------------------------------------

    fn arb_reach() -> impl Strategy<Value = Reach> {
        prop_oneof![3 => Just(R), 1 => Just(X), 1 => Just(U)]
    }

    prop_compose! {
        fn arb_observation()(n in 1usize..=30)(
            reach in prop::collection::vec(prop::collection::vec(arb_reach(), n), n),
            unknown_rows in prop::collection::vec(any::<bool>(), n),
            connected in prop::collection::vec(any::<bool>(), n),
            down in prop::collection::vec(any::<bool>(), n),
            net_loss in prop::collection::vec(any::<bool>(), n),
            self_index in 0..n,
            quorum in prop::option::of(1usize..=30),
        ) -> Observation {
            let mut reach = reach;
            for (row, unknown) in reach.iter_mut().zip(&unknown_rows) {
                if *unknown {
                    row.iter_mut().for_each(|r| *r = U);
                }
            }
            Observation {
                nodes: names(reach.len()),
                self_index,
                reach,
                connected,
                down,
                net_loss,
                quorum,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn classify_never_panics_and_components_partition(obs in arb_observation()) {
            let c = classify(&obs).unwrap();
            check_invariants(&obs, &c);
            let n = obs.nodes.len();
            prop_assert!(c.down.iter().chain(&c.frozen).chain(&c.unobserved).all(|&j| j < n));
            prop_assert!(!c.down.contains(&obs.self_index));
            prop_assert!(!c.frozen.contains(&obs.self_index));
            prop_assert_eq!(c.status == Status::Healthy, c.anomalies.is_empty());
            prop_assert_eq!(c.status == Status::Mixed, c.anomalies.len() >= 2);
            // Every unreachable report is explained by some anomaly.
            if c.unreachable_pair_count > 0 {
                prop_assert!(c.status != Status::Healthy);
            }
            for (a, b) in &c.one_way {
                prop_assert_eq!((obs.reach[*a][*b], obs.reach[*b][*a]), (X, R));
            }
            for (a, b, via) in &c.indirect {
                prop_assert!(a < b);
                let comp = c.components.iter().find(|g| g.contains(a)).unwrap();
                prop_assert!(comp.contains(b));
                for v in via {
                    prop_assert!(obs.reach[*a][*v] != X && obs.reach[*v][*a] != X);
                    prop_assert!(obs.reach[*b][*v] != X && obs.reach[*v][*b] != X);
                }
            }
            let size = c.components[c.self_component].len();
            match (obs.quorum, c.side) {
                (Some(q), Side::Majority) => prop_assert!(size >= q),
                (Some(q), _) => prop_assert!(size < q),
                (None, Side::Majority) => prop_assert!(2 * size > n),
                (None, Side::Tie) => prop_assert!(2 * size == n),
                (None, Side::Minority) => prop_assert!(2 * size < n),
            }
        }

        #[test]
        fn fully_reachable_is_always_healthy(n in 1usize..=60, me in 0usize..60) {
            let mut obs = healthy(n, me % n);
            // Whatever the connection flags say.
            obs.down = (0..n).map(|j| j % 3 == 1).collect();
            obs.net_loss = (0..n).map(|j| j % 2 == 0).collect();
            let c = classify(&obs).unwrap();
            prop_assert_eq!(c.status, Status::Healthy);
            prop_assert_eq!(c.components, vec![(0..n).collect::<Vec<_>>()]);
            prop_assert_eq!(c.side, Side::Majority);
        }

        #[test]
        fn both_sides_never_both_claim_the_majority(
            n in 2usize..=20,
            cut in 1usize..20,
            from_both in any::<bool>(),
        ) {
            let cut = cut % (n - 1) + 1;
            let left: Vec<usize> = (0..cut).collect();
            let right: Vec<usize> = (cut..n).collect();
            let groups: &[&[usize]] = &[&left, &right];
            let a = classify(&partition(groups, 0)).unwrap();
            let b = classify(&partition(groups, n - 1)).unwrap();
            prop_assert_eq!(a.status, Status::Split);
            prop_assert!(!(a.side == Side::Majority && b.side == Side::Majority));
            if from_both && 2 * cut == n {
                prop_assert_eq!((a.side, b.side), (Side::Tie, Side::Tie));
            }
        }

        #[test]
        fn heals_never_panics_and_only_names_known_nodes(
            prev in arb_observation(),
            next in arb_observation(),
        ) {
            let healed = heals(&prev, &next).unwrap();
            for (a, b) in &healed {
                prop_assert!(prev.nodes.contains(a) && next.nodes.contains(b));
                prop_assert!(a != b);
            }
        }
    }
}
