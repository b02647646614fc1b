//! A lock-free log-linear latency histogram (HDR-style).
//!
//! Values are `u64` nanoseconds. Below `SUB` (128) every value has its own
//! bucket; above, each power of two is split into `SUB` equal buckets, so a
//! bucket's width is at most 1/128 of its lower bound (<= 0.79%) and the
//! value reported for a bucket (the middle of the integers it holds) is
//! within 0.4% of every value in it. The default range is 1 ns .. 1 hour
//! (4,608 buckets, 36 KiB); values above the range land in the top bucket and
//! are counted as `overflow` (`sum`, `min` and `max` keep their true value).
//!
//! Recording is one index computation and one relaxed `fetch_add` on the
//! bucket, plus relaxed `fetch_add`s on `count` and `sum` and a load (rarely a
//! `fetch_min` / `fetch_max`) for `min` and `max`: any number of threads
//! record at once without a lock. Reads (percentiles, snapshots) scan only
//! the buckets between the smallest and the largest value seen; they see
//! every record that finished before they started, and concurrent records
//! either entirely or not at all per bucket.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::{Error, Result};

/// Bits of sub-bucket precision: 2^7 = 128 buckets per power of two.
pub const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

/// Nanoseconds per second.
pub const NS_PER_S: f64 = 1e9;

/// The default highest trackable value: one hour.
pub const DEFAULT_MAX_NS: u64 = 3_600 * 1_000_000_000;

/// The largest `max_ns` a histogram accepts (about 31.7 years).
pub const MAX_MAX_NS: u64 = 1_000_000_000 * 1_000_000_000;

/// The bucket holding `ns` (unbounded: callers clamp to their top bucket).
#[inline]
pub fn bucket_index(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (ns >> shift) - SUB; // 0..SUB
    (((u64::from(shift) + 1) << SUB_BITS) + sub) as usize
}

/// The smallest value bucket `i` holds.
#[inline]
pub fn bucket_low(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i >> SUB_BITS) - 1;
    let sub = i & (SUB - 1);
    (SUB + sub) << shift
}

/// The largest value bucket `i` holds (inclusive).
#[inline]
pub fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i >> SUB_BITS) - 1;
    bucket_low(i as usize) + ((1u64 << shift) - 1)
}

/// The value reported for bucket `i`: the middle of the integers it holds.
#[inline]
fn bucket_mid(i: usize) -> f64 {
    let lo = bucket_low(i) as f64;
    let hi = bucket_high(i) as f64;
    lo + (hi - lo) / 2.0
}

/// Seconds (as a Python user gives them) to nanoseconds, rounded; negative
/// or NaN values are an error naming `param`. Values too large for `u64`
/// saturate (and so land in the top bucket as overflow).
#[inline]
pub fn seconds_to_ns(seconds: f64, param: &'static str) -> Result<u64> {
    if seconds >= 0.0 {
        // `as` saturates: +inf and 1e300 become u64::MAX.
        Ok((seconds * NS_PER_S).round() as u64)
    } else {
        Err(Error::invalid(
            param,
            seconds,
            "must be a duration in seconds >= 0 (not negative, not NaN)",
        ))
    }
}

/// Check a percentile (0..=100).
#[inline]
pub fn check_percentile(p: f64, param: &'static str) -> Result<f64> {
    if (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(Error::invalid(
            param,
            p,
            "must be a percentile from 0 to 100",
        ))
    }
}

/// The 1-based nearest rank of percentile `p` among `n` values:
/// `max(1, ceil(p / 100 * n))`, computed exactly (no floating-point rounding
/// of `p * n`), so it matches `numpy.percentile(..., method="inverted_cdf")`
/// for the exact binary value of `p`. `p` must be in 0..=100, `n` > 0.
pub fn nearest_rank(p: f64, n: u64) -> u64 {
    if p <= 0.0 || n == 0 {
        return 1;
    }
    if p >= 100.0 {
        return n;
    }
    // p = mant * 2^exp exactly.
    let bits = p.to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mant, exp) = if raw_exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), raw_exp - 1075)
    };
    let num = u128::from(mant) * u128::from(n); // < 2^117
    let rank = if exp >= 0 {
        // p < 100 < 2^7, so mant * 2^exp < 2^7 and the shift cannot overflow.
        (num << exp).div_ceil(100)
    } else if -exp <= 120 {
        num.div_ceil(100u128 << (-exp))
    } else {
        1 // p * n / 100 is positive and far below 1
    };
    (rank as u64).clamp(1, n)
}

/// One non-empty bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Smallest value the bucket holds (ns).
    pub low: u64,
    /// Largest value the bucket holds (ns, inclusive).
    pub high: u64,
    /// Values recorded in it.
    pub count: u64,
}

/// A point-in-time summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Their sum (ns).
    pub sum: u64,
    /// Smallest (ns; 0 when empty).
    pub min: u64,
    /// Largest (ns; 0 when empty).
    pub max: u64,
    /// Values above the trackable range.
    pub overflow: u64,
}

/// A histogram's raw content (see [`Histogram::state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// (bucket index, count) of every non-empty bucket, ascending.
    pub buckets: Vec<(usize, u64)>,
    /// count, sum, min, max, overflow.
    pub summary: Summary,
}

/// A lock-free log-linear histogram of nanosecond values.
#[derive(Debug)]
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    overflow: AtomicU64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with_buckets(DEFAULT_MAX_NS)
    }
}

impl Histogram {
    /// A histogram tracking 0..=`max_ns` nanoseconds at <= 0.79% bucket width.
    pub fn new(max_ns: u64) -> Result<Self> {
        if !(1..=MAX_MAX_NS).contains(&max_ns) {
            return Err(Error::invalid(
                "max_ns",
                max_ns,
                format!("must be from 1 to {MAX_MAX_NS} nanoseconds"),
            ));
        }
        Ok(Histogram::with_buckets(max_ns))
    }

    /// The same, from seconds (`max_seconds` in the message).
    pub fn from_max_seconds(max_seconds: f64) -> Result<Self> {
        let max = MAX_MAX_NS as f64 / NS_PER_S;
        if !(1e-9..=max).contains(&max_seconds) {
            return Err(Error::invalid(
                "max_seconds",
                max_seconds,
                format!("must be a number of seconds from 1e-9 to {max:e}"),
            ));
        }
        Ok(Histogram::with_buckets(
            ((max_seconds * NS_PER_S).round() as u64).max(1),
        ))
    }

    fn with_buckets(max_ns: u64) -> Self {
        let n = bucket_index(max_ns) + 1;
        Histogram {
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            max_ns,
        }
    }

    /// The highest value with its own bucket (ns); larger ones are overflow.
    pub fn max_trackable(&self) -> u64 {
        self.max_ns
    }

    /// Number of buckets (memory is 8 bytes each).
    pub fn bucket_count(&self) -> usize {
        self.counts.len()
    }

    #[inline]
    fn top(&self) -> usize {
        self.counts.len() - 1
    }

    /// Record one value (ns).
    #[inline]
    pub fn record(&self, ns: u64) {
        let i = if ns <= self.max_ns {
            bucket_index(ns)
        } else {
            self.overflow.fetch_add(1, Relaxed);
            self.top()
        };
        // min/max first, so a reader that sees the bucket count also scans it.
        if ns < self.min.load(Relaxed) {
            self.min.fetch_min(ns, Relaxed);
        }
        if ns > self.max.load(Relaxed) {
            self.max.fetch_max(ns, Relaxed);
        }
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(ns, Relaxed);
    }

    /// Record many values, with one update of the totals.
    pub fn record_many(&self, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let (mut lo, mut hi, mut sum, mut over) = (u64::MAX, 0u64, 0u64, 0u64);
        let top = self.top();
        for &ns in values {
            lo = lo.min(ns);
            hi = hi.max(ns);
            sum = sum.wrapping_add(ns);
            let i = if ns <= self.max_ns {
                bucket_index(ns)
            } else {
                over += 1;
                top
            };
            if let Some(c) = self.counts.get(i) {
                c.fetch_add(1, Relaxed);
            }
        }
        self.min.fetch_min(lo, Relaxed);
        self.max.fetch_max(hi, Relaxed);
        if over > 0 {
            self.overflow.fetch_add(over, Relaxed);
        }
        self.count.fetch_add(values.len() as u64, Relaxed);
        self.sum.fetch_add(sum, Relaxed);
    }

    /// Add every value `other` recorded (its range may differ: values above
    /// this one's range become overflow here).
    pub fn merge(&self, other: &Histogram) {
        let s = other.summary();
        if s.count == 0 {
            return;
        }
        // Bucket indices mean the same values in every histogram; buckets
        // above this one's range move into its top bucket as overflow.
        let top = self.top();
        let mut over = 0u64;
        for (i, c) in other.counts.iter().enumerate() {
            let n = c.load(Relaxed);
            if n == 0 {
                continue;
            }
            let j = if i <= top {
                i
            } else {
                over += n;
                top
            };
            if let Some(dst) = self.counts.get(j) {
                dst.fetch_add(n, Relaxed);
            }
        }
        // `other`'s own overflow sits in its top bucket: counted in `over`
        // if that bucket moved, else carried over as it is.
        if other.top() <= top {
            over += s.overflow;
        }
        if over > 0 {
            self.overflow.fetch_add(over, Relaxed);
        }
        self.min.fetch_min(s.min, Relaxed);
        self.max.fetch_max(s.max, Relaxed);
        self.count.fetch_add(s.count, Relaxed);
        self.sum.fetch_add(s.sum, Relaxed);
    }

    /// The raw state (non-empty buckets by index, and the totals), for
    /// serialisation; [`Histogram::add_state`] adds it back.
    pub fn state(&self) -> State {
        let range = self.live_range();
        let start = range.start;
        State {
            buckets: self.counts[range]
                .iter()
                .enumerate()
                .filter_map(|(off, c)| {
                    let n = c.load(Relaxed);
                    (n > 0).then_some((start + off, n))
                })
                .collect(),
            summary: self.summary(),
        }
    }

    /// Add a state taken with [`Histogram::state`] from a histogram with the
    /// same range (indices past this one's buckets are an error, and nothing
    /// is added then).
    pub fn add_state(&self, state: &State) -> Result<()> {
        let top = self.top();
        if let Some(&(i, _)) = state.buckets.iter().find(|&&(i, _)| i > top) {
            return Err(Error::invalid(
                "state",
                format!("bucket {i}"),
                format!(
                    "must come from a histogram with at most {} buckets",
                    top + 1
                ),
            ));
        }
        let s = state.summary;
        if s.count == 0 {
            return Ok(());
        }
        for &(i, n) in &state.buckets {
            if let Some(c) = self.counts.get(i) {
                c.fetch_add(n, Relaxed);
            }
        }
        self.min.fetch_min(s.min, Relaxed);
        self.max.fetch_max(s.max, Relaxed);
        self.overflow.fetch_add(s.overflow, Relaxed);
        self.count.fetch_add(s.count, Relaxed);
        self.sum.fetch_add(s.sum, Relaxed);
        Ok(())
    }

    /// Forget everything (not atomic with respect to concurrent records: a
    /// record racing a reset may survive it in part).
    pub fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.sum.store(0, Relaxed);
        self.overflow.store(0, Relaxed);
        self.min.store(u64::MAX, Relaxed);
        self.max.store(0, Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Their sum (ns; wraps after 2^64 ns, about 584 years in total).
    pub fn sum(&self) -> u64 {
        self.sum.load(Relaxed)
    }

    /// Smallest value (ns); 0 when empty.
    pub fn min(&self) -> u64 {
        match self.min.load(Relaxed) {
            u64::MAX if self.count() == 0 => 0,
            v => v,
        }
    }

    /// Largest value (ns); 0 when empty.
    pub fn max(&self) -> u64 {
        self.max.load(Relaxed)
    }

    /// Values above the trackable range.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Relaxed)
    }

    /// Mean (ns); 0 when empty.
    pub fn mean(&self) -> f64 {
        crate::stats::ratio(self.sum(), self.count())
    }

    /// count, sum, min, max and overflow, read once each.
    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count(),
            sum: self.sum(),
            min: self.min(),
            max: self.max(),
            overflow: self.overflow(),
        }
    }

    /// The bucket range holding every recorded value (empty when none).
    fn live_range(&self) -> std::ops::Range<usize> {
        let lo = self.min.load(Relaxed);
        let hi = self.max.load(Relaxed);
        if lo > hi {
            return 0..0;
        }
        let top = self.top();
        let a = bucket_index(lo.min(self.max_ns)).min(top);
        let b = bucket_index(hi.min(self.max_ns)).min(top);
        a..b + 1
    }

    /// The `p`-th percentile (0..=100, nearest rank) in ns; 0 when empty.
    pub fn percentile(&self, p: f64) -> Result<f64> {
        Ok(self.percentiles(&[p])?.first().copied().unwrap_or(0.0))
    }

    /// Several percentiles in one pass (ns, in the order given).
    ///
    /// The value for a rank is the middle of the bucket holding it, clamped to
    /// the recorded min and max (which rank 1 and rank n return exactly), so
    /// it is within 0.4% of the exact nearest-rank percentile (exact below
    /// 128 ns). Ranks in the lower half are found scanning up from the
    /// smallest value, the others scanning down from the largest, so a p99
    /// reads a handful of buckets.
    pub fn percentiles(&self, ps: &[f64]) -> Result<Vec<f64>> {
        for &p in ps {
            check_percentile(p, "p")?;
        }
        let range = self.live_range();
        let total = self.count();
        if total == 0 || range.is_empty() {
            return Ok(vec![0.0; ps.len()]);
        }
        let (lo, hi) = (self.min() as f64, self.max() as f64);
        let hi = hi.max(lo);
        let mut out = vec![hi; ps.len()];
        // (rank counted from the scan's end, output slot)
        let mut up: Vec<(u64, usize)> = Vec::new();
        let mut down: Vec<(u64, usize)> = Vec::new();
        for (k, &p) in ps.iter().enumerate() {
            let rank = nearest_rank(p, total);
            let slot = out.get_mut(k);
            match slot {
                Some(s) if rank == 1 => *s = lo,
                Some(s) if rank == total => *s = hi,
                _ if rank <= total / 2 => up.push((rank, k)),
                _ => down.push((total - rank + 1, k)),
            }
        }
        let counts = &self.counts[range.clone()];
        let mid = |off: usize| bucket_mid(range.start + off).clamp(lo, hi);
        let mut scan = |wanted: &mut Vec<(u64, usize)>,
                        iter: &mut dyn Iterator<Item = (usize, u64)>| {
            wanted.sort_unstable();
            let mut want = wanted.iter().peekable();
            let mut seen = 0u64;
            for (off, c) in iter {
                if want.peek().is_none() {
                    break;
                }
                seen += c;
                while let Some(&&(rank, k)) = want.peek() {
                    if rank > seen {
                        break;
                    }
                    if let Some(s) = out.get_mut(k) {
                        *s = mid(off);
                    }
                    want.next();
                }
            }
        };
        if !up.is_empty() {
            scan(
                &mut up,
                &mut counts
                    .iter()
                    .enumerate()
                    .map(|(off, c)| (off, c.load(Relaxed))),
            );
        }
        if !down.is_empty() {
            scan(
                &mut down,
                &mut counts
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(off, c)| (off, c.load(Relaxed))),
            );
        }
        Ok(out)
    }

    /// The non-empty buckets, smallest first.
    pub fn buckets(&self) -> Vec<Bucket> {
        let range = self.live_range();
        let start = range.start;
        self.counts[range]
            .iter()
            .enumerate()
            .filter_map(|(off, c)| {
                let count = c.load(Relaxed);
                (count > 0).then(|| Bucket {
                    low: bucket_low(start + off),
                    high: bucket_high(start + off),
                    count,
                })
            })
            .collect()
    }

    /// Cumulative counts at `bounds` (ns, ascending), Prometheus `le` style:
    /// for each bound, the values in buckets whose highest value is <= it.
    /// Values in a bucket a bound cuts count toward the next bound (the
    /// error is at most one bucket, 0.79%). Overflow counts toward no bound.
    pub fn cumulative(&self, bounds: &[u64]) -> Vec<u64> {
        let buckets = self.buckets();
        let over = self.overflow();
        let mut out = Vec::with_capacity(bounds.len());
        let mut it = buckets.iter().peekable();
        let mut acc = 0u64;
        let top_low = bucket_low(self.top());
        for &b in bounds {
            while let Some(bk) = it.peek() {
                if bk.high > b {
                    break;
                }
                // The top bucket's overflow values lie above every bound.
                acc += if bk.low == top_low {
                    bk.count - over.min(bk.count)
                } else {
                    bk.count
                };
                it.next();
            }
            out.push(acc);
        }
        out
    }
}

#[cfg(test)]
mod tests;
