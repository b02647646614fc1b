//! A fixed 64-bit hash (FNV-1a with a murmur3 finaliser): the same value in
//! every process, on every platform, unlike Python's salted `hash()`.

/// murmur3's 64-bit finaliser: full avalanche of the input bits.
#[inline]
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Hash bytes (with a one-byte type tag so `"1"`, `b"1"` and `1` differ).
#[inline]
pub fn hash_tagged(tag: u8, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    h = (h ^ u64::from(tag)).wrapping_mul(0x0100_0000_01b3);
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h ^ bytes.len() as u64)
}

/// A routing key as the router hashes it.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// A str (hashed as UTF-8).
    Str(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
    /// An integer that fits in i64.
    Int(i64),
}

impl Key<'_> {
    /// The fixed hash of the key.
    #[inline]
    pub fn hash(&self) -> u64 {
        match self {
            Key::Str(s) => hash_tagged(b's', s.as_bytes()),
            Key::Bytes(b) => hash_tagged(b'b', b),
            Key::Int(i) => hash_tagged(b'i', &i.to_le_bytes()),
        }
    }
}
