//! Square bit matrices for the classifier: one row of `u64` words per node,
//! bit `j` of row `i` at word `j / 64`, bit `j % 64` (least significant
//! first). Row operations cost `n / 64` word operations, which keeps a
//! 1,000-node classification at a few tens of thousands of them.

/// Words in a row of `n` bits.
pub(crate) fn words_for(n: usize) -> usize {
    n.div_ceil(64)
}

/// An `n × n` matrix of bits, rows stored one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BitMatrix {
    n: usize,
    words: usize,
    data: Vec<u64>,
}

impl BitMatrix {
    /// All zeros.
    pub(crate) fn new(n: usize) -> Self {
        let words = words_for(n);
        BitMatrix {
            n,
            words,
            data: vec![0; n * words],
        }
    }

    pub(crate) fn n(&self) -> usize {
        self.n
    }

    pub(crate) fn row(&self, i: usize) -> &[u64] {
        &self.data[i * self.words..(i + 1) * self.words]
    }

    pub(crate) fn row_mut(&mut self, i: usize) -> &mut [u64] {
        &mut self.data[i * self.words..(i + 1) * self.words]
    }

    #[cfg(test)]
    pub(crate) fn get(&self, i: usize, j: usize) -> bool {
        get(self.row(i), j)
    }

    #[cfg(test)]
    pub(crate) fn set(&mut self, i: usize, j: usize) {
        set(self.row_mut(i), j);
    }

    pub(crate) fn clear(&mut self, i: usize, j: usize) {
        clear(self.row_mut(i), j);
    }

    /// The transpose: bit `(j, i)` of the result is bit `(i, j)` of `self`.
    /// Works on 64 × 64 blocks, about 400 word operations each.
    pub(crate) fn transpose(&self) -> BitMatrix {
        let mut out = BitMatrix::new(self.n);
        let mut block = [0u64; 64];
        for bi in 0..self.words {
            for bj in 0..self.words {
                // Rows bi*64.. of column block bj.
                for (r, word) in block.iter_mut().enumerate() {
                    let row = bi * 64 + r;
                    *word = if row < self.n {
                        self.data[row * self.words + bj]
                    } else {
                        0
                    };
                }
                transpose64(&mut block);
                for (r, word) in block.iter().enumerate() {
                    let row = bj * 64 + r;
                    if row < self.n {
                        out.data[row * self.words + bi] = *word;
                    }
                }
            }
        }
        out
    }
}

/// Transposes a 64 × 64 block of bits in place: bit `c` of word `r` goes to
/// bit `r` of word `c`. Swaps the off-diagonal quarters, then the
/// off-diagonal quarters of each quarter, down to single bits: six rounds of
/// 32 masked swaps.
fn transpose64(block: &mut [u64; 64]) {
    swap_round::<32>(block, 0x0000_0000_FFFF_FFFF);
    swap_round::<16>(block, 0x0000_FFFF_0000_FFFF);
    swap_round::<8>(block, 0x00FF_00FF_00FF_00FF);
    swap_round::<4>(block, 0x0F0F_0F0F_0F0F_0F0F);
    swap_round::<2>(block, 0x3333_3333_3333_3333);
    swap_round::<1>(block, 0x5555_5555_5555_5555);
}

/// One round of [`transpose64`]: in every pair of rows `r`, `r + W` (`r`
/// with bit `W` clear), the high `W` bits of each `2W`-bit group of row `r`
/// trade places with the low ones of row `r + W`. `mask` selects the low `W`
/// bits of each group. A constant `W` lets the compiler unroll the loop.
fn swap_round<const W: usize>(block: &mut [u64; 64], mask: u64) {
    for r in (0..64).filter(|r| r & W == 0) {
        let swap = ((block[r] >> W) ^ block[r + W]) & mask;
        block[r] ^= swap << W;
        block[r + W] ^= swap;
    }
}

pub(crate) fn get(row: &[u64], j: usize) -> bool {
    row[j / 64] >> (j % 64) & 1 == 1
}

pub(crate) fn set(row: &mut [u64], j: usize) {
    row[j / 64] |= 1 << (j % 64);
}

pub(crate) fn clear(row: &mut [u64], j: usize) {
    row[j / 64] &= !(1 << (j % 64));
}

pub(crate) fn any(row: &[u64]) -> bool {
    row.iter().any(|&w| w != 0)
}

/// How many bits of `row` are set above `j` (exclusive).
pub(crate) fn count_above(row: &[u64], j: usize) -> usize {
    let first = (j + 1) / 64;
    let skip = (j + 1) % 64;
    row.iter()
        .enumerate()
        .skip(first)
        .map(|(w, &word)| {
            let word = if w == first {
                word >> skip << skip
            } else {
                word
            };
            word.count_ones() as usize
        })
        .sum()
}

#[cfg(test)]
pub(crate) fn count(row: &[u64]) -> usize {
    row.iter().map(|w| w.count_ones() as usize).sum()
}

/// A row with bits `0..n` set.
pub(crate) fn full(n: usize) -> Vec<u64> {
    let mut row = vec![u64::MAX; words_for(n)];
    if !n.is_multiple_of(64) {
        if let Some(last) = row.last_mut() {
            *last = (1 << (n % 64)) - 1;
        }
    }
    row
}

/// The indices of the set bits of `row`, in increasing order.
pub(crate) fn ones(row: &[u64]) -> impl Iterator<Item = usize> + '_ {
    row.iter().enumerate().flat_map(|(w, &word)| {
        let mut rest = word;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let bit = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            Some(w * 64 + bit)
        })
    })
}

/// The set bits of `row` above `j` (exclusive), in increasing order.
pub(crate) fn ones_above(row: &[u64], j: usize) -> impl Iterator<Item = usize> + '_ {
    let first = (j + 1) / 64;
    let skip = (j + 1) % 64;
    row.iter()
        .enumerate()
        .skip(first)
        .flat_map(move |(w, &word)| {
            let mut rest = if w == first {
                word >> skip << skip
            } else {
                word
            };
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(w * 64 + bit)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_transpose(m: &BitMatrix) -> BitMatrix {
        let mut t = BitMatrix::new(m.n());
        for i in 0..m.n() {
            for j in 0..m.n() {
                if m.get(i, j) {
                    t.set(j, i);
                }
            }
        }
        t
    }

    #[test]
    fn set_get_clear() {
        let mut m = BitMatrix::new(130);
        m.set(129, 128);
        m.set(0, 63);
        m.set(0, 64);
        assert!(m.get(129, 128) && m.get(0, 63) && m.get(0, 64));
        assert!(!m.get(128, 129));
        m.clear(0, 63);
        assert!(!m.get(0, 63));
        assert_eq!(ones(m.row(0)).collect::<Vec<_>>(), [64]);
        assert_eq!(count(m.row(129)), 1);
    }

    #[test]
    fn full_rows() {
        assert_eq!(full(0), Vec::<u64>::new());
        assert_eq!(full(3), [0b111]);
        assert_eq!(full(64), [u64::MAX]);
        assert_eq!(count(&full(130)), 130);
    }

    #[test]
    fn ones_above_skips_the_start() {
        let mut row = vec![0u64; 3];
        for j in [0, 5, 63, 64, 100, 191] {
            set(&mut row, j);
        }
        assert_eq!(
            ones_above(&row, 0).collect::<Vec<_>>(),
            [5, 63, 64, 100, 191]
        );
        assert_eq!(ones_above(&row, 62).collect::<Vec<_>>(), [63, 64, 100, 191]);
        assert_eq!(ones_above(&row, 63).collect::<Vec<_>>(), [64, 100, 191]);
        assert_eq!(ones_above(&row, 191).count(), 0);
        for j in 0..192 {
            assert_eq!(count_above(&row, j), ones_above(&row, j).count(), "{j}");
        }
    }

    proptest! {
        #[test]
        fn transpose_matches_the_naive_one(
            n in 0usize..200,
            bits in prop::collection::vec((0usize..200, 0usize..200), 0..2_000),
        ) {
            let mut m = BitMatrix::new(n);
            for (i, j) in bits {
                if i < n && j < n {
                    m.set(i, j);
                }
            }
            prop_assert_eq!(m.transpose(), naive_transpose(&m));
        }
    }
}
