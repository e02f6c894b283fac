//! Bounded top-k selection under the (distance, index) order.
//!
//! Ordering by index on equal distance makes the result a function of the
//! data alone, so kernels may visit points in any order (kd-tree) and still
//! agree with the sort-everything oracle.

use super::metric::Points;

/// Result for m queries: row-major `m x k`; distances ascending; ties broken
/// by lower training index.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbors {
    pub k: usize,
    pub distances: Vec<f64>,
    pub indices: Vec<u32>,
}

impl Neighbors {
    /// Validates the call and allocates the output, so every kernel rejects
    /// bad arguments the same way before doing any work.
    pub(crate) fn for_call(train: Points, queries: Points, k: usize) -> Self {
        assert_eq!(train.data.len(), train.rows * train.dim, "train shape");
        Neighbors::for_rows(train.rows, train.dim, queries, k)
    }

    /// [`Neighbors::for_call`] for `rows` training rows of `dim` values kept
    /// in another layout (the k-d tree's blocks).
    pub(crate) fn for_rows(rows: usize, dim: usize, queries: Points, k: usize) -> Self {
        assert!(k >= 1 && k <= rows, "need 1 <= k <= train.rows");
        assert_eq!(dim, queries.dim, "train and queries differ in dim");
        assert!(dim >= 1, "dim must be >= 1");
        assert!(u32::try_from(rows).is_ok(), "training indices must fit u32");
        assert_eq!(
            queries.data.len(),
            queries.rows * queries.dim,
            "queries shape"
        );
        Neighbors {
            k,
            distances: vec![0.0; queries.rows * k],
            indices: vec![0; queries.rows * k],
        }
    }

    /// Moves a finished query's heap into its output row.
    pub(crate) fn store(&mut self, query: usize, top: &mut TopK) {
        let r = query * self.k..(query + 1) * self.k;
        top.drain_sorted(&mut self.distances[r.clone()], &mut self.indices[r]);
    }
}

/// `(distance, training index)` packed into one integer whose order is the
/// lexicographic one, with distances in `total_cmp` order (the IEEE order here:
/// distances are never NaN, though cosine's can be a rounding below zero). One
/// integer compare replaces a float compare plus a tie-break in the heap's
/// inner loop (and in the k-d tree build's median selections, keyed by a
/// coordinate instead of a distance).
type Entry = u128;

const SIGN: u64 = 1 << 63;

/// The most entries [`TopK::drain_sorted`] sorts by 64-bit keys on the stack.
const SHORT_SORT: usize = 128;
/// The low bits of a short sort's key, which hold the entry's place.
const PLACE: u64 = SHORT_SORT as u64 - 1;
const _: () = assert!(SHORT_SORT.is_power_of_two());

#[inline(always)]
pub(super) fn entry(dist: f64, idx: u32) -> Entry {
    (u128::from(order_bits(dist)) << 32) | u128::from(idx)
}

/// `x`'s bits, as an integer in `f64::total_cmp` order.
#[inline(always)]
pub(super) fn order_bits(x: f64) -> u64 {
    let b = x.to_bits();
    // Negative floats order backwards by their bits: flip them all; flip only the
    // sign of the others so they sort above every negative one.
    if b & SIGN != 0 { !b } else { b | SIGN }
}

#[inline(always)]
fn dist_of(e: Entry) -> f64 {
    let key = (e >> 32) as u64;
    f64::from_bits(if key & SIGN != 0 { key & !SIGN } else { !key })
}

/// A max-heap of the k best entries seen so far, rooted at the worst, so the
/// admission test and replacement cost O(1) and O(log k).
#[derive(Clone, Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: Vec<Entry>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: Vec::with_capacity(k),
        }
    }

    /// Empties the heap for a search of the `k` best, keeping its memory.
    pub(crate) fn reset(&mut self, k: usize) {
        self.heap.clear();
        self.heap.reserve(k);
        self.k = k;
    }

    /// The memory the heap holds.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap.capacity() * std::mem::size_of::<Entry>()
    }

    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// The k-th best distance, or +inf while fewer than k entries were seen:
    /// anything at most this far might still be admitted.
    #[inline]
    pub(crate) fn kth(&self) -> f64 {
        if self.heap.len() < self.k {
            f64::INFINITY
        } else {
            dist_of(self.heap[0])
        }
    }

    /// Offers an entry; returns whether it was admitted (then `kth` may have
    /// shrunk and any bound derived from it should be refreshed).
    #[inline]
    pub(crate) fn push(&mut self, dist: f64, idx: u32) -> bool {
        let e = entry(dist, idx);
        if self.heap.len() < self.k {
            self.heap.push(e);
            self.sift_up(self.heap.len() - 1);
            true
        } else if e < self.heap[0] {
            self.heap[0] = e;
            self.sift_down(0);
            true
        } else {
            false
        }
    }

    /// Makes an empty heap hold the best k of `entries` (all of them if fewer),
    /// in linear time rather than a push each.
    pub(crate) fn fill_best(&mut self, entries: impl Iterator<Item = (f64, u32)>) {
        debug_assert!(self.heap.is_empty());
        self.heap.extend(entries.map(|(d, i)| entry(d, i)));
        if self.heap.len() > self.k {
            self.heap.select_nth_unstable(self.k - 1);
            self.heap.truncate(self.k);
        }
        for i in (0..self.heap.len() / 2).rev() {
            self.sift_down(i);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        let h = &mut self.heap;
        while i > 0 {
            let parent = (i - 1) / 2;
            if h[i] <= h[parent] {
                break;
            }
            h.swap(i, parent);
            i = parent;
        }
    }

    /// Asks the memory for the whole heap at once, ahead of a possible push,
    /// while the candidate's exact distance is computed: a brute force's heaps
    /// (2,048 queries' at d = 32, 3 MiB) do not stay in cache between a query's
    /// pushes, and a push's sift missed at each of its ~6 levels one after
    /// another (pushes 10% of the time at d = 32; 2.8% with the heap asked for
    /// once the distance got in, and the same time asked for here, earlier).
    #[inline]
    pub(crate) fn prefetch(&self) {
        prefetch(&self.heap);
    }

    /// Moves the hole down instead of swapping at every level. Unchecked
    /// indexing: the two bounds checks a level (32 instructions a level, 27
    /// without) cost diamonds' predict 4-5%, as a push follows every
    /// admission of every search.
    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        assert!(i < n);
        let h = self.heap.as_mut_ptr();
        // SAFETY: every index read or written is below `n`: `i` is (asserted,
        // and then a child that was checked), `l` and `l + 1` are checked.
        unsafe {
            let moving = *h.add(i);
            loop {
                let l = 2 * i + 1;
                if l >= n {
                    break;
                }
                // The larger child by arithmetic, not a branch: which child
                // is larger is a coin flip that a branch predictor loses
                // half the time.
                let c = if l + 1 < n {
                    l + usize::from(*h.add(l + 1) > *h.add(l))
                } else {
                    l
                };
                let child = *h.add(c);
                if child <= moving {
                    break;
                }
                *h.add(i) = child;
                i = c;
            }
            *h.add(i) = moving;
        }
    }

    /// Writes the entries best-first and empties the heap for the next query.
    pub(crate) fn drain_sorted(&mut self, dist: &mut [f64], idx: &mut [u32]) {
        debug_assert_eq!(self.heap.len(), dist.len());
        let mut short = [0; SHORT_SORT];
        let entries = if self.heap.len() <= SHORT_SORT {
            sort_short(&self.heap, &mut short)
        } else {
            // Indices are distinct, so the order is total and unstable sort is exact.
            self.heap.sort_unstable();
            &self.heap[..]
        };
        for ((d, i), &e) in dist.iter_mut().zip(idx.iter_mut()).zip(entries) {
            *d = dist_of(e);
            *i = e as u32;
        }
        self.heap.clear();
    }
}

/// `entries` (at most [`SHORT_SORT`]) sorted into `out`. They are sorted as
/// 64-bit integers, each entry's distance key with its low bits replaced by
/// its place in `entries`: `sort_unstable` has sorting networks for integers
/// of 64 bits and none for the 128-bit entries, whose sort took 7% of King
/// County's predict. Entries whose keys differ only in those low bits may
/// then be out of order, and only next to each other: an insertion pass puts
/// them right.
fn sort_short<'a>(entries: &[Entry], out: &'a mut [Entry; SHORT_SORT]) -> &'a [Entry] {
    let n = entries.len();
    let mut keys = [0u64; SHORT_SORT];
    for (key, (place, &e)) in keys.iter_mut().zip(entries.iter().enumerate()) {
        *key = ((e >> 32) as u64 & !PLACE) | place as u64;
    }
    let keys = &mut keys[..n];
    keys.sort_unstable();
    let sorted = &mut out[..n];
    for (s, &key) in sorted.iter_mut().zip(keys.iter()) {
        *s = entries[(key & PLACE) as usize];
    }
    for j in 1..n {
        if keys[j - 1] & !PLACE == keys[j] & !PLACE {
            let mut a = j;
            while a > 0 && sorted[a - 1] > sorted[a] {
                sorted.swap(a - 1, a);
                a -= 1;
            }
        }
    }
    sorted
}

/// Asks the memory for every cache line of `values` without waiting for any,
/// so the loads that follow overlap instead of missing one after another.
#[inline]
pub(super) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let (start, bytes) = (values.as_ptr().cast::<i8>(), std::mem::size_of_val(values));
        // Every line the bytes touch: each 64 bytes on, and the last byte's.
        let last = bytes.checked_sub(1);
        for at in (0..bytes).step_by(64).chain(last) {
            // SAFETY: a prefetch reads nothing and faults on no address; the
            // address is inside `values` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(at)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

#[cfg(test)]
mod tests {
    use super::{TopK, dist_of, entry};
    use proptest::prelude::*;

    proptest! {
        /// The packed key orders as `(total_cmp, index)` and gives the distance
        /// back bit for bit, negative and signed zeros included.
        #[test]
        fn packed_entries_order_as_pairs(
            a in any::<f64>(), b in any::<f64>(), i in any::<u32>(), j in any::<u32>(),
        ) {
            prop_assume!(!a.is_nan() && !b.is_nan());
            let want = a.total_cmp(&b).then(i.cmp(&j));
            prop_assert_eq!(entry(a, i).cmp(&entry(b, j)), want);
            prop_assert_eq!(dist_of(entry(a, i)).to_bits(), a.to_bits());
            prop_assert_eq!(entry(a, i) as u32, i);
        }

        /// Against a sort of every entry, with distances a few units apart
        /// or (`ulps`) a few units in the last place apart, which the short
        /// sort's keys do not tell apart.
        #[test]
        fn matches_sort(
            ds in prop::collection::vec(0u8..6, 1..300), k in 1usize..200, ulps in any::<bool>(),
        ) {
            let k = k.min(ds.len());
            let ds: Vec<f64> = ds
                .iter()
                .map(|&d| if ulps { 1.0 + f64::from(d) * f64::EPSILON } else { f64::from(d) })
                .collect();
            let mut top = TopK::new(k);
            for (i, &d) in ds.iter().enumerate() {
                top.push(d, i as u32);
            }
            let mut all: Vec<(f64, u32)> =
                ds.iter().enumerate().map(|(i, &d)| (d, i as u32)).collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            prop_assert_eq!(top.kth(), all[k - 1].0);
            let (mut d, mut i) = (vec![0.0; k], vec![0u32; k]);
            top.drain_sorted(&mut d, &mut i);
            let want: (Vec<f64>, Vec<u32>) = all[..k].iter().copied().unzip();
            prop_assert_eq!((d, i), want.clone());

            // Filled in one go from any split of the same entries, then pushed
            // the rest: the same answer.
            let split = ds.len() / 3;
            let mut top = TopK::new(k);
            top.fill_best(ds[..split].iter().enumerate().map(|(i, &d)| (d, i as u32)));
            for (i, &d) in ds.iter().enumerate().skip(split) {
                top.push(d, i as u32);
            }
            let (mut d, mut i) = (vec![0.0; k], vec![0u32; k]);
            top.drain_sorted(&mut d, &mut i);
            prop_assert_eq!((d, i), want);
        }
    }
}
