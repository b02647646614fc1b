//! The store's entry array: chunks that never move, so growing it copies
//! nothing and leaves no half-empty doubled buffer behind (a doubling `Vec`
//! keeps up to 2x its length allocated, and the old buffer freed at each
//! doubling may stay resident in the allocator).
//!
//! The first chunk is sized for the entries the store expects (its entry
//! bound, when it has one; else [`CHUNK`]): an index in it is one address
//! computation, with no chunk directory to load first (a lookup follows a
//! chain of dependent loads, and this takes one out). Further chunks hold
//! [`CHUNK`] each.

use std::ops::{Index, IndexMut};

/// Entries per further chunk (a power of two).
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const MASK: usize = CHUNK - 1;

/// An append-only array of `T` in chunks.
pub(super) struct Slab<T> {
    /// The first `first_cap` elements (allocated on the first push).
    first: Vec<T>,
    /// Capacity of `first` once allocated (0 before).
    first_cap: usize,
    /// The size `first` is allocated with.
    first_target: usize,
    /// Elements from `first_cap` on, [`CHUNK`] per chunk.
    rest: Vec<Vec<T>>,
    len: usize,
}

impl<T> Slab<T> {
    /// An empty slab whose first chunk will hold `first` elements (at least
    /// [`CHUNK`]).
    pub(super) fn with_first_chunk(first: usize) -> Self {
        Slab {
            first: Vec::new(),
            first_cap: 0,
            first_target: first.max(CHUNK),
            rest: Vec::new(),
            len: 0,
        }
    }

    #[cfg(test)]
    pub(super) fn new() -> Self {
        Self::with_first_chunk(CHUNK)
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated.
    pub(super) fn capacity(&self) -> usize {
        self.first.capacity() + self.rest.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Bytes allocated for the chunks and their directory.
    pub(super) fn heap_bytes(&self) -> usize {
        self.capacity() * std::mem::size_of::<T>()
            + self.rest.capacity() * std::mem::size_of::<Vec<T>>()
    }

    pub(super) fn push(&mut self, value: T) {
        if self.len == 0 && self.first_cap == 0 {
            self.first = Vec::with_capacity(self.first_target);
            self.first_cap = self.first_target;
        }
        if self.len < self.first_cap {
            self.first.push(value);
            self.len += 1;
            return;
        }
        let j = self.len - self.first_cap;
        if j & MASK == 0 {
            self.rest.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.rest.last_mut() {
            chunk.push(value);
            self.len += 1;
        }
    }

    /// The element at `i`, without bounds checks.
    ///
    /// # Safety
    /// `i < self.len()`.
    #[inline]
    pub(super) unsafe fn get_unchecked(&self, i: usize) -> &T {
        debug_assert!(i < self.len);
        if i < self.first_cap {
            // SAFETY: i < len; the first chunk holds min(len, first_cap)
            // elements, so i is below its length.
            return unsafe { self.first.get_unchecked(i) };
        }
        let j = i - self.first_cap;
        // SAFETY: i < len, so chunk j >> CHUNK_BITS exists and holds at
        // least (j & MASK) + 1 elements (every chunk before the last is full).
        unsafe {
            self.rest
                .get_unchecked(j >> CHUNK_BITS)
                .get_unchecked(j & MASK)
        }
    }

    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.first.iter().chain(self.rest.iter().flatten())
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.first.iter_mut().chain(self.rest.iter_mut().flatten())
    }

    /// Take every element out, leaving the slab empty (and unallocated).
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = T> {
        self.len = 0;
        self.first_cap = 0;
        let first = std::mem::take(&mut self.first);
        first
            .into_iter()
            .chain(std::mem::take(&mut self.rest).into_iter().flatten())
    }
}

impl<T> Index<usize> for Slab<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        if i < self.first_cap {
            return &self.first[i];
        }
        let j = i - self.first_cap;
        &self.rest[j >> CHUNK_BITS][j & MASK]
    }
}

impl<T> IndexMut<usize> for Slab<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        if i < self.first_cap {
            return &mut self.first[i];
        }
        let j = i - self.first_cap;
        &mut self.rest[j >> CHUNK_BITS][j & MASK]
    }
}

#[cfg(test)]
mod tests {
    use super::{Slab, CHUNK};

    #[test]
    fn grows_by_chunks_and_indexes() {
        let mut s = Slab::new();
        for i in 0..(3 * CHUNK + 5) {
            s.push(i);
        }
        assert_eq!(s.len(), 3 * CHUNK + 5);
        assert_eq!(s.capacity(), 4 * CHUNK);
        assert_eq!(s[CHUNK + 7], CHUNK + 7);
        // SAFETY: the index is below len.
        unsafe {
            assert_eq!(*s.get_unchecked(3 * CHUNK + 4), 3 * CHUNK + 4);
        }
        s[5] = 99;
        assert_eq!(s.iter().nth(5), Some(&99));
        for v in s.iter_mut() {
            *v += 1;
        }
        assert_eq!(s[3 * CHUNK + 4], 3 * CHUNK + 5);
        assert_eq!(s.take_all().count(), 3 * CHUNK + 5);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_large_first_chunk_then_small_ones() {
        let first = 3 * CHUNK + 1;
        let mut s = Slab::with_first_chunk(first);
        for round in 0..2 {
            for i in 0..(first + CHUNK + 3) {
                s.push(i + round);
            }
            assert_eq!(s.len(), first + CHUNK + 3);
            assert!(s.capacity() >= first + 2 * CHUNK);
            for i in [0, first - 1, first, first + CHUNK, first + CHUNK + 2] {
                assert_eq!(s[i], i + round);
                // SAFETY: i is below len.
                assert_eq!(unsafe { *s.get_unchecked(i) }, i + round);
            }
            s[first] = 7;
            assert_eq!(s.iter().nth(first), Some(&7));
            assert!(s.iter_mut().count() == first + CHUNK + 3);
            // After take_all the slab allocates its first chunk again.
            assert_eq!(s.take_all().count(), first + CHUNK + 3);
            assert_eq!((s.len(), s.capacity()), (0, 0));
        }
    }
}
