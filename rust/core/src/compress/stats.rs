//! Counters for a `Compressor`: relaxed atomics, read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Calls and bytes through one compressor.
#[derive(Debug, Default)]
pub struct CompressorStats {
    compress_calls: AtomicU64,
    decompress_calls: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    raw_packed: AtomicU64,
    errors: AtomicU64,
}

/// A point-in-time copy of [`CompressorStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Inputs compressed (or packed).
    pub compress_calls: u64,
    /// Inputs decompressed (or unpacked).
    pub decompress_calls: u64,
    /// Uncompressed bytes given to compress/pack.
    pub bytes_in: u64,
    /// Bytes those calls produced.
    pub bytes_out: u64,
    /// Packs stored raw (below threshold or incompressible).
    pub raw_packed: u64,
    /// Calls that failed.
    pub errors: u64,
}

impl CompressorStats {
    /// Count `items` inputs of `n_in` bytes in all compressed into `n_out`.
    pub fn compressed(&self, items: usize, n_in: usize, n_out: usize) {
        self.compress_calls.fetch_add(items as u64, Relaxed);
        self.bytes_in.fetch_add(n_in as u64, Relaxed);
        self.bytes_out.fetch_add(n_out as u64, Relaxed);
    }

    /// Count one pack that stored its input raw.
    pub fn packed_raw(&self) {
        self.raw_packed.fetch_add(1, Relaxed);
    }

    /// Count `items` decompressed inputs.
    pub fn decompressed(&self, items: usize) {
        self.decompress_calls.fetch_add(items as u64, Relaxed);
    }

    /// Count one failure.
    pub fn failed(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// Read every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            compress_calls: self.compress_calls.load(Relaxed),
            decompress_calls: self.decompress_calls.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            raw_packed: self.raw_packed.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}
