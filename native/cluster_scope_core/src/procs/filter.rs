//! Which rows a summary, window or page looks at.
//!
//! Every criterion is optional and they all must hold: the application
//! (exact text), the process type, a glob ([`Glob`]: `*` any run of
//! characters, `?` one character, case-sensitive) that the registered name,
//! the initial call or the current function must match (any of the three),
//! and a least memory and message queue length.
//!
//! A filter is compiled against a snapshot before a scan: the application
//! becomes a dictionary identifier, and the glob is tried once per distinct
//! string (cached per identifier), so a scan of a million rows costs a few
//! comparisons a row.

use super::snapshot::{Snapshot, NO_NAME};
use super::{ProcType, ProcsError};

/// The longest glob accepted, in characters.
pub const MAX_PATTERN_CHARS: usize = 1024;

/// A glob: `*` matches any run of characters (none included), `?` exactly
/// one, anything else itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    /// A glob from `pattern`: at most [`MAX_PATTERN_CHARS`] characters.
    pub fn new(pattern: &str) -> Result<Glob, ProcsError> {
        let chars: Vec<char> = pattern.chars().collect();
        if chars.len() > MAX_PATTERN_CHARS {
            return Err(ProcsError::option(
                "name_pattern",
                format!(
                    "is {} characters long, over the limit of {MAX_PATTERN_CHARS}",
                    chars.len()
                ),
            ));
        }
        Ok(Glob { pattern: chars })
    }

    /// Whether the whole of `text` matches. Linear backtracking on the last
    /// `*`: O(pattern × text) at worst, no recursion.
    pub fn matches(&self, text: &str) -> bool {
        let p = &self.pattern;
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0usize, 0usize);
        // Position of the last `*` seen and of the text it resumes from.
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

/// The criteria; `Filter::default()` matches every row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub application: Option<String>,
    pub proc_type: Option<ProcType>,
    pub name_pattern: Option<Glob>,
    pub min_memory: Option<u64>,
    pub min_queue: Option<u64>,
}

/// A filter bound to one snapshot's dictionary.
pub(crate) struct Compiled<'s> {
    snapshot: &'s Snapshot,
    /// `Some(None)`: an application the snapshot does not hold, no row
    /// matches.
    application: Option<Option<u32>>,
    proc_type: Option<u8>,
    glob: Option<&'s Glob>,
    /// Per dictionary identifier: 0 untried, 1 no match, 2 match.
    glob_cache: Vec<u8>,
    min_memory: u64,
    min_queue: u64,
}

impl Filter {
    /// Whether it lets every row through.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    pub(crate) fn compile<'s>(&'s self, snapshot: &'s Snapshot) -> Compiled<'s> {
        Compiled {
            snapshot,
            application: self.application.as_deref().map(|a| snapshot.dict.lookup(a)),
            proc_type: self.proc_type.map(|t| t as u8),
            glob: self.name_pattern.as_ref(),
            glob_cache: if self.name_pattern.is_some() {
                vec![0; snapshot.dict.len()]
            } else {
                Vec::new()
            },
            min_memory: self.min_memory.unwrap_or(0),
            min_queue: self.min_queue.unwrap_or(0),
        }
    }
}

impl Compiled<'_> {
    /// Whether row `i` passes.
    pub(crate) fn matches(&mut self, i: usize) -> bool {
        let c = &self.snapshot.cols;
        if c.memory[i] < self.min_memory || c.message_queue_len[i] < self.min_queue {
            return false;
        }
        match self.application {
            Some(None) => return false,
            Some(Some(app)) if c.application[i] != app => return false,
            _ => {}
        }
        if let Some(t) = self.proc_type {
            if c.proc_type[i] != t {
                return false;
            }
        }
        if self.glob.is_some() {
            let name = c.registered_name[i];
            return (name != NO_NAME && self.glob_id(name))
                || self.glob_id(c.initial_call[i])
                || self.glob_id(c.current_function[i]);
        }
        true
    }

    fn glob_id(&mut self, id: u32) -> bool {
        let Some(glob) = self.glob else { return true };
        let slot = &mut self.glob_cache[id as usize];
        if *slot == 0 {
            *slot = if glob.matches(self.snapshot.dict.get(id)) {
                2
            } else {
                1
            };
        }
        *slot == 2
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::tests::text_row;
    use super::*;

    #[test]
    fn glob_matches() {
        let g = |p: &str, t: &str| Glob::new(p).unwrap().matches(t);
        assert!(g("", ""));
        assert!(!g("", "a"));
        assert!(g("*", ""));
        assert!(g("*", "anything"));
        assert!(g("a*", "abc"));
        assert!(!g("a*", "bac"));
        assert!(g("*c", "abc"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("*Worker*", "Elixir.MyApp.Worker:init/1"));
        assert!(!g("*worker*", "Elixir.MyApp.Worker:init/1"));
        assert!(g("gen_server:loop/?", "gen_server:loop/7"));
        assert!(g("a*b*c", "aXbYbZc"));
        assert!(!g("a*b*c", "aXbYbZ"));
        assert!(g("**a**", "bab"));
        assert!(g("?é?", "aéb"));
        assert!(g("*ab", "aab"));
        // The worst case stays fast: a long run of stars and near misses.
        let text = "a".repeat(2000);
        let pattern = format!("{}b", "a*".repeat(500));
        assert!(!g(&pattern, &text));
    }

    #[test]
    fn glob_length_is_bounded() {
        assert!(Glob::new(&"*".repeat(MAX_PATTERN_CHARS)).is_ok());
        let e = Glob::new(&"*".repeat(MAX_PATTERN_CHARS + 1)).unwrap_err();
        assert!(matches!(
            e,
            ProcsError::InvalidOption {
                field: "name_pattern",
                ..
            }
        ));
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new();
        let rows = vec![
            text_row(
                &mut s,
                1,
                100,
                5,
                0,
                Some("registry"),
                "Elixir.Registry:init/1",
                "elixir",
                ProcType::GenServer,
            ),
            text_row(
                &mut s,
                2,
                5000,
                5,
                10,
                None,
                "Elixir.MyApp.Worker:init/1",
                "my_app",
                ProcType::GenServer,
            ),
            text_row(
                &mut s,
                3,
                50,
                5,
                0,
                None,
                "erlang:apply/2",
                "undefined",
                ProcType::Plain,
            ),
        ];
        s.push(&rows).unwrap();
        s
    }

    fn matching(s: &Snapshot, f: &Filter) -> Vec<u64> {
        let mut c = f.compile(s);
        (0..s.len())
            .filter(|&i| c.matches(i))
            .map(|i| s.key(i))
            .collect()
    }

    #[test]
    fn filters_combine() {
        let s = snapshot();
        assert!(Filter::default().is_empty());
        assert_eq!(matching(&s, &Filter::default()), [1, 2, 3]);
        let app = |a: &str| Filter {
            application: Some(a.into()),
            ..Filter::default()
        };
        assert_eq!(matching(&s, &app("my_app")), [2]);
        assert_eq!(matching(&s, &app("undefined")), [3]);
        assert_eq!(matching(&s, &app("nope")), Vec::<u64>::new());
        let t = Filter {
            proc_type: Some(ProcType::Plain),
            ..Filter::default()
        };
        assert_eq!(matching(&s, &t), [3]);
        let m = Filter {
            min_memory: Some(100),
            ..Filter::default()
        };
        assert_eq!(matching(&s, &m), [1, 2]);
        let q = Filter {
            min_queue: Some(1),
            ..Filter::default()
        };
        assert_eq!(matching(&s, &q), [2]);
        let glob = |p: &str| Filter {
            name_pattern: Some(Glob::new(p).unwrap()),
            ..Filter::default()
        };
        // Registered name, initial call, current function.
        assert_eq!(matching(&s, &glob("reg*")), [1]);
        assert_eq!(matching(&s, &glob("*Worker*")), [2]);
        assert_eq!(matching(&s, &glob("gen_server:*")), [1, 2, 3]);
        assert_eq!(matching(&s, &glob("nothing")), Vec::<u64>::new());
        let both = Filter {
            name_pattern: Some(Glob::new("Elixir.*").unwrap()),
            min_memory: Some(1000),
            ..Filter::default()
        };
        assert_eq!(matching(&s, &both), [2]);
    }
}
