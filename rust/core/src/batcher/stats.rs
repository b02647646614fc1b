//! Batcher counters and two small latency histograms (queue wait, handler
//! time). They live under the queue's lock, which formation holds anyway.

use std::time::Duration;

use super::Reason;

/// Sub-buckets per power of two: values are kept within ~6%.
const SUB: u32 = 16;
const BUCKETS: usize = 64 * SUB as usize;

/// A log-linear histogram of durations (nanoseconds).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max_ns: 0,
        }
    }
}

fn bucket(ns: u64) -> usize {
    if ns < u64::from(SUB) {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= log2(SUB)
    let shift = exp - SUB.trailing_zeros();
    let sub = (ns >> shift) as u32 - SUB; // 0..SUB
    ((shift + 1) * SUB + sub) as usize
}

fn bucket_low(i: usize) -> u64 {
    let i = i as u32;
    if i < SUB {
        return u64::from(i);
    }
    let shift = i / SUB - 1;
    let sub = i % SUB;
    u64::from(SUB + sub) << shift
}

impl Histogram {
    /// Record one duration.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = bucket(ns).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Record the same duration `n` times (a batch of messages that all
    /// waited at most this long).
    pub fn record_n(&mut self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = bucket(ns).min(BUCKETS - 1);
        self.counts[i] += n;
        self.total += n;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `p`-th percentile (0-100) in seconds; 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.total as f64)
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let lo = bucket_low(i);
                let hi = bucket_low(i + 1).max(lo + 1);
                let mid = (lo + (hi - lo) / 2).min(self.max_ns);
                return mid as f64 / 1e9;
            }
        }
        self.max_ns as f64 / 1e9
    }
}

/// Every counter of one batcher.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Items accepted.
    pub submitted: u64,
    /// Items whose handler result was delivered.
    pub completed: u64,
    /// Items that failed (handler error, wrong result, exception in a slot).
    pub failed: u64,
    /// Items whose deadline passed before they ran.
    pub expired: u64,
    /// Items refused at push (full queue, admission, closed).
    pub rejected: u64,
    /// Items evicted by `drop_oldest`.
    pub dropped: u64,
    /// Items cancelled by their caller before they ran.
    pub cancelled: u64,
    /// Batches dispatched.
    pub batches: u64,
    /// Items dispatched in batches.
    pub batched_items: u64,
    /// Batches by size: index i counts sizes in [2^i, 2^(i+1)).
    pub size_log2: [u64; 24],
    /// Batches per dispatch reason (in `Reason::ALL` order).
    pub reasons: [u64; 6],
    /// Time from arrival to dispatch, per item.
    pub queue_wait: Histogram,
    /// Handler time per batch.
    pub handler_time: Histogram,
}

impl Stats {
    /// Items accepted and not yet completed, failed, expired, dropped or
    /// cancelled: queued, or in a batch that has not finished.
    pub fn outstanding(&self) -> u64 {
        self.submitted.saturating_sub(
            self.completed + self.failed + self.expired + self.dropped + self.cancelled,
        )
    }

    /// Count one dispatched batch.
    pub fn batch(&mut self, size: usize, reason: Reason) {
        self.batches += 1;
        self.batched_items += size as u64;
        let i = (usize::BITS - 1 - size.max(1).leading_zeros()) as usize;
        self.size_log2[i.min(23)] += 1;
        self.reasons[reason.index()] += 1;
    }

    /// The batch-size distribution as (label, count) pairs, non-zero only.
    pub fn size_buckets(&self) -> Vec<(String, u64)> {
        self.size_log2
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let lo = 1u64 << i;
                let hi = (1u64 << (i + 1)) - 1;
                let label = if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                };
                (label, c)
            })
            .collect()
    }
}

/// A copy of [`Stats`] plus live values, taken under the lock.
#[derive(Debug, Clone)]
pub struct StatsSnapshot {
    /// The counters.
    pub stats: Stats,
    /// Items queued now.
    pub queue_depth: usize,
    /// Lanes (one per key with queued items) now.
    pub lanes: usize,
    /// Batches running now.
    pub in_flight: usize,
    /// The adaptive model: (a seconds, b seconds per item, chosen size, AIMD cap).
    pub model: (f64, f64, usize, usize),
}
