//! The columnar table of one node's processes.
//!
//! A [`Snapshot`] keeps one vector per field: numbers as `u64`, strings as
//! `u32` identifiers into the snapshot's [`Dict`], the process type as a
//! `u8`. A row costs 81 bytes plus its share of the dictionary, which holds
//! each distinct text once (status, application, module and function names
//! repeat across thousands of processes). Identifier [`UNDEFINED`] is
//! always `"undefined"`; a row without a registered name has [`NO_NAME`].
//!
//! Rows arrive in batches ([`Snapshot::push`]); a batch is checked whole
//! before any of it is appended, so a refused batch leaves the snapshot as
//! it was.

use std::collections::HashMap;
use std::mem::size_of;

use super::{KeyKind, Metric, ProcType, ProcsError};

/// The most rows one snapshot holds.
pub const MAX_ROWS: usize = 10_000_000;
/// The dictionary identifier of `"undefined"`, in every snapshot.
pub const UNDEFINED: u32 = 0;
/// The `registered_name` of a row without one.
pub const NO_NAME: u32 = u32::MAX;

/// Distinct strings, each with a dense `u32` identifier.
#[derive(Debug, Clone)]
pub struct Dict {
    strings: Vec<String>,
    index: HashMap<String, u32>,
}

impl Default for Dict {
    fn default() -> Self {
        let mut d = Dict {
            strings: Vec::new(),
            index: HashMap::new(),
        };
        d.intern("undefined");
        d
    }
}

impl Dict {
    /// The identifier of `s`, added if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.index.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), id);
        id
    }

    /// The identifier of `s`, if it is in the dictionary.
    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.index.get(s).copied()
    }

    /// The string of `id` (`""` for an unknown identifier).
    pub fn get(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", String::as_str)
    }

    /// How many strings it holds.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether it is empty (never: it always holds `"undefined"`).
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        let text: usize = self.strings.iter().map(|s| 2 * s.capacity()).sum();
        text + self.strings.capacity() * size_of::<String>()
            + self.index.capacity() * (size_of::<String>() + size_of::<u32>() + 8)
    }
}

/// A row's key and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// The raw term word of a local pid.
    Pid(u64),
    /// `id * 2^32 + serial`.
    Integer(u64),
}

impl Key {
    fn kind(self) -> KeyKind {
        match self {
            Key::Pid(_) => KeyKind::Pid,
            Key::Integer(_) => KeyKind::Integer,
        }
    }

    fn value(self) -> u64 {
        match self {
            Key::Pid(v) | Key::Integer(v) => v,
        }
    }
}

/// One process as pushed: strings are identifiers from the snapshot's
/// dictionary ([`Snapshot::intern`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub key: Key,
    pub memory: u64,
    pub reductions: u64,
    pub message_queue_len: u64,
    pub heap_size: u64,
    pub stack_size: u64,
    pub total_heap_size: u64,
    pub status: u32,
    /// `"module:function/arity"` or [`UNDEFINED`].
    pub current_function: u32,
    /// A name, or [`NO_NAME`].
    pub registered_name: u32,
    /// `"module:function/arity"` or [`UNDEFINED`].
    pub initial_call: u32,
    pub application: u32,
    /// The module of the initial call, else of the current function, else
    /// [`UNDEFINED`].
    pub module: u32,
    pub proc_type: ProcType,
}

/// One row read back, strings resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef<'a> {
    pub key: u64,
    pub memory: u64,
    pub reductions: u64,
    pub message_queue_len: u64,
    pub heap_size: u64,
    pub stack_size: u64,
    pub total_heap_size: u64,
    pub status: &'a str,
    pub current_function: &'a str,
    pub registered_name: Option<&'a str>,
    pub initial_call: &'a str,
    pub application: &'a str,
    pub module: &'a str,
    pub proc_type: ProcType,
}

/// The columns of a snapshot, one entry per row in each.
#[derive(Debug, Clone, Default)]
pub(crate) struct Columns {
    pub keys: Vec<u64>,
    pub memory: Vec<u64>,
    pub reductions: Vec<u64>,
    pub message_queue_len: Vec<u64>,
    pub heap_size: Vec<u64>,
    pub stack_size: Vec<u64>,
    pub total_heap_size: Vec<u64>,
    pub status: Vec<u32>,
    pub current_function: Vec<u32>,
    pub registered_name: Vec<u32>,
    pub initial_call: Vec<u32>,
    pub application: Vec<u32>,
    pub module: Vec<u32>,
    pub proc_type: Vec<u8>,
}

/// One node's processes as columns.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub(crate) kind: Option<KeyKind>,
    pub(crate) cols: Columns,
    pub(crate) dict: Dict,
}

impl Snapshot {
    /// An empty snapshot; its key kind is set by the first row pushed.
    pub fn new() -> Self {
        Snapshot::default()
    }

    /// The dictionary identifier of `s`, added if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        self.dict.intern(s)
    }

    /// The dictionary.
    pub fn dict(&self) -> &Dict {
        &self.dict
    }

    /// The kind of its keys, once a row is in.
    pub fn kind(&self) -> Option<KeyKind> {
        self.kind
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.cols.keys.len()
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.cols.keys.is_empty()
    }

    /// The key of row `i`.
    pub fn key(&self, i: usize) -> u64 {
        self.cols.keys[i]
    }

    /// The column of `metric` (`HeapSize` is `total_heap_size`).
    pub fn metric(&self, metric: Metric) -> &[u64] {
        match metric {
            Metric::Memory => &self.cols.memory,
            Metric::Reductions => &self.cols.reductions,
            Metric::MessageQueueLen => &self.cols.message_queue_len,
            Metric::HeapSize => &self.cols.total_heap_size,
        }
    }

    /// Row `i`, strings resolved. Panics past the end.
    pub fn row(&self, i: usize) -> RowRef<'_> {
        let c = &self.cols;
        let d = &self.dict;
        RowRef {
            key: c.keys[i],
            memory: c.memory[i],
            reductions: c.reductions[i],
            message_queue_len: c.message_queue_len[i],
            heap_size: c.heap_size[i],
            stack_size: c.stack_size[i],
            total_heap_size: c.total_heap_size[i],
            status: d.get(c.status[i]),
            current_function: d.get(c.current_function[i]),
            registered_name: match c.registered_name[i] {
                NO_NAME => None,
                id => Some(d.get(id)),
            },
            initial_call: d.get(c.initial_call[i]),
            application: d.get(c.application[i]),
            module: d.get(c.module[i]),
            proc_type: ProcType::from_u8(c.proc_type[i]),
        }
    }

    /// Appends `rows`, or none of them: a key of the other kind than the
    /// snapshot's (or than the batch's first row, for an empty snapshot) is
    /// refused as `InvalidRow { field: "key" }`, an identifier missing from
    /// the dictionary as `InvalidRow` on its field, and a batch that would
    /// pass [`MAX_ROWS`] as `TooManyRows`.
    pub fn push(&mut self, rows: &[Row]) -> Result<(), ProcsError> {
        if self.len() + rows.len() > MAX_ROWS {
            return Err(ProcsError::TooManyRows { limit: MAX_ROWS });
        }
        let mut kind = self.kind;
        let n = self.dict.len() as u32;
        for (index, r) in rows.iter().enumerate() {
            let bad = |field| Err(ProcsError::InvalidRow { index, field });
            match kind {
                None => kind = Some(r.key.kind()),
                Some(k) if k != r.key.kind() => return bad("key"),
                Some(_) => {}
            }
            for (id, field) in [
                (r.status, "status"),
                (r.current_function, "current_function"),
                (r.initial_call, "initial_call"),
                (r.application, "application"),
                (r.module, "initial_call"),
            ] {
                if id >= n {
                    return bad(field);
                }
            }
            if r.registered_name != NO_NAME && r.registered_name >= n {
                return bad("registered_name");
            }
        }
        self.kind = kind;
        let c = &mut self.cols;
        let extra = rows.len();
        c.reserve(extra);
        for r in rows {
            c.keys.push(r.key.value());
            c.memory.push(r.memory);
            c.reductions.push(r.reductions);
            c.message_queue_len.push(r.message_queue_len);
            c.heap_size.push(r.heap_size);
            c.stack_size.push(r.stack_size);
            c.total_heap_size.push(r.total_heap_size);
            c.status.push(r.status);
            c.current_function.push(r.current_function);
            c.registered_name.push(r.registered_name);
            c.initial_call.push(r.initial_call);
            c.application.push(r.application);
            c.module.push(r.module);
            c.proc_type.push(r.proc_type as u8);
        }
        Ok(())
    }

    /// About how many bytes of heap it holds (columns and dictionary).
    pub fn heap_bytes(&self) -> usize {
        let c = &self.cols;
        let u64s = [
            &c.keys,
            &c.memory,
            &c.reductions,
            &c.message_queue_len,
            &c.heap_size,
            &c.stack_size,
            &c.total_heap_size,
        ]
        .iter()
        .map(|v| v.capacity() * 8)
        .sum::<usize>();
        let u32s = [
            &c.status,
            &c.current_function,
            &c.registered_name,
            &c.initial_call,
            &c.application,
            &c.module,
        ]
        .iter()
        .map(|v| v.capacity() * 4)
        .sum::<usize>();
        u64s + u32s + c.proc_type.capacity() + self.dict.heap_bytes()
    }
}

impl Columns {
    fn reserve(&mut self, extra: usize) {
        for v in [
            &mut self.keys,
            &mut self.memory,
            &mut self.reductions,
            &mut self.message_queue_len,
            &mut self.heap_size,
            &mut self.stack_size,
            &mut self.total_heap_size,
        ] {
            v.reserve(extra);
        }
        for v in [
            &mut self.status,
            &mut self.current_function,
            &mut self.registered_name,
            &mut self.initial_call,
            &mut self.application,
            &mut self.module,
        ] {
            v.reserve(extra);
        }
        self.proc_type.reserve(extra);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A row of integer key `key`, strings interned into `s`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn text_row(
        s: &mut Snapshot,
        key: u64,
        memory: u64,
        reductions: u64,
        queue: u64,
        name: Option<&str>,
        initial_call: &str,
        application: &str,
        proc_type: ProcType,
    ) -> Row {
        let module = match initial_call.split_once(':') {
            Some((m, _)) => s.intern(m),
            None => UNDEFINED,
        };
        Row {
            key: Key::Integer(key),
            memory,
            reductions,
            message_queue_len: queue,
            heap_size: memory / 16,
            stack_size: 10,
            total_heap_size: memory / 8,
            status: s.intern("waiting"),
            current_function: s.intern("gen_server:loop/7"),
            registered_name: name.map_or(NO_NAME, |n| s.intern(n)),
            initial_call: s.intern(initial_call),
            application: s.intern(application),
            module,
            proc_type,
        }
    }

    #[test]
    fn push_and_read_back() {
        let mut s = Snapshot::new();
        assert_eq!(s.dict().get(UNDEFINED), "undefined");
        let r = text_row(
            &mut s,
            (5 << 32) | 1,
            1000,
            20,
            3,
            Some("my_server"),
            "Elixir.MyApp.Worker:init/1",
            "my_app",
            ProcType::GenServer,
        );
        s.push(&[r]).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.kind(), Some(KeyKind::Integer));
        let back = s.row(0);
        assert_eq!(back.key, (5 << 32) | 1);
        assert_eq!(back.registered_name, Some("my_server"));
        assert_eq!(back.module, "Elixir.MyApp.Worker");
        assert_eq!(back.initial_call, "Elixir.MyApp.Worker:init/1");
        assert_eq!(back.proc_type, ProcType::GenServer);
        assert_eq!(s.metric(Metric::HeapSize), &[125]);
        assert!(s.heap_bytes() > 81);
    }

    #[test]
    fn a_refused_batch_changes_nothing() {
        let mut s = Snapshot::new();
        let a = text_row(&mut s, 1, 1, 1, 1, None, "a:b/0", "x", ProcType::Plain);
        let mut b = a;
        b.key = Key::Pid(99);
        assert_eq!(
            s.push(&[a, a, b]),
            Err(ProcsError::InvalidRow {
                index: 2,
                field: "key"
            })
        );
        assert!(s.is_empty());
        assert_eq!(s.kind(), None);
        s.push(&[a]).unwrap();
        assert_eq!(
            s.push(&[b]),
            Err(ProcsError::InvalidRow {
                index: 0,
                field: "key"
            })
        );
        let mut c = a;
        c.status = 12345;
        assert_eq!(
            s.push(&[c]).unwrap_err(),
            ProcsError::InvalidRow {
                index: 0,
                field: "status"
            }
        );
        let mut d = a;
        d.registered_name = 777;
        assert!(s.push(&[d]).is_err());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn row_bound() {
        let mut s = Snapshot::new();
        let a = text_row(&mut s, 1, 1, 1, 1, None, "a:b/0", "x", ProcType::Plain);
        // Pretend the snapshot is full without allocating 10M rows.
        let rows = vec![a; 1];
        s.cols.keys.resize(MAX_ROWS, 0);
        assert_eq!(
            s.push(&rows),
            Err(ProcsError::TooManyRows { limit: MAX_ROWS })
        );
    }
}
