//! A per-thread xorshift generator: cheap randomness for tie-breaking and
//! power-of-two choices (not for anything security-related).

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // Distinct per thread: the address of a thread-local plus the time.
    let marker = 0u8;
    let addr = std::ptr::addr_of!(marker) as u64;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    super::hash::mix(addr ^ t.rotate_left(17)) | 1
}

/// A random u64.
#[inline]
pub fn next() -> u64 {
    STATE
        .try_with(|s| {
            let mut x = s.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            x
        })
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
}

/// A random number in `0..n` (0 when `n == 0`).
#[inline]
pub fn below(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    ((u128::from(next()) * n as u128) >> 64) as usize
}
