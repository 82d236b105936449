//! What a node's processes add up to, in a form that merges across nodes.
//!
//! A [`Summary`] holds, over the rows a [`Filter`] lets through: totals,
//! counts and memory grouped by status, application, initial call, module
//! and type ([`Groups`]), the K processes with the most memory, reductions,
//! queued messages and heap ([`Top`]), and log2 histograms of memory and
//! queue lengths ([`Histograms`]); plus how many rows there were in all.
//!
//! # Order and caps
//!
//! Group entries are sorted by count descending, then key; top lists by
//! value descending, then node name, then key. A dimension keeps at most
//! [`MAX_GROUP_KEYS`] entries: past that, the smallest are folded into one
//! entry keyed [`OTHER_KEY`] (always last) and the set is marked
//! `truncated`. Merging sums entries by key and caps again, so a merge
//! equals the summary of all rows at once unless a dimension was truncated.
//!
//! # Cost
//!
//! [`Summary::build`] is one pass over the columns with per-dictionary-id
//! counters (no hashing per row) and four bounded heaps, then a sort of the
//! distinct keys: about 20 ns a row. Pid text is made only for the rows in
//! the top lists, through the caller's closure.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::snapshot::Snapshot;
use super::top::{Cand, TopK};
use super::{
    integer_key_text, log2_bucket, KeyKind, Metric, ProcType, ProcsError, FORMAT_VERSION,
    HISTOGRAM_BUCKETS, MAX_SERIALIZED_BYTES,
};

/// Default size of the top lists.
pub const DEFAULT_K: usize = 20;
/// Largest size of the top lists.
pub const MAX_K: usize = 1000;
/// Most entries of one group dimension, [`OTHER_KEY`] included.
pub const MAX_GROUP_KEYS: usize = 10_000;
/// The key of the entry that folds the groups past the cap.
pub const OTHER_KEY: &str = "(other)";

/// What to summarize and how many top rows to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryOptions {
    pub filter: Filter,
    pub k: usize,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        SummaryOptions {
            filter: Filter::default(),
            k: DEFAULT_K,
        }
    }
}

impl SummaryOptions {
    /// Options with `k` checked (1 to [`MAX_K`]).
    pub fn new(filter: Filter, k: usize) -> Result<Self, ProcsError> {
        check_k(k)?;
        Ok(SummaryOptions { filter, k })
    }
}

pub(crate) fn check_k(k: usize) -> Result<(), ProcsError> {
    if k == 0 || k > MAX_K {
        return Err(ProcsError::option(
            "k",
            format!("is {k}, must be between 1 and {MAX_K}"),
        ));
    }
    Ok(())
}

/// One snapshot to summarize and the node it comes from.
#[derive(Debug, Clone, Copy)]
pub struct SummaryInput<'a> {
    pub snapshot: &'a Snapshot,
    pub node: &'a str,
}

/// Sums over the matched rows (saturating). `heap_size` sums
/// `total_heap_size`, in words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub memory: u64,
    pub reductions: u64,
    pub message_queue_len: u64,
    pub heap_size: u64,
}

/// One group: how many matched rows have this key and their memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub key: String,
    pub count: u64,
    pub memory: u64,
}

/// The groups of one dimension.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSet {
    pub entries: Vec<Group>,
    pub truncated: bool,
}

/// The groups of every dimension.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    pub status: GroupSet,
    pub application: GroupSet,
    pub initial_call: GroupSet,
    pub module: GroupSet,
    #[serde(rename = "type")]
    pub proc_type: GroupSet,
}

/// A process in a top list: identity and every number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRow {
    pub node: String,
    /// `<0.ID.SERIAL>`.
    pub pid: String,
    /// The row's key (orders ties).
    pub key: u64,
    pub registered_name: Option<String>,
    pub initial_call: String,
    pub current_function: String,
    pub application: String,
    #[serde(rename = "type")]
    pub proc_type: String,
    pub status: String,
    pub memory: u64,
    pub reductions: u64,
    pub message_queue_len: u64,
    pub heap_size: u64,
    pub stack_size: u64,
    pub total_heap_size: u64,
}

impl ProcRow {
    pub(crate) fn value(&self, metric: Metric) -> u64 {
        match metric {
            Metric::Memory => self.memory,
            Metric::Reductions => self.reductions,
            Metric::MessageQueueLen => self.message_queue_len,
            Metric::HeapSize => self.total_heap_size,
        }
    }

    /// Row `i` of `snapshot`, from `node`.
    pub(crate) fn from_snapshot(
        snapshot: &Snapshot,
        i: usize,
        node: &str,
        pid_text: &mut dyn FnMut(u64) -> String,
    ) -> ProcRow {
        let r = snapshot.row(i);
        let pid = match snapshot.kind() {
            Some(KeyKind::Pid) => pid_text(r.key),
            _ => integer_key_text(r.key),
        };
        ProcRow {
            node: node.to_owned(),
            pid,
            key: r.key,
            registered_name: r.registered_name.map(str::to_owned),
            initial_call: r.initial_call.to_owned(),
            current_function: r.current_function.to_owned(),
            application: r.application.to_owned(),
            proc_type: r.proc_type.as_str().to_owned(),
            status: r.status.to_owned(),
            memory: r.memory,
            reductions: r.reductions,
            message_queue_len: r.message_queue_len,
            heap_size: r.heap_size,
            stack_size: r.stack_size,
            total_heap_size: r.total_heap_size,
        }
    }
}

/// The top lists, best first. `heap_size` ranks by `total_heap_size`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Top {
    pub memory: Vec<ProcRow>,
    pub reductions: Vec<ProcRow>,
    pub message_queue_len: Vec<ProcRow>,
    pub heap_size: Vec<ProcRow>,
}

/// Log2 histograms ([`HISTOGRAM_BUCKETS`] counts each, see
/// [`log2_bucket`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histograms {
    pub memory: Vec<u64>,
    pub message_queue_len: Vec<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            memory: vec![0; HISTOGRAM_BUCKETS],
            message_queue_len: vec![0; HISTOGRAM_BUCKETS],
        }
    }
}

/// A summary of one or more nodes' processes (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub version: u32,
    /// Sorted, distinct.
    pub nodes: Vec<String>,
    /// Size of the top lists.
    pub k: usize,
    /// Rows seen, matched or not.
    pub process_count: u64,
    /// Rows the filter let through.
    pub matched: u64,
    pub totals: Totals,
    pub groups: Groups,
    pub top: Top,
    pub histograms: Histograms,
}

const METRICS: [Metric; 4] = [
    Metric::Memory,
    Metric::Reductions,
    Metric::MessageQueueLen,
    Metric::HeapSize,
];

/// Sorted distinct node names and the rank of each input's node.
pub(crate) fn node_ranks<'a>(
    names: impl Iterator<Item = &'a str> + Clone,
) -> (Vec<String>, Vec<u32>) {
    let mut nodes: Vec<String> = names.clone().map(str::to_owned).collect();
    nodes.sort();
    nodes.dedup();
    let ranks = names
        .map(|n| nodes.binary_search_by(|x| x.as_str().cmp(n)).unwrap_or(0) as u32)
        .collect();
    (nodes, ranks)
}

/// Counters per dictionary identifier.
struct DimCounts(Vec<(u64, u64)>);

impl DimCounts {
    fn new(n: usize) -> Self {
        DimCounts(vec![(0, 0); n])
    }

    #[inline]
    fn add(&mut self, id: u32, memory: u64) {
        let slot = &mut self.0[id as usize];
        slot.0 += 1;
        slot.1 = slot.1.saturating_add(memory);
    }

    fn drain_into(self, snapshot: &Snapshot, into: &mut HashMap<String, (u64, u64)>) {
        for (id, (count, memory)) in self.0.into_iter().enumerate() {
            if count > 0 {
                add_group(into, snapshot.dict().get(id as u32), count, memory);
            }
        }
    }
}

fn add_group(into: &mut HashMap<String, (u64, u64)>, key: &str, count: u64, memory: u64) {
    match into.get_mut(key) {
        Some(e) => {
            e.0 = e.0.saturating_add(count);
            e.1 = e.1.saturating_add(memory);
        }
        None => {
            into.insert(key.to_owned(), (count, memory));
        }
    }
}

/// Sorts and caps one dimension (see the module docs).
pub(crate) fn cap_groups(map: HashMap<String, (u64, u64)>, truncated: bool) -> GroupSet {
    let mut other: Option<(u64, u64)> = None;
    let mut entries: Vec<Group> = Vec::with_capacity(map.len());
    for (key, (count, memory)) in map {
        if key == OTHER_KEY {
            other = Some((count, memory));
        } else {
            entries.push(Group { key, count, memory });
        }
    }
    entries.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    let mut truncated = truncated || other.is_some();
    if entries.len() + usize::from(other.is_some()) > MAX_GROUP_KEYS {
        let (mut count, mut memory) = other.unwrap_or((0, 0));
        for g in entries.drain(MAX_GROUP_KEYS - 1..) {
            count = count.saturating_add(g.count);
            memory = memory.saturating_add(g.memory);
        }
        other = Some((count, memory));
        truncated = true;
    }
    if let Some((count, memory)) = other {
        entries.push(Group {
            key: OTHER_KEY.to_owned(),
            count,
            memory,
        });
    }
    GroupSet { entries, truncated }
}

fn merge_sorted_rows(lists: Vec<&[ProcRow]>, metric: Metric, k: usize) -> Vec<ProcRow> {
    let mut all: Vec<&ProcRow> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        b.value(metric)
            .cmp(&a.value(metric))
            .then_with(|| a.node.cmp(&b.node))
            .then(a.key.cmp(&b.key))
    });
    all.into_iter().take(k).cloned().collect()
}

fn add_hist(into: &mut [u64], from: &[u64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.saturating_add(*b);
    }
}

impl Summary {
    /// Summarizes the rows of one snapshot of `node`. `pid_text` gives the
    /// text of a pid key (called only for rows that go into the top lists,
    /// and only for snapshots of pid keys).
    pub fn of(
        snapshot: &Snapshot,
        node: &str,
        opts: &SummaryOptions,
        pid_text: &mut dyn FnMut(u64) -> String,
    ) -> Summary {
        Summary::build(&[SummaryInput { snapshot, node }], opts, pid_text)
    }

    /// Summarizes all the rows of several snapshots at once, each row
    /// belonging to its input's node.
    pub fn build(
        inputs: &[SummaryInput<'_>],
        opts: &SummaryOptions,
        pid_text: &mut dyn FnMut(u64) -> String,
    ) -> Summary {
        let (nodes, ranks) = node_ranks(inputs.iter().map(|i| i.node));
        let mut tops: Vec<TopK> = METRICS.iter().map(|_| TopK::new(opts.k)).collect();
        let mut process_count = 0u64;
        let mut matched = 0u64;
        let mut totals = Totals::default();
        let mut hist = Histograms::default();
        let mut groups: [HashMap<String, (u64, u64)>; 5] = Default::default();

        for (input_idx, input) in inputs.iter().enumerate() {
            let s = input.snapshot;
            let c = &s.cols;
            let n = s.dict().len();
            let mut dims = [
                DimCounts::new(n),
                DimCounts::new(n),
                DimCounts::new(n),
                DimCounts::new(n),
            ];
            let mut types = [(0u64, 0u64); 7];
            let mut filter = opts.filter.compile(s);
            process_count += s.len() as u64;
            for i in 0..s.len() {
                if !filter.matches(i) {
                    continue;
                }
                matched += 1;
                let memory = c.memory[i];
                let queue = c.message_queue_len[i];
                totals.memory = totals.memory.saturating_add(memory);
                totals.reductions = totals.reductions.saturating_add(c.reductions[i]);
                totals.message_queue_len = totals.message_queue_len.saturating_add(queue);
                totals.heap_size = totals.heap_size.saturating_add(c.total_heap_size[i]);
                dims[0].add(c.status[i], memory);
                dims[1].add(c.application[i], memory);
                dims[2].add(c.initial_call[i], memory);
                dims[3].add(c.module[i], memory);
                let t = &mut types[usize::from(c.proc_type[i]).min(6)];
                t.0 += 1;
                t.1 = t.1.saturating_add(memory);
                hist.memory[log2_bucket(memory)] += 1;
                hist.message_queue_len[log2_bucket(queue)] += 1;
                for (top, value) in
                    tops.iter_mut()
                        .zip([memory, c.reductions[i], queue, c.total_heap_size[i]])
                {
                    top.offer(Cand {
                        value,
                        node: ranks[input_idx],
                        key: c.keys[i],
                        input: input_idx as u32,
                        row: i as u32,
                        aux: 0,
                    });
                }
            }
            for (dim, into) in dims.into_iter().zip(groups.iter_mut()) {
                dim.drain_into(s, into);
            }
            for (t, (count, memory)) in types.into_iter().enumerate() {
                if count > 0 {
                    add_group(
                        &mut groups[4],
                        ProcType::from_u8(t as u8).as_str(),
                        count,
                        memory,
                    );
                }
            }
        }

        let mut lists = tops.into_iter().map(|t| {
            t.into_sorted()
                .into_iter()
                .map(|c| {
                    let input = &inputs[c.input as usize];
                    ProcRow::from_snapshot(input.snapshot, c.row as usize, input.node, pid_text)
                })
                .collect::<Vec<_>>()
        });
        let top = Top {
            memory: lists.next().unwrap_or_default(),
            reductions: lists.next().unwrap_or_default(),
            message_queue_len: lists.next().unwrap_or_default(),
            heap_size: lists.next().unwrap_or_default(),
        };
        let [status, application, initial_call, module, proc_type] =
            groups.map(|g| cap_groups(g, false));
        Summary {
            version: FORMAT_VERSION,
            nodes,
            k: opts.k,
            process_count,
            matched,
            totals,
            groups: Groups {
                status,
                application,
                initial_call,
                module,
                proc_type,
            },
            top,
            histograms: hist,
        }
    }

    /// Merges summaries of different nodes: counts, totals and histograms
    /// add up, groups merge by key (capped again), top lists keep the best
    /// `k` rows (`k` is the smallest of the inputs'), nodes are the sorted
    /// union. At least one summary is needed.
    pub fn merge(summaries: &[Summary]) -> Result<Summary, ProcsError> {
        let k =
            summaries.iter().map(|s| s.k).min().ok_or_else(|| {
                ProcsError::argument("summaries", "is empty: at least one is needed")
            })?;
        let mut nodes: Vec<String> = summaries.iter().flat_map(|s| s.nodes.clone()).collect();
        nodes.sort();
        nodes.dedup();
        let mut totals = Totals::default();
        let mut hist = Histograms::default();
        let (mut process_count, mut matched) = (0u64, 0u64);
        for s in summaries {
            process_count = process_count.saturating_add(s.process_count);
            matched = matched.saturating_add(s.matched);
            totals.memory = totals.memory.saturating_add(s.totals.memory);
            totals.reductions = totals.reductions.saturating_add(s.totals.reductions);
            totals.message_queue_len = totals
                .message_queue_len
                .saturating_add(s.totals.message_queue_len);
            totals.heap_size = totals.heap_size.saturating_add(s.totals.heap_size);
            add_hist(&mut hist.memory, &s.histograms.memory);
            add_hist(&mut hist.message_queue_len, &s.histograms.message_queue_len);
        }
        let merge_dim = |pick: fn(&Groups) -> &GroupSet| {
            let mut map = HashMap::new();
            let mut truncated = false;
            for s in summaries {
                let set = pick(&s.groups);
                truncated |= set.truncated;
                for g in &set.entries {
                    add_group(&mut map, &g.key, g.count, g.memory);
                }
            }
            cap_groups(map, truncated)
        };
        let groups = Groups {
            status: merge_dim(|g| &g.status),
            application: merge_dim(|g| &g.application),
            initial_call: merge_dim(|g| &g.initial_call),
            module: merge_dim(|g| &g.module),
            proc_type: merge_dim(|g| &g.proc_type),
        };
        let top_of = |pick: fn(&Top) -> &Vec<ProcRow>, metric| {
            merge_sorted_rows(
                summaries.iter().map(|s| pick(&s.top).as_slice()).collect(),
                metric,
                k,
            )
        };
        let top = Top {
            memory: top_of(|t| &t.memory, Metric::Memory),
            reductions: top_of(|t| &t.reductions, Metric::Reductions),
            message_queue_len: top_of(|t| &t.message_queue_len, Metric::MessageQueueLen),
            heap_size: top_of(|t| &t.heap_size, Metric::HeapSize),
        };
        Ok(Summary {
            version: FORMAT_VERSION,
            nodes,
            k,
            process_count,
            matched,
            totals,
            groups,
            top,
            histograms: hist,
        })
    }

    /// The JSON form.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain structs of strings and integers: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads [`Summary::to_bytes`]'s output, checking the version, `k`,
    /// the histogram lengths and the list lengths.
    pub fn from_bytes(bytes: &[u8]) -> Result<Summary, ProcsError> {
        let bad = |message: String| ProcsError::InvalidSummary { message };
        if bytes.len() > MAX_SERIALIZED_BYTES {
            return Err(bad(format!(
                "{} bytes, over the limit of {MAX_SERIALIZED_BYTES}",
                bytes.len()
            )));
        }
        let s: Summary = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if s.version != FORMAT_VERSION {
            return Err(bad(format!("version {}", s.version)));
        }
        check_k(s.k).map_err(|e| bad(e.to_string()))?;
        if s.histograms.memory.len() != HISTOGRAM_BUCKETS
            || s.histograms.message_queue_len.len() != HISTOGRAM_BUCKETS
        {
            return Err(bad(format!(
                "histograms must have {HISTOGRAM_BUCKETS} buckets"
            )));
        }
        let t = &s.top;
        if [&t.memory, &t.reductions, &t.message_queue_len, &t.heap_size]
            .iter()
            .any(|l| l.len() > s.k)
        {
            return Err(bad("a top list is longer than k".into()));
        }
        let g = &s.groups;
        if [
            &g.status,
            &g.application,
            &g.initial_call,
            &g.module,
            &g.proc_type,
        ]
        .iter()
        .any(|set| set.entries.len() > MAX_GROUP_KEYS)
        {
            return Err(bad(format!(
                "a group dimension has over {MAX_GROUP_KEYS} entries"
            )));
        }
        Ok(s)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::snapshot::tests::text_row;
    use super::super::snapshot::{Key, Row};
    use super::super::Glob;
    use super::*;
    use proptest::prelude::*;

    fn no_pids(_: u64) -> String {
        unreachable!("integer keys only")
    }

    fn sample() -> Snapshot {
        let mut s = Snapshot::new();
        let rows = vec![
            text_row(
                &mut s,
                1,
                100,
                50,
                0,
                Some("a"),
                "m1:f/0",
                "app1",
                ProcType::GenServer,
            ),
            text_row(
                &mut s,
                2,
                300,
                10,
                7,
                None,
                "m2:f/0",
                "app1",
                ProcType::Plain,
            ),
            text_row(
                &mut s,
                3,
                300,
                20,
                1,
                None,
                "m1:g/1",
                "app2",
                ProcType::GenServer,
            ),
            text_row(
                &mut s,
                4,
                0,
                0,
                0,
                None,
                "undefined",
                "undefined",
                ProcType::Task,
            ),
        ];
        s.push(&rows).unwrap();
        s
    }

    #[test]
    fn summarizes_one_snapshot() {
        let s = sample();
        let opts = SummaryOptions::new(Filter::default(), 2).unwrap();
        let sum = Summary::of(&s, "n1@h", &opts, &mut no_pids);
        assert_eq!(sum.nodes, ["n1@h"]);
        assert_eq!(sum.process_count, 4);
        assert_eq!(sum.matched, 4);
        assert_eq!(sum.totals.memory, 700);
        assert_eq!(sum.totals.reductions, 80);
        assert_eq!(sum.totals.message_queue_len, 8);
        assert_eq!(sum.totals.heap_size, 12 + 37 + 37);
        let keys = |set: &GroupSet| {
            set.entries
                .iter()
                .map(|g| (g.key.clone(), g.count, g.memory))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(&sum.groups.module),
            [
                ("m1".into(), 2, 400),
                ("m2".into(), 1, 300),
                ("undefined".into(), 1, 0)
            ]
        );
        assert_eq!(
            keys(&sum.groups.proc_type),
            [
                ("gen_server".into(), 2, 400),
                ("plain".into(), 1, 300),
                ("task".into(), 1, 0)
            ]
        );
        assert_eq!(keys(&sum.groups.status), [("waiting".into(), 4, 700)]);
        // Ties on memory broken by key.
        let mem: Vec<_> = sum.top.memory.iter().map(|r| r.key).collect();
        assert_eq!(mem, [2, 3]);
        assert_eq!(sum.top.memory[0].pid, "<0.0.2>");
        assert_eq!(sum.top.memory[0].proc_type, "plain");
        assert_eq!(sum.top.reductions[0].registered_name.as_deref(), Some("a"));
        assert_eq!(sum.top.message_queue_len[0].key, 2);
        assert_eq!(sum.histograms.memory[0], 1);
        assert_eq!(sum.histograms.memory[6], 1); // 100
        assert_eq!(sum.histograms.memory[8], 2); // 300
        assert_eq!(sum.histograms.message_queue_len[0], 3);
        assert_eq!(sum.histograms.message_queue_len[2], 1);
        let back = Summary::from_bytes(&sum.to_bytes()).unwrap();
        assert_eq!(back, sum);
    }

    #[test]
    fn filters_apply_to_everything_but_the_count() {
        let s = sample();
        let opts = SummaryOptions::new(
            Filter {
                name_pattern: Some(Glob::new("m1:*").unwrap()),
                ..Filter::default()
            },
            5,
        )
        .unwrap();
        let sum = Summary::of(&s, "n", &opts, &mut no_pids);
        assert_eq!(sum.process_count, 4);
        assert_eq!(sum.matched, 2);
        assert_eq!(sum.totals.memory, 400);
        assert_eq!(sum.top.memory.len(), 2);
        assert_eq!(sum.histograms.memory.iter().sum::<u64>(), 2);
    }

    #[test]
    fn pid_text_only_for_top_rows() {
        let mut s = Snapshot::new();
        let mut rows = Vec::new();
        for i in 0..100u64 {
            let mut r = text_row(&mut s, i, i, i, 0, None, "m:f/0", "a", ProcType::Plain);
            r.key = Key::Pid(i * 16 + 3);
            rows.push(r);
        }
        s.push(&rows).unwrap();
        let mut calls = 0;
        let mut text = |w: u64| {
            calls += 1;
            format!("<pid {w}>")
        };
        let sum = Summary::of(
            &s,
            "n",
            &SummaryOptions::new(Filter::default(), 3).unwrap(),
            &mut text,
        );
        assert_eq!(calls, 12);
        assert_eq!(sum.top.memory[0].pid, format!("<pid {}>", 99 * 16 + 3));
    }

    #[test]
    fn groups_are_capped() {
        let mut map = HashMap::new();
        for i in 0..(MAX_GROUP_KEYS + 5) {
            map.insert(format!("k{i:06}"), (1 + (i % 3) as u64, 10));
        }
        let set = cap_groups(map, false);
        assert!(set.truncated);
        assert_eq!(set.entries.len(), MAX_GROUP_KEYS);
        let other = set.entries.last().unwrap();
        assert_eq!(other.key, OTHER_KEY);
        let total: u64 = set.entries.iter().map(|g| g.count).sum();
        let expected: u64 = (0..(MAX_GROUP_KEYS + 5)).map(|i| 1 + (i % 3) as u64).sum();
        assert_eq!(total, expected);
        // Sorted by count descending, then key.
        assert_eq!(set.entries[0].key, "k000002");
        assert!(set.entries[..MAX_GROUP_KEYS - 1]
            .windows(2)
            .all(|w| w[0].count > w[1].count || (w[0].count == w[1].count && w[0].key < w[1].key)));
        // Merging a truncated set keeps the flag and the cap.
        let sum = |set: GroupSet| Summary {
            groups: Groups {
                module: set,
                ..Groups::default()
            },
            ..Summary::of(
                &Snapshot::new(),
                "n",
                &SummaryOptions::default(),
                &mut no_pids,
            )
        };
        let merged = Summary::merge(&[sum(set.clone()), sum(set)]).unwrap();
        assert!(merged.groups.module.truncated);
        assert_eq!(merged.groups.module.entries.len(), MAX_GROUP_KEYS);
        assert_eq!(merged.groups.module.entries.last().unwrap().key, OTHER_KEY);
        assert!(!merged.groups.status.truncated);
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            SummaryOptions::new(Filter::default(), 0)
                .unwrap_err()
                .code(),
            "invalid_option"
        );
        assert!(SummaryOptions::new(Filter::default(), MAX_K + 1).is_err());
        assert!(SummaryOptions::new(Filter::default(), MAX_K).is_ok());
        assert_eq!(Summary::merge(&[]).unwrap_err().code(), "invalid_argument");
        for bytes in [&b""[..], b"{}", b"[1,2]", b"\xff\xfe", b"{\"version\":1}"] {
            assert_eq!(
                Summary::from_bytes(bytes).unwrap_err().code(),
                "invalid_summary"
            );
        }
        let s = Summary::of(&sample(), "n", &SummaryOptions::default(), &mut no_pids);
        let mut v: serde_json::Value = serde_json::from_slice(&s.to_bytes()).unwrap();
        v["version"] = 2.into();
        assert!(Summary::from_bytes(&serde_json::to_vec(&v).unwrap()).is_err());
        let mut v: serde_json::Value = serde_json::from_slice(&s.to_bytes()).unwrap();
        v["histograms"]["memory"] = serde_json::json!([1, 2]);
        assert!(Summary::from_bytes(&serde_json::to_vec(&v).unwrap()).is_err());
        let mut v: serde_json::Value = serde_json::from_slice(&s.to_bytes()).unwrap();
        v["k"] = 1.into();
        assert!(Summary::from_bytes(&serde_json::to_vec(&v).unwrap()).is_err());
    }

    /// Random rows: (memory, reductions, queue, name index, call index, app
    /// index, type).
    pub(crate) fn rows_strategy() -> impl Strategy<Value = Vec<(u64, u64, u64, u8, u8, u8, u8)>> {
        prop::collection::vec(
            (
                prop_oneof![0u64..5, 0u64..2000, 0u64..(1 << 48)],
                0u64..1000,
                0u64..4,
                0u8..6,
                0u8..5,
                0u8..4,
                0u8..7,
            ),
            0..120,
        )
    }

    /// Builds a snapshot per node from rows assigned to nodes by `split`.
    pub(crate) fn split_snapshots(
        rows: &[(u64, u64, u64, u8, u8, u8, u8)],
        split: &[u8],
        nodes: usize,
    ) -> Vec<Snapshot> {
        let mut snaps: Vec<Snapshot> = (0..nodes).map(|_| Snapshot::new()).collect();
        for (i, &(memory, reductions, queue, name, call, app, t)) in rows.iter().enumerate() {
            let s = &mut snaps[usize::from(split[i % split.len()]) % nodes];
            let name = (name < 3).then(|| ["alpha", "beta", "gamma"][usize::from(name)]);
            let call =
                ["m1:f/0", "m1:g/2", "m2:h/1", "Elixir.X:init/1", "undefined"][usize::from(call)];
            let app = ["a", "b", "c", "undefined"][usize::from(app)];
            let mut row: Row = text_row(
                s,
                i as u64,
                memory,
                reductions,
                queue,
                name,
                call,
                app,
                ProcType::from_u8(t),
            );
            row.total_heap_size = reductions / 3;
            s.push(&[row]).unwrap();
        }
        snaps
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn merge_equals_union(
            rows in rows_strategy(),
            nodes in 1usize..=5,
            split in prop::collection::vec(any::<u8>(), 1..50),
            k in 1usize..8,
            min_memory in prop_oneof![Just(None), (0u64..3000).prop_map(Some)],
        ) {
            let snaps = split_snapshots(&rows, &split, nodes);
            let names: Vec<String> = (0..nodes).map(|i| format!("node{}@h", (i * 7) % 5)).collect();
            let opts = SummaryOptions::new(Filter { min_memory, ..Filter::default() }, k).unwrap();
            let inputs: Vec<SummaryInput> = snaps
                .iter()
                .zip(&names)
                .map(|(snapshot, node)| SummaryInput { snapshot, node })
                .collect();
            let union = Summary::build(&inputs, &opts, &mut no_pids);
            let parts: Vec<Summary> = inputs
                .iter()
                .map(|i| Summary::of(i.snapshot, i.node, &opts, &mut no_pids))
                .map(|s| Summary::from_bytes(&s.to_bytes()).unwrap())
                .collect();
            let merged = Summary::merge(&parts).unwrap();
            prop_assert_eq!(&merged, &union);
            prop_assert_eq!(union.process_count, rows.len() as u64);
            let in_hist: u64 = union.histograms.memory.iter().sum();
            prop_assert_eq!(in_hist, union.matched);
        }
    }
}
