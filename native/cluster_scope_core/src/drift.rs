//! Comparison of named, versioned items across nodes: code drift (module
//! name -> MD5 of the loaded code) and applications (name -> version).
//!
//! ## Digests
//!
//! A node hashes its own items into a compact [`Digest`]: `buckets` 64-bit
//! sums, one per bucket of item names. An item `(name, version)` falls into
//! bucket `h(name) mod buckets` and adds `h(name, version)` to it (a
//! wrapping sum, so the order of the items does not matter and no sort is
//! needed). Two nodes with the same items have equal digests; a module at
//! another version, or loaded on one node only, changes the sum of its one
//! bucket. The caller compares digests first ([`differing_buckets`]) and
//! asks the nodes for the items of the differing buckets only
//! ([`select`]), then compares those ([`compare`]). A digest of 256
//! buckets is 2 KiB whatever the number of modules.
//!
//! ## Cost
//!
//! [`digest`] is one pass of a word-at-a-time hash (FxHash's step, eight
//! bytes per multiply) over each name and version plus a 64-bit
//! finaliser: 1 to 1.5 ms for 10,000 modules of 35-byte names through the
//! NIF, most of it reading the terms, on a loaded 2-core machine (see
//! `bench/code_drift.exs`, `per_node_hash_ms`). [`differing_buckets`] is
//! O(nodes x buckets) integer compares (5,120 for 20 nodes x 256
//! buckets: microseconds). [`compare`] is O(total items x log) over the
//! items it is given (only those of differing buckets).
//!
//! The hash is not cryptographic: a collision would hide a drift until the
//! module changes again. With 64-bit sums per bucket the chance that one
//! change leaves its bucket's sum equal is 2^-64.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{CoreError, ErrorCode};

/// Buckets of a digest when the caller does not say.
pub const DEFAULT_BUCKETS: u32 = 256;
/// At most this many buckets (a digest is then 32 KiB).
pub const MAX_BUCKETS: u32 = 4_096;
/// At most this many nodes in one comparison.
pub const MAX_NODES: usize = 1_024;
/// At most this many items per node (modules or applications).
pub const MAX_ITEMS: usize = 1_000_000;
/// Bytes of a digest's header (item count, then bucket count).
const HEADER: usize = 12;

/// Why a drift call refused its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftError {
    /// `buckets` outside `1..=MAX_BUCKETS`.
    Buckets(u64),
    /// A serialized digest that is not one (index in the list given).
    BadDigest(usize),
    /// Digests built with different bucket counts.
    BucketMismatch {
        first: u32,
        other: u32,
        index: usize,
    },
    /// A wanted bucket at or past the bucket count.
    WantedOutOfRange { bucket: u64, buckets: u32 },
    /// Too many nodes or items.
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
}

impl fmt::Display for DriftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriftError::Buckets(n) => {
                write!(f, "buckets: must be 1..{MAX_BUCKETS}, got {n}")
            }
            DriftError::BadDigest(i) => write!(
                f,
                "digests[{i}]: not a digest (12-byte header, then 8 bytes per bucket)"
            ),
            DriftError::BucketMismatch {
                first,
                other,
                index,
            } => write!(
                f,
                "digests[{index}]: {other} buckets, digests[0] has {first}; digests compare only at one bucket count"
            ),
            DriftError::WantedOutOfRange { bucket, buckets } => {
                write!(f, "wanted: bucket {bucket} is not below {buckets}")
            }
            DriftError::TooMany { field, count, max } => {
                write!(f, "{field}: {count} is more than {max}")
            }
        }
    }
}

impl From<DriftError> for CoreError {
    fn from(e: DriftError) -> Self {
        let code = match e {
            DriftError::TooMany { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::InvalidArgument,
        };
        CoreError::new(code, e.to_string())
    }
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const K: u64 = 0x517c_c1b7_2722_0a95;

/// Word-at-a-time hash of `bytes` continuing from `h` (FxHash's step,
/// eight bytes per multiply; the tail is zero-padded and the length mixed
/// in by the callers). Not cryptographic: see the module's docs.
fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
    }
    h
}

/// splitmix64's finaliser: spreads the bits of the word hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The running hash of a name, its length first (so ("ab", "c") and
/// ("a", "bc") differ once the version is added).
fn name_state(name: &[u8]) -> u64 {
    hash_bytes((SEED ^ name.len() as u64).wrapping_mul(K), name)
}

fn bucket_from(state: u64, buckets: u32) -> u32 {
    (mix(state) % u64::from(buckets.max(1))) as u32
}

fn item_from(state: u64, version: &[u8]) -> u64 {
    mix(hash_bytes(state ^ version.len() as u64, version))
}

/// The bucket of a name among `buckets`.
pub fn bucket_of(name: &[u8], buckets: u32) -> u32 {
    bucket_from(name_state(name), buckets)
}

/// The hash an item adds to its bucket.
pub fn item_hash(name: &[u8], version: &[u8]) -> u64 {
    item_from(name_state(name), version)
}

/// A node's digest: how many items it has and one sum per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Items hashed.
    pub count: u64,
    /// One wrapping sum per bucket.
    pub sums: Vec<u64>,
}

fn check_buckets(buckets: u64) -> Result<u32, DriftError> {
    if (1..=u64::from(MAX_BUCKETS)).contains(&buckets) {
        Ok(buckets as u32)
    } else {
        Err(DriftError::Buckets(buckets))
    }
}

/// The digest of `items` (name, version) over `buckets` buckets.
pub fn digest<'a, I>(items: I, buckets: u64) -> Result<Digest, DriftError>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let buckets = check_buckets(buckets)?;
    let mut sums = vec![0u64; buckets as usize];
    let mut count = 0u64;
    for (name, version) in items {
        // The name is hashed once, for its bucket and its item.
        let state = name_state(name);
        let b = bucket_from(state, buckets) as usize;
        sums[b] = sums[b].wrapping_add(item_from(state, version));
        count += 1;
    }
    Ok(Digest { count, sums })
}

impl Digest {
    /// Serialized: count (u64 LE), bucket count (u32 LE), sums (u64 LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 8 * self.sums.len());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&(self.sums.len() as u32).to_le_bytes());
        for s in &self.sums {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// The digest of [`Digest::to_bytes`]; `index` names it in the error.
    pub fn from_bytes(bytes: &[u8], index: usize) -> Result<Digest, DriftError> {
        if bytes.len() < HEADER {
            return Err(DriftError::BadDigest(index));
        }
        let count = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
        let n = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if n == 0 || n > MAX_BUCKETS || bytes.len() != HEADER + 8 * n as usize {
            return Err(DriftError::BadDigest(index));
        }
        let sums = bytes[HEADER..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(Digest { count, sums })
    }
}

/// The buckets whose sums are not equal on every node, ascending. Every
/// digest must have the same bucket count.
pub fn differing_buckets(digests: &[Digest]) -> Result<Vec<u32>, DriftError> {
    if digests.len() > MAX_NODES {
        return Err(DriftError::TooMany {
            field: "digests",
            count: digests.len(),
            max: MAX_NODES,
        });
    }
    let Some(first) = digests.first() else {
        return Ok(Vec::new());
    };
    for (i, d) in digests.iter().enumerate().skip(1) {
        if d.sums.len() != first.sums.len() {
            return Err(DriftError::BucketMismatch {
                first: first.sums.len() as u32,
                other: d.sums.len() as u32,
                index: i,
            });
        }
    }
    Ok((0..first.sums.len())
        .filter(|&b| digests[1..].iter().any(|d| d.sums[b] != first.sums[b]))
        .map(|b| b as u32)
        .collect())
}

/// The indices of the items whose names fall into one of `wanted`
/// buckets (out of `buckets`), in the order given.
pub fn select<'a, I>(items: I, buckets: u64, wanted: &[u64]) -> Result<Vec<usize>, DriftError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let buckets = check_buckets(buckets)?;
    let mut mask = vec![false; buckets as usize];
    for &w in wanted {
        if w >= u64::from(buckets) {
            return Err(DriftError::WantedOutOfRange { bucket: w, buckets });
        }
        mask[w as usize] = true;
    }
    Ok(items
        .into_iter()
        .enumerate()
        .filter(|(_, name)| mask[bucket_of(name, buckets) as usize])
        .map(|(i, _)| i)
        .collect())
}

/// One name that is not the same on every node compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The item's name.
    pub name: Vec<u8>,
    /// Each version seen, with the nodes (indices) that have it, ascending.
    /// Versions in ascending byte order.
    pub versions: Vec<(Vec<u8>, Vec<usize>)>,
    /// The nodes (indices) that do not have the item, ascending.
    pub missing: Vec<usize>,
}

impl Difference {
    /// Whether the nodes that have it have more than one version.
    pub fn versions_differ(&self) -> bool {
        self.versions.len() > 1
    }
}

/// Compares the items of every node (`nodes[i]` is node i's list of
/// (name, version); a name appears once per node) and returns the names
/// that are not the same everywhere: present at two versions or more, or
/// missing on some node. Sorted by name.
pub fn compare<N, V>(nodes: &[Vec<(N, V)>]) -> Result<Vec<Difference>, DriftError>
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    if nodes.len() > MAX_NODES {
        return Err(DriftError::TooMany {
            field: "nodes",
            count: nodes.len(),
            max: MAX_NODES,
        });
    }
    let mut by_name: BTreeMap<&[u8], Vec<(&[u8], usize)>> = BTreeMap::new();
    for (i, items) in nodes.iter().enumerate() {
        if items.len() > MAX_ITEMS {
            return Err(DriftError::TooMany {
                field: "items",
                count: items.len(),
                max: MAX_ITEMS,
            });
        }
        for (name, version) in items {
            by_name
                .entry(name.as_ref())
                .or_default()
                .push((version.as_ref(), i));
        }
    }
    let n = nodes.len();
    let mut out = Vec::new();
    for (name, mut seen) in by_name {
        seen.sort_unstable();
        seen.dedup_by_key(|(_, node)| *node);
        let all_equal = seen.windows(2).all(|w| w[0].0 == w[1].0);
        let mut present = vec![false; n];
        for &(_, node) in &seen {
            present[node] = true;
        }
        let missing: Vec<usize> = (0..n).filter(|&i| !present[i]).collect();
        if all_equal && missing.is_empty() {
            continue;
        }
        let mut versions: Vec<(Vec<u8>, Vec<usize>)> = Vec::new();
        for (version, node) in seen {
            match versions.last_mut() {
                Some((v, nodes)) if v.as_slice() == version => nodes.push(node),
                _ => versions.push((version.to_vec(), vec![node])),
            }
        }
        for (_, nodes) in &mut versions {
            nodes.sort_unstable();
        }
        out.push(Difference {
            name: name.to_vec(),
            versions,
            missing,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn dig(list: &[(Vec<u8>, Vec<u8>)], buckets: u64) -> Digest {
        digest(
            list.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
            buckets,
        )
        .unwrap()
    }

    #[test]
    fn equal_items_equal_digests_whatever_the_order() {
        let a = items(&[("lists", "1"), ("maps", "2"), ("Elixir.Foo", "3")]);
        let mut b = a.clone();
        b.reverse();
        assert_eq!(dig(&a, 256), dig(&b, 256));
        assert_eq!(dig(&a, 256).count, 3);
    }

    #[test]
    fn a_changed_version_changes_exactly_its_bucket() {
        let a = items(&[("lists", "1"), ("maps", "2"), ("Elixir.Foo", "3")]);
        let b = items(&[("lists", "1"), ("maps", "2"), ("Elixir.Foo", "4")]);
        let diff = differing_buckets(&[dig(&a, 256), dig(&b, 256)]).unwrap();
        assert_eq!(diff, vec![bucket_of(b"Elixir.Foo", 256)]);
    }

    #[test]
    fn a_missing_item_changes_its_bucket() {
        let a = items(&[("lists", "1"), ("maps", "2")]);
        let b = items(&[("lists", "1")]);
        let diff = differing_buckets(&[dig(&a, 64), dig(&b, 64)]).unwrap();
        assert_eq!(diff, vec![bucket_of(b"maps", 64)]);
    }

    #[test]
    fn name_and_version_boundaries_do_not_collide() {
        assert_ne!(item_hash(b"ab", b"c"), item_hash(b"a", b"bc"));
    }

    #[test]
    fn digest_bytes_round_trip_and_refusals() {
        let d = dig(&items(&[("a", "1"), ("b", "2")]), 16);
        let bytes = d.to_bytes();
        assert_eq!(bytes.len(), 12 + 16 * 8);
        assert_eq!(Digest::from_bytes(&bytes, 0).unwrap(), d);
        assert_eq!(
            Digest::from_bytes(&bytes[..20], 3),
            Err(DriftError::BadDigest(3))
        );
        assert_eq!(Digest::from_bytes(b"", 0), Err(DriftError::BadDigest(0)));
    }

    #[test]
    fn refusals_name_the_field() {
        let e: CoreError = digest(std::iter::empty(), 0).unwrap_err().into();
        assert_eq!(e.code(), "invalid_argument");
        assert!(e.detail().starts_with("buckets:"), "{}", e.detail());
        let e = select(std::iter::empty(), 8, &[8]).unwrap_err();
        assert!(e.to_string().starts_with("wanted:"));
        let a = dig(&[], 8);
        let b = dig(&[], 16);
        let e = differing_buckets(&[a, b]).unwrap_err();
        assert!(e.to_string().starts_with("digests[1]:"), "{e}");
    }

    #[test]
    fn select_keeps_the_items_of_wanted_buckets() {
        let names: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"e"];
        let wanted = [u64::from(bucket_of(b"c", 8))];
        let got = select(names.iter().copied(), 8, &wanted).unwrap();
        assert!(got.contains(&2));
        for i in got {
            assert_eq!(bucket_of(names[i], 8), bucket_of(b"c", 8));
        }
    }

    #[test]
    fn compare_lists_versions_and_missing_nodes() {
        let n0 = items(&[("app", "1.0"), ("kernel", "8"), ("only0", "x")]);
        let n1 = items(&[("app", "1.1"), ("kernel", "8")]);
        let n2 = items(&[("app", "1.0"), ("kernel", "8")]);
        let d = compare(&[n0, n1, n2]).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, b"app");
        assert_eq!(
            d[0].versions,
            vec![(b"1.0".to_vec(), vec![0, 2]), (b"1.1".to_vec(), vec![1])]
        );
        assert!(d[0].missing.is_empty());
        assert!(d[0].versions_differ());
        assert_eq!(d[1].name, b"only0");
        assert_eq!(d[1].missing, vec![1, 2]);
        assert!(!d[1].versions_differ());
    }

    #[test]
    fn compare_of_equal_nodes_is_empty() {
        let n = items(&[("a", "1"), ("b", "2")]);
        assert!(compare(&[n.clone(), n.clone(), n]).unwrap().is_empty());
        assert!(compare::<Vec<u8>, Vec<u8>>(&[]).unwrap().is_empty());
    }

    fn node_items() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 1..6),
            proptest::collection::vec(0u8..3, 1..2),
            0..40,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        // Digests agree exactly when the sets of items agree (no collision
        // in small cases), and the differing buckets hold every name that
        // compare reports.
        #[test]
        fn digests_find_every_difference(
            nodes in proptest::collection::vec(node_items(), 1..5),
            buckets in 1u64..64,
        ) {
            let digests: Vec<Digest> = nodes.iter().map(|n| dig(n, buckets)).collect();
            let differing = differing_buckets(&digests).unwrap();
            let diffs = compare(&nodes).unwrap();
            for d in &diffs {
                prop_assert!(differing.contains(&bucket_of(&d.name, buckets as u32)));
            }
            // Comparing only the items of differing buckets finds the same.
            let wanted: Vec<u64> = differing.iter().map(|&b| u64::from(b)).collect();
            let selected: Vec<Vec<(Vec<u8>, Vec<u8>)>> = nodes
                .iter()
                .map(|n| {
                    let idx = select(n.iter().map(|(k, _)| k.as_slice()), buckets, &wanted).unwrap();
                    idx.into_iter().map(|i| n[i].clone()).collect()
                })
                .collect();
            prop_assert_eq!(compare(&selected).unwrap(), diffs.clone());
            // Equal sets have equal digests; no differences means no differing bucket.
            if diffs.is_empty() {
                prop_assert!(differing.is_empty());
            }
        }

        #[test]
        fn digest_is_order_independent(mut n in node_items(), buckets in 1u64..300) {
            let a = dig(&n, buckets);
            n.reverse();
            prop_assert_eq!(a.clone(), dig(&n, buckets));
            prop_assert_eq!(Digest::from_bytes(&a.to_bytes(), 0).unwrap(), a);
        }

        #[test]
        fn compare_partitions_the_nodes(nodes in proptest::collection::vec(node_items(), 1..5)) {
            for d in compare(&nodes).unwrap() {
                let mut all: Vec<usize> = d.versions.iter().flat_map(|(_, n)| n.clone()).collect();
                all.extend(d.missing.iter().copied());
                all.sort_unstable();
                prop_assert_eq!(all, (0..nodes.len()).collect::<Vec<_>>());
                prop_assert!(d.versions_differ() || !d.missing.is_empty());
            }
        }
    }
}
