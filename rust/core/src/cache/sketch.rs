//! A count-min sketch of 4-bit counters with periodic halving (the "aging"
//! of TinyLFU): an approximate, recency-biased access frequency per key hash.
//!
//! Sixteen counters per `u64` word; four counters per key (double hashing
//! over the whole table); a frequency is the smallest of the four. After
//! `10 x capacity` increments every counter is halved, so old popularity
//! fades. An optional doorkeeper (a one-bit-per-slot filter) absorbs the
//! first access of a key so one-hit wonders do not pollute the counters.

/// The frequency sketch.
#[derive(Debug, Clone)]
pub struct Sketch {
    table: Vec<u64>,
    /// `counters - 1` (the count of counters is a power of two).
    mask: u64,
    /// Increments since the last halving.
    additions: u64,
    /// Halve when `additions` reaches this.
    sample_size: u64,
    /// One bit per slot: "seen once since the last halving".
    doorkeeper: Option<Vec<u64>>,
}

/// Counters saturate at 15.
const MAX_COUNT: u64 = 15;

impl Sketch {
    /// A sketch sized for about `capacity` distinct hot keys.
    pub fn new(capacity: usize, doorkeeper: bool) -> Self {
        // One word (16 counters) per expected entry, as Caffeine sizes it.
        let words = capacity.clamp(8, 1 << 26).next_power_of_two();
        let counters = (words as u64) * 16;
        Sketch {
            table: vec![0; words],
            mask: counters - 1,
            additions: 0,
            sample_size: 10 * words as u64,
            doorkeeper: doorkeeper.then(|| vec![0; words]),
        }
    }

    /// The number of distinct keys it was sized for.
    pub fn capacity(&self) -> usize {
        self.table.len()
    }

    /// Bytes of memory the sketch holds.
    pub fn heap_bytes(&self) -> usize {
        (self.table.len() + self.doorkeeper.as_ref().map_or(0, Vec::len)) * 8
    }

    #[inline]
    fn index(&self, hash: u64, i: u64) -> (usize, u32) {
        let a = hash & 0xffff_ffff;
        let b = (hash >> 32) | 1;
        let slot = a.wrapping_add(i.wrapping_mul(b)) & self.mask;
        ((slot >> 4) as usize, ((slot & 15) * 4) as u32)
    }

    #[inline]
    fn door_bit(&self, hash: u64) -> (usize, u64) {
        let bits = (self.table.len() as u64) * 64;
        let slot = hash.rotate_left(23) & (bits - 1);
        ((slot >> 6) as usize, 1u64 << (slot & 63))
    }

    /// The estimated frequency of `hash` (0..=15, plus one when the
    /// doorkeeper has seen it).
    #[inline]
    pub fn frequency(&self, hash: u64) -> u64 {
        let mut min = MAX_COUNT;
        for i in 0..4 {
            let (w, shift) = self.index(hash, i);
            let c = (self.table[w] >> shift) & 0xf;
            min = min.min(c);
        }
        if let Some(door) = &self.doorkeeper {
            let (w, bit) = self.door_bit(hash);
            if door[w] & bit != 0 {
                min += 1;
            }
        }
        min
    }

    /// Count one access of `hash` (conservative update: only the smallest
    /// counters grow).
    #[inline]
    pub fn increment(&mut self, hash: u64) {
        if let Some(door) = &mut self.doorkeeper {
            let bits = (door.len() as u64) * 64;
            let slot = hash.rotate_left(23) & (bits - 1);
            let (w, bit) = ((slot >> 6) as usize, 1u64 << (slot & 63));
            if door[w] & bit == 0 {
                door[w] |= bit;
                self.tick();
                return;
            }
        }
        let mut idx = [(0usize, 0u32); 4];
        let mut min = MAX_COUNT;
        for (i, slot) in idx.iter_mut().enumerate() {
            *slot = self.index(hash, i as u64);
            min = min.min((self.table[slot.0] >> slot.1) & 0xf);
        }
        if min == MAX_COUNT {
            self.tick();
            return;
        }
        for &(w, shift) in &idx {
            if (self.table[w] >> shift) & 0xf == min {
                self.table[w] += 1 << shift;
            }
        }
        self.tick();
    }

    #[inline]
    fn tick(&mut self) {
        self.additions += 1;
        if self.additions >= self.sample_size {
            self.halve();
        }
    }

    /// Halve every counter (and forget the doorkeeper).
    pub fn halve(&mut self) {
        for w in &mut self.table {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        if let Some(door) = &mut self.doorkeeper {
            door.fill(0);
        }
        self.additions /= 2;
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.table.fill(0);
        if let Some(door) = &mut self.doorkeeper {
            door.fill(0);
        }
        self.additions = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Sketch;

    fn mix(x: u64) -> u64 {
        super::super::mix(x)
    }

    #[test]
    fn counts_and_saturates() {
        let mut s = Sketch::new(1024, false);
        let h = mix(42);
        assert_eq!(s.frequency(h), 0);
        for n in 1..=20u64 {
            s.increment(h);
            assert_eq!(s.frequency(h), n.min(15));
        }
        assert_eq!(s.frequency(mix(7)), 0);
    }

    #[test]
    fn halving_ages_counts() {
        let mut s = Sketch::new(16, false);
        let h = mix(1);
        for _ in 0..8 {
            s.increment(h);
        }
        assert_eq!(s.frequency(h), 8);
        s.halve();
        assert_eq!(s.frequency(h), 4);
        // 10 x capacity increments trigger a halving by themselves.
        let mut s = Sketch::new(16, false);
        for _ in 0..12 {
            s.increment(h);
        }
        let before = s.frequency(h);
        for i in 0..(10 * s.capacity() as u64) {
            s.increment(mix(1000 + i));
        }
        assert!(s.frequency(h) < before);
    }

    #[test]
    fn doorkeeper_absorbs_first_access() {
        let mut s = Sketch::new(1024, true);
        let h = mix(9);
        s.increment(h);
        assert_eq!(s.frequency(h), 1);
        s.increment(h);
        assert_eq!(s.frequency(h), 2);
        s.clear();
        assert_eq!(s.frequency(h), 0);
    }
}
