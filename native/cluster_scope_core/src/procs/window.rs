//! What changed between two snapshots of one node, like
//! `recon:proc_window/3`, in a form that merges across nodes.
//!
//! Rows are joined by key. A process only in the after snapshot is *new*
//! and its deltas count from zero (all its reductions happened in the
//! window); one only in the before snapshot has *exited*. The filter
//! applies to the after row; `before`, `after`, `new` and `exited` count
//! every row, `matched` the after rows the filter lets through.
//!
//! Top lists, best first (delta descending, then node, then key): the
//! reductions done in the window (every matched row ranks, with
//! `reductions_per_sec = delta * 1000 / interval_ms`), memory growth and
//! message queue growth (only rows that grew rank). Rows carry the after
//! row's identity and numbers plus the deltas.
//!
//! Cost: a hash map of the before keys (about 40 ns a row to build and
//! probe), one pass over the after rows, three bounded heaps.

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::snapshot::Snapshot;
use super::summary::{check_k, node_ranks, ProcRow, SummaryOptions};
use super::top::{Cand, TopK};
use super::{ProcsError, WordMap, FORMAT_VERSION, MAX_SERIALIZED_BYTES};

/// Two snapshots of one node.
#[derive(Debug, Clone, Copy)]
pub struct WindowInput<'a> {
    pub before: &'a Snapshot,
    pub after: &'a Snapshot,
    pub node: &'a str,
}

/// Sums over the matched after rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowTotals {
    /// Reductions done in the window (saturating).
    pub reductions_delta: u64,
    /// Memory growth in bytes, negative when it shrank (saturating).
    pub memory_delta: i64,
}

/// A process in a window top list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    /// The after row.
    pub process: ProcRow,
    pub reductions_delta: u64,
    pub reductions_per_sec: f64,
    pub memory_delta: i64,
    pub message_queue_len_delta: i64,
}

/// The top lists, best first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowTop {
    pub reductions: Vec<WindowRow>,
    pub memory: Vec<WindowRow>,
    pub message_queue_len: Vec<WindowRow>,
}

/// A window over one or more nodes (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub version: u32,
    /// Sorted, distinct.
    pub nodes: Vec<String>,
    pub k: usize,
    /// The window's length; after a merge of different lengths, the
    /// longest (each row's `reductions_per_sec` uses its own node's).
    pub interval_ms: u64,
    pub before: u64,
    pub after: u64,
    pub new: u64,
    pub exited: u64,
    pub matched: u64,
    pub totals: WindowTotals,
    pub top: WindowTop,
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn signed_delta(after: u64, before: u64) -> i64 {
    clamp_i64(i128::from(after) - i128::from(before))
}

fn per_sec(delta: u64, interval_ms: u64) -> f64 {
    delta as f64 * 1000.0 / interval_ms as f64
}

const NO_BEFORE: u32 = u32::MAX;

impl Window {
    /// The window of one node.
    pub fn of(
        before: &Snapshot,
        after: &Snapshot,
        node: &str,
        interval_ms: u64,
        opts: &SummaryOptions,
        pid_text: &mut dyn FnMut(u64) -> String,
    ) -> Result<Window, ProcsError> {
        Window::build(
            &[WindowInput {
                before,
                after,
                node,
            }],
            interval_ms,
            opts,
            pid_text,
        )
    }

    /// The windows of several nodes at once. `interval_ms` must be at least
    /// 1; each input's snapshots must have keys of the same kind.
    pub fn build(
        inputs: &[WindowInput<'_>],
        interval_ms: u64,
        opts: &SummaryOptions,
        pid_text: &mut dyn FnMut(u64) -> String,
    ) -> Result<Window, ProcsError> {
        if interval_ms == 0 {
            return Err(ProcsError::argument("interval_ms", "must be at least 1"));
        }
        check_k(opts.k)?;
        for input in inputs {
            if let (Some(a), Some(b)) = (input.before.kind(), input.after.kind()) {
                if a != b {
                    return Err(ProcsError::argument(
                        "after",
                        "holds keys of another kind than the before snapshot (pids vs integers)",
                    ));
                }
            }
        }
        let (nodes, ranks) = node_ranks(inputs.iter().map(|i| i.node));
        let mut tops = [TopK::new(opts.k), TopK::new(opts.k), TopK::new(opts.k)];
        let (mut before_n, mut after_n, mut new, mut exited, mut matched) = (0, 0, 0, 0, 0u64);
        let mut reductions_delta = 0u64;
        let mut memory_delta = 0i128;

        for (input_idx, input) in inputs.iter().enumerate() {
            let (b, a) = (input.before, input.after);
            before_n += b.len() as u64;
            after_n += a.len() as u64;
            let mut index: WordMap<u64, u32> = WordMap::default();
            index.reserve(b.len());
            for (j, &k) in b.cols.keys.iter().enumerate() {
                index.insert(k, j as u32);
            }
            let mut joined = 0u64;
            let mut filter: super::filter::Compiled<'_> = Filter::compile(&opts.filter, a);
            for i in 0..a.len() {
                let key = a.cols.keys[i];
                // Collectors push in the same order each time: try the
                // same position first.
                let j = if b.cols.keys.get(i) == Some(&key) {
                    Some(i as u32)
                } else {
                    index.get(&key).copied()
                };
                match j {
                    Some(_) => joined += 1,
                    None => new += 1,
                }
                if !filter.matches(i) {
                    continue;
                }
                matched += 1;
                let (rd, md, qd) = deltas(a, i, b, j);
                reductions_delta = reductions_delta.saturating_add(rd);
                memory_delta += i128::from(md);
                let cand = |value| Cand {
                    value,
                    node: ranks[input_idx],
                    key,
                    input: input_idx as u32,
                    row: i as u32,
                    aux: j.unwrap_or(NO_BEFORE),
                };
                tops[0].offer(cand(rd));
                if md > 0 {
                    tops[1].offer(cand(md as u64));
                }
                if qd > 0 {
                    tops[2].offer(cand(qd as u64));
                }
            }
            exited += b.len() as u64 - joined.min(b.len() as u64);
        }

        let mut lists = tops.into_iter().map(|t| {
            t.into_sorted()
                .into_iter()
                .map(|c| {
                    let input = &inputs[c.input as usize];
                    let i = c.row as usize;
                    let j = (c.aux != NO_BEFORE).then_some(c.aux);
                    let (rd, md, qd) = deltas(input.after, i, input.before, j);
                    WindowRow {
                        process: ProcRow::from_snapshot(input.after, i, input.node, pid_text),
                        reductions_delta: rd,
                        reductions_per_sec: per_sec(rd, interval_ms),
                        memory_delta: md,
                        message_queue_len_delta: qd,
                    }
                })
                .collect::<Vec<_>>()
        });
        Ok(Window {
            version: FORMAT_VERSION,
            nodes,
            k: opts.k,
            interval_ms,
            before: before_n,
            after: after_n,
            new,
            exited,
            matched,
            totals: WindowTotals {
                reductions_delta,
                memory_delta: clamp_i64(memory_delta),
            },
            top: WindowTop {
                reductions: lists.next().unwrap_or_default(),
                memory: lists.next().unwrap_or_default(),
                message_queue_len: lists.next().unwrap_or_default(),
            },
        })
    }

    /// Replaces the identity of each top row found in `details` (by key)
    /// with that row's: name, initial and current function, application,
    /// type, status and heap sizes; memory, reductions and queue stay the
    /// window's, so they agree with the deltas. For a window computed from
    /// snapshots that hold only numbers (a walk that read three items of
    /// each process), with the details read for the few winners only.
    /// Rows not in `details` (processes gone since) are left as they are.
    pub fn with_details(&mut self, details: &Snapshot, pid_text: &mut dyn FnMut(u64) -> String) {
        let mut index: WordMap<u64, usize> = WordMap::default();
        for (i, &k) in details.cols.keys.iter().enumerate() {
            index.insert(k, i);
        }
        for list in [
            &mut self.top.reductions,
            &mut self.top.memory,
            &mut self.top.message_queue_len,
        ] {
            for row in list.iter_mut() {
                if let Some(&i) = index.get(&row.process.key) {
                    let old = &row.process;
                    let mut new = ProcRow::from_snapshot(details, i, &old.node, pid_text);
                    new.memory = old.memory;
                    new.reductions = old.reductions;
                    new.message_queue_len = old.message_queue_len;
                    row.process = new;
                }
            }
        }
    }

    /// Merges windows of different nodes: counts and totals add up, top
    /// lists keep the best `k` rows (`k` the smallest of the inputs'),
    /// `interval_ms` is the longest, nodes the sorted union.
    pub fn merge(windows: &[Window]) -> Result<Window, ProcsError> {
        let k =
            windows.iter().map(|w| w.k).min().ok_or_else(|| {
                ProcsError::argument("windows", "is empty: at least one is needed")
            })?;
        let mut nodes: Vec<String> = windows.iter().flat_map(|w| w.nodes.clone()).collect();
        nodes.sort();
        nodes.dedup();
        let sum =
            |f: fn(&Window) -> u64| windows.iter().fold(0u64, |acc, w| acc.saturating_add(f(w)));
        let memory_delta: i128 = windows
            .iter()
            .map(|w| i128::from(w.totals.memory_delta))
            .sum();
        let top_of = |pick: fn(&WindowTop) -> &Vec<WindowRow>, value: fn(&WindowRow) -> u64| {
            let mut all: Vec<&WindowRow> = windows.iter().flat_map(|w| pick(&w.top)).collect();
            all.sort_by(|a, b| {
                value(b)
                    .cmp(&value(a))
                    .then_with(|| a.process.node.cmp(&b.process.node))
                    .then(a.process.key.cmp(&b.process.key))
            });
            all.into_iter().take(k).cloned().collect::<Vec<_>>()
        };
        Ok(Window {
            version: FORMAT_VERSION,
            nodes,
            k,
            interval_ms: windows.iter().map(|w| w.interval_ms).max().unwrap_or(1),
            before: sum(|w| w.before),
            after: sum(|w| w.after),
            new: sum(|w| w.new),
            exited: sum(|w| w.exited),
            matched: sum(|w| w.matched),
            totals: WindowTotals {
                reductions_delta: sum(|w| w.totals.reductions_delta),
                memory_delta: clamp_i64(memory_delta),
            },
            top: WindowTop {
                reductions: top_of(|t| &t.reductions, |r| r.reductions_delta),
                memory: top_of(|t| &t.memory, |r| r.memory_delta.max(0) as u64),
                message_queue_len: top_of(
                    |t| &t.message_queue_len,
                    |r| r.message_queue_len_delta.max(0) as u64,
                ),
            },
        })
    }

    /// The JSON form.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Strings, integers and finite floats: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads [`Window::to_bytes`]'s output, checking the version, `k`,
    /// `interval_ms` and the list lengths.
    pub fn from_bytes(bytes: &[u8]) -> Result<Window, ProcsError> {
        let bad = |message: String| ProcsError::InvalidWindow { message };
        if bytes.len() > MAX_SERIALIZED_BYTES {
            return Err(bad(format!(
                "{} bytes, over the limit of {MAX_SERIALIZED_BYTES}",
                bytes.len()
            )));
        }
        let w: Window = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if w.version != FORMAT_VERSION {
            return Err(bad(format!("version {}", w.version)));
        }
        check_k(w.k).map_err(|e| bad(e.to_string()))?;
        if w.interval_ms == 0 {
            return Err(bad("interval_ms is 0".into()));
        }
        let t = &w.top;
        if [&t.reductions, &t.memory, &t.message_queue_len]
            .iter()
            .any(|l| l.len() > w.k)
        {
            return Err(bad("a top list is longer than k".into()));
        }
        Ok(w)
    }
}

/// (reductions delta, memory delta, queue delta) of after row `i` against
/// before row `j` (from zero when there is none).
fn deltas(a: &Snapshot, i: usize, b: &Snapshot, j: Option<u32>) -> (u64, i64, i64) {
    let (ac, bc) = (&a.cols, &b.cols);
    match j {
        Some(j) => {
            let j = j as usize;
            (
                ac.reductions[i].saturating_sub(bc.reductions[j]),
                signed_delta(ac.memory[i], bc.memory[j]),
                signed_delta(ac.message_queue_len[i], bc.message_queue_len[j]),
            )
        }
        None => (
            ac.reductions[i],
            signed_delta(ac.memory[i], 0),
            signed_delta(ac.message_queue_len[i], 0),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::tests::text_row;
    use super::super::summary::tests::{rows_strategy, split_snapshots};
    use super::super::{Glob, ProcType};
    use super::*;
    use proptest::prelude::*;

    fn no_pids(_: u64) -> String {
        unreachable!("integer keys only")
    }

    #[test]
    fn details_give_the_winners_their_identity_and_keep_the_numbers() {
        let before = snap(&[(1, 100, 10, 0), (2, 100, 10, 0), (3, 100, 10, 0)]);
        let after = snap(&[(1, 150, 500, 0), (2, 90, 20, 0), (3, 100, 10, 0)]);
        let opts = SummaryOptions::new(Filter::default(), 2).unwrap();
        let mut w = Window::of(&before, &after, "n", 1000, &opts, &mut no_pids).unwrap();
        let totals = w.totals;
        // Details for key 1 only, with other numbers and a name.
        let mut details = Snapshot::new();
        let row = text_row(
            &mut details,
            1,
            9_999,
            9_999,
            9,
            Some("worker"),
            "w:init/1",
            "app",
            ProcType::GenServer,
        );
        details.push(&[row]).unwrap();
        w.with_details(&details, &mut no_pids);
        let top = &w.top.reductions[0];
        assert_eq!(top.process.key, 1);
        assert_eq!(top.process.registered_name.as_deref(), Some("worker"));
        assert_eq!(top.process.initial_call, "w:init/1");
        assert_eq!(top.process.application, "app");
        assert_eq!(top.process.proc_type, "gen_server");
        assert_eq!((top.process.memory, top.process.reductions), (150, 500));
        assert_eq!(top.reductions_delta, 490);
        assert_eq!(
            w.top.memory[0].process.registered_name.as_deref(),
            Some("worker")
        );
        // A row without details is left as it was; totals do not move.
        assert_eq!(w.top.reductions[1].process.key, 2);
        assert_eq!(w.top.reductions[1].process.registered_name, None);
        assert_eq!(w.totals, totals);
    }

    fn snap(rows: &[(u64, u64, u64, u64)]) -> Snapshot {
        let mut s = Snapshot::new();
        let rows: Vec<_> = rows
            .iter()
            .map(|&(key, mem, red, q)| {
                text_row(
                    &mut s,
                    key,
                    mem,
                    red,
                    q,
                    None,
                    "m:f/0",
                    "a",
                    ProcType::Plain,
                )
            })
            .collect();
        s.push(&rows).unwrap();
        s
    }

    #[test]
    fn joins_by_key() {
        let before = snap(&[(1, 100, 1000, 0), (2, 500, 10, 5), (3, 10, 10, 0)]);
        let after = snap(&[(1, 300, 1500, 2), (2, 200, 4010, 1), (4, 50, 70, 9)]);
        let opts = SummaryOptions::new(Filter::default(), 10).unwrap();
        let w = Window::of(&before, &after, "n", 2000, &opts, &mut no_pids).unwrap();
        assert_eq!(
            (w.before, w.after, w.new, w.exited, w.matched),
            (3, 3, 1, 1, 3)
        );
        assert_eq!(w.totals.reductions_delta, 500 + 4000 + 70);
        assert_eq!(w.totals.memory_delta, 200 - 300 + 50);
        let red: Vec<_> = w
            .top
            .reductions
            .iter()
            .map(|r| (r.process.key, r.reductions_delta, r.reductions_per_sec))
            .collect();
        assert_eq!(red, [(2, 4000, 2000.0), (1, 500, 250.0), (4, 70, 35.0)]);
        let mem: Vec<_> = w
            .top
            .memory
            .iter()
            .map(|r| (r.process.key, r.memory_delta))
            .collect();
        assert_eq!(mem, [(1, 200), (4, 50)]);
        let q: Vec<_> = w
            .top
            .message_queue_len
            .iter()
            .map(|r| (r.process.key, r.message_queue_len_delta))
            .collect();
        assert_eq!(q, [(4, 9), (1, 2)]);
        assert_eq!(w.top.reductions[0].process.memory, 200);
        let back = Window::from_bytes(&w.to_bytes()).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn filter_applies_to_the_after_row() {
        let before = snap(&[(1, 100, 1000, 0)]);
        let after = snap(&[(1, 300, 1500, 2), (2, 10, 10, 0)]);
        let opts = SummaryOptions::new(
            Filter {
                min_memory: Some(100),
                name_pattern: Some(Glob::new("m:*").unwrap()),
                ..Filter::default()
            },
            5,
        )
        .unwrap();
        let w = Window::of(&before, &after, "n", 1000, &opts, &mut no_pids).unwrap();
        assert_eq!((w.new, w.exited, w.matched), (1, 0, 1));
        assert_eq!(w.top.reductions.len(), 1);
    }

    #[test]
    fn bad_input_is_refused() {
        let s = snap(&[(1, 1, 1, 1)]);
        let opts = SummaryOptions::default();
        assert_eq!(
            Window::of(&s, &s, "n", 0, &opts, &mut no_pids)
                .unwrap_err()
                .code(),
            "invalid_argument"
        );
        let mut p = Snapshot::new();
        let mut r = text_row(&mut p, 1, 1, 1, 1, None, "m:f/0", "a", ProcType::Plain);
        r.key = super::super::Key::Pid(3);
        p.push(&[r]).unwrap();
        assert!(Window::of(&s, &p, "n", 10, &opts, &mut |_| String::new()).is_err());
        assert!(Window::merge(&[]).is_err());
        for bytes in [&b""[..], b"{}", b"null"] {
            assert_eq!(
                Window::from_bytes(bytes).unwrap_err().code(),
                "invalid_window"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn merge_equals_union(
            before_rows in rows_strategy(),
            after_rows in rows_strategy(),
            nodes in 1usize..=5,
            split in prop::collection::vec(any::<u8>(), 1..50),
            k in 1usize..8,
        ) {
            let befores = split_snapshots(&before_rows, &split, nodes);
            let afters = split_snapshots(&after_rows, &split, nodes);
            let names: Vec<String> = (0..nodes).map(|i| format!("node{}@h", (i * 3) % 5)).collect();
            let opts = SummaryOptions::new(Filter::default(), k).unwrap();
            let inputs: Vec<WindowInput> = (0..nodes)
                .map(|i| WindowInput { before: &befores[i], after: &afters[i], node: &names[i] })
                .collect();
            let union = Window::build(&inputs, 1500, &opts, &mut no_pids).unwrap();
            let parts: Vec<Window> = inputs
                .iter()
                .map(|i| Window::of(i.before, i.after, i.node, 1500, &opts, &mut no_pids).unwrap())
                .map(|w| Window::from_bytes(&w.to_bytes()).unwrap())
                .collect();
            let merged = Window::merge(&parts).unwrap();
            prop_assert_eq!(&merged, &union);
            prop_assert_eq!(union.after - union.new, union.before - union.exited);
        }
    }
}
