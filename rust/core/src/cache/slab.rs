//! The store's entry array: fixed-size chunks that never move, so growing
//! it copies nothing and leaves no half-empty doubled buffer behind (a
//! doubling `Vec` keeps up to 2x its length allocated, and the old buffer
//! freed at each doubling may stay resident in the allocator).

use std::ops::{Index, IndexMut};

/// Entries per chunk (a power of two).
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const MASK: usize = CHUNK - 1;

/// An append-only array of `T` in chunks of [`CHUNK`].
pub(super) struct Slab<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Slab<T> {
    pub(super) fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated (a whole number of chunks).
    pub(super) fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }

    /// Bytes allocated for the chunks and their directory.
    pub(super) fn heap_bytes(&self) -> usize {
        self.capacity() * std::mem::size_of::<T>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
    }

    pub(super) fn push(&mut self, value: T) {
        if self.len & MASK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
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
        // SAFETY: i < len, so chunk i >> CHUNK_BITS exists and holds at
        // least (i & MASK) + 1 elements (every chunk before the last is full).
        unsafe {
            self.chunks
                .get_unchecked(i >> CHUNK_BITS)
                .get_unchecked(i & MASK)
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }

    /// Take every element out, leaving the slab empty (and unallocated).
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = T> {
        self.len = 0;
        std::mem::take(&mut self.chunks).into_iter().flatten()
    }
}

impl<T> Index<usize> for Slab<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & MASK]
    }
}

impl<T> IndexMut<usize> for Slab<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> CHUNK_BITS][i & MASK]
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
        // SAFETY: both indices are below len.
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
}
