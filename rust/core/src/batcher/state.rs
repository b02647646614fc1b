//! The pure batch-formation policy: queued items by key and priority, and
//! the decision "dispatch this batch now, or wait until then".
//!
//! Nothing here reads the clock or blocks: `now` is an argument, so every
//! rule is unit- and property-tested without threads.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{Config, Meta, Reason};

struct Entry<T> {
    seq: u64,
    arrival: Instant,
    meta: Meta,
    value: T,
}

/// The items of one key, by priority level (highest first), FIFO within a level.
struct Lane<T> {
    levels: BTreeMap<Reverse<i32>, VecDeque<Entry<T>>>,
    len: usize,
    weight: u64,
}

impl<T> Lane<T> {
    fn new() -> Self {
        Lane {
            levels: BTreeMap::new(),
            len: 0,
            weight: 0,
        }
    }

    /// (seq, arrival) of the oldest item.
    fn head(&self) -> Option<(u64, Instant)> {
        self.levels
            .values()
            .filter_map(|q| q.front().map(|e| (e.seq, e.arrival)))
            .min_by_key(|&(seq, _)| seq)
    }

    /// The level whose head should go next: highest aged priority, then oldest.
    fn best_level(&self, now: Instant, aging: Duration) -> Option<Reverse<i32>> {
        if self.levels.len() == 1 {
            return self.levels.keys().next().copied();
        }
        let aging = aging.as_secs_f64();
        let mut best: Option<(f64, u64, Reverse<i32>)> = None;
        for (level, q) in &self.levels {
            let Some(e) = q.front() else { continue };
            let waited = now.saturating_duration_since(e.arrival).as_secs_f64();
            let eff = f64::from(e.meta.priority) + waited / aging;
            let better = match best {
                None => true,
                Some((b, seq, _)) => eff > b || (eff == b && e.seq < seq),
            };
            if better {
                best = Some((eff, e.seq, *level));
            }
        }
        best.map(|(_, _, level)| level)
    }

    fn pop(&mut self, level: Reverse<i32>) -> Option<Entry<T>> {
        let q = self.levels.get_mut(&level)?;
        let e = q.pop_front()?;
        if q.is_empty() {
            self.levels.remove(&level);
        }
        self.len -= 1;
        self.weight = self.weight.saturating_sub(e.meta.weight);
        Some(e)
    }

    fn peek_weight(&self, level: Reverse<i32>) -> u64 {
        self.levels
            .get(&level)
            .and_then(|q| q.front())
            .map_or(0, |e| e.meta.weight)
    }
}

/// A formed batch: the items in dispatch order (priority, then arrival).
#[derive(Debug)]
pub struct Batch<T> {
    /// The items, highest priority first, FIFO among equals.
    pub items: Vec<T>,
    /// Each item's priority (same order).
    pub priorities: Vec<i32>,
    /// Each item's arrival (same order).
    pub arrivals: Vec<Instant>,
    /// Total weight.
    pub weight: u64,
    /// The key every item shares.
    pub key: u64,
    /// Why it was dispatched.
    pub reason: Reason,
    /// 1, 2, 3, ... in the order batches were formed.
    pub seq: u64,
}

/// The outcome of [`State::form`].
#[derive(Debug)]
pub enum Formation<T> {
    /// Run this batch now.
    Batch(Batch<T>),
    /// Nothing to run yet; ask again at this instant (None: when woken).
    Wait(Option<Instant>),
}

/// Below this many slots the lane map is never shrunk.
const MIN_LANE_CAPACITY: usize = 64;

/// Queued items and the formation rules over them.
///
/// A lane exists only while items of its key are queued: an emptied lane is
/// removed at once, and the map gives memory back when most of its slots are
/// free (so many distinct keys over time cost nothing once they drained).
pub struct State<T> {
    lanes: HashMap<u64, Lane<T>>,
    /// Keys whose lanes emptied, kept only with `track_emptied`.
    emptied: Vec<u64>,
    track_emptied: bool,
    len: usize,
    seq: u64,
    next_deadline: Option<Instant>,
    flush_upto: u64,
    closed: bool,
    batches: u64,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> State<T> {
    /// An empty, open state.
    pub fn new() -> Self {
        State {
            lanes: HashMap::new(),
            emptied: Vec::new(),
            track_emptied: false,
            len: 0,
            seq: 0,
            next_deadline: None,
            flush_upto: 0,
            closed: false,
            batches: 0,
        }
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Lanes (keys with queued items).
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Slots the lane map holds memory for (at least `lanes()`).
    pub fn lane_capacity(&self) -> usize {
        self.lanes.capacity()
    }

    /// Remember (or not) the keys whose lanes empty, for `take_emptied_keys`.
    pub fn track_emptied_keys(&mut self, on: bool) {
        self.track_emptied = on;
        if !on {
            self.emptied = Vec::new();
        }
    }

    /// True when `take_emptied_keys` has keys to hand out.
    pub fn has_emptied_keys(&self) -> bool {
        !self.emptied.is_empty()
    }

    /// The keys (other than 0, the unkeyed lane) whose lanes emptied since
    /// the last call; none of their items is queued now.
    pub fn take_emptied_keys(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.emptied)
    }

    /// Drop the lane of `key`, which just emptied.
    fn remove_lane(&mut self, key: u64) {
        self.lanes.remove(&key);
        self.lane_removed(key);
        self.shrink_lanes();
    }

    fn lane_removed(&mut self, key: u64) {
        if self.track_emptied && key != 0 {
            self.emptied.push(key);
        }
    }

    /// Give memory back once three quarters of the map's slots are free
    /// (amortised: the map must have halved since it was last sized).
    fn shrink_lanes(&mut self) {
        let cap = self.lanes.capacity();
        if cap > MIN_LANE_CAPACITY && self.lanes.len() * 4 < cap {
            self.lanes
                .shrink_to((self.lanes.len() * 2).max(MIN_LANE_CAPACITY));
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Closed: no more pushes; everything queued is forced out.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Stop accepting; force out what is queued.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// True when closing or a flush forces queued items out now (so a batch
    /// may be due whatever its size or age).
    pub fn forced(&self) -> bool {
        self.closed
            || (self.flush_upto > 0
                && self
                    .lanes
                    .values()
                    .any(|l| l.head().is_some_and(|(seq, _)| seq <= self.flush_upto)))
    }

    /// Force out every item queued so far, as soon as slots allow.
    pub fn flush(&mut self) {
        self.flush_upto = self.seq;
    }

    /// Queue `value` (the caller checked capacity and closing).
    pub fn push(&mut self, value: T, meta: Meta, now: Instant) {
        self.seq += 1;
        if let Some(d) = meta.deadline {
            self.next_deadline = Some(self.next_deadline.map_or(d, |n| n.min(d)));
        }
        let lane = self.lanes.entry(meta.key).or_insert_with(Lane::new);
        lane.len += 1;
        lane.weight = lane.weight.saturating_add(meta.weight);
        lane.levels
            .entry(Reverse(meta.priority))
            .or_default()
            .push_back(Entry {
                seq: self.seq,
                arrival: now,
                meta,
                value,
            });
        self.len += 1;
    }

    /// Remove and return the oldest queued item (for `drop_oldest`).
    pub fn pop_oldest(&mut self) -> Option<T> {
        let (&key, _) = self
            .lanes
            .iter()
            .filter_map(|(k, l)| l.head().map(|h| (k, h.0)))
            .min_by_key(|&(_, seq)| seq)?;
        let lane = self.lanes.get_mut(&key)?;
        let level = lane
            .levels
            .iter()
            .filter_map(|(lvl, q)| q.front().map(|e| (*lvl, e.seq)))
            .min_by_key(|&(_, seq)| seq)
            .map(|(lvl, _)| lvl)?;
        let e = lane.pop(level)?;
        if lane.len == 0 {
            self.remove_lane(key);
        }
        self.len -= 1;
        Some(e.value)
    }

    /// Remove every item whose deadline is at or before `now`.
    pub fn take_expired(&mut self, now: Instant) -> Vec<T> {
        match self.next_deadline {
            Some(d) if d <= now => {}
            _ => return Vec::new(),
        }
        let mut out = Vec::new();
        let mut next: Option<Instant> = None;
        for lane in self.lanes.values_mut() {
            for q in lane.levels.values_mut() {
                if !q.iter().any(|e| e.meta.deadline.is_some()) {
                    continue;
                }
                let mut keep = VecDeque::with_capacity(q.len());
                for e in q.drain(..) {
                    match e.meta.deadline {
                        Some(d) if d <= now => {
                            lane.len -= 1;
                            lane.weight = lane.weight.saturating_sub(e.meta.weight);
                            out.push(e.value);
                        }
                        Some(d) => {
                            next = Some(next.map_or(d, |n| n.min(d)));
                            keep.push_back(e);
                        }
                        None => keep.push_back(e),
                    }
                }
                *q = keep;
            }
            lane.levels.retain(|_, q| !q.is_empty());
        }
        let emptied: Vec<u64> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.len == 0)
            .map(|(&k, _)| k)
            .collect();
        for key in emptied {
            self.lanes.remove(&key);
            self.lane_removed(key);
        }
        self.shrink_lanes();
        self.len -= out.len();
        self.next_deadline = next;
        out
    }

    /// Remove everything (in arrival order), e.g. to fail it.
    pub fn drain_all(&mut self) -> Vec<T> {
        let mut all: Vec<Entry<T>> = Vec::with_capacity(self.len);
        let lanes = std::mem::take(&mut self.lanes);
        for (key, lane) in lanes {
            self.lane_removed(key);
            for (_, q) in lane.levels {
                all.extend(q);
            }
        }
        all.sort_by_key(|e| e.seq);
        self.len = 0;
        self.next_deadline = None;
        all.into_iter().map(|e| e.value).collect()
    }

    /// Decide what to dispatch at `now`, with `in_flight` batches running.
    ///
    /// `cap` is the batch size in force (the configured maximum, or the
    /// adaptive choice) and `wait` the longest the oldest item may wait.
    pub fn form(
        &mut self,
        now: Instant,
        cfg: &Config,
        cap: usize,
        wait: Duration,
        in_flight: usize,
    ) -> Formation<T> {
        let deadline_wake = self.next_deadline;
        if self.len == 0 || in_flight >= cfg.max_concurrency {
            return Formation::Wait(deadline_wake);
        }
        let cap = cap.clamp(1, cfg.max_batch_size);
        // Among lanes ready to go, the one whose head is oldest (fairness).
        let mut chosen: Option<(u64, u64, Reason)> = None;
        let mut wake: Option<Instant> = deadline_wake;
        for (&key, lane) in &self.lanes {
            let Some((seq, arrival)) = lane.head() else {
                continue;
            };
            let due = arrival + wait;
            let reason = if lane.len >= cap {
                Some(Reason::Size)
            } else if cfg.max_batch_weight.is_some_and(|w| lane.weight >= w) {
                Some(Reason::Weight)
            } else if now >= due {
                Some(Reason::Time)
            } else if self.closed {
                Some(Reason::Close)
            } else if seq <= self.flush_upto {
                Some(Reason::Flush)
            } else if in_flight == 0 && cfg.idle_dispatch {
                Some(Reason::Idle)
            } else {
                None
            };
            match reason {
                Some(r) => {
                    if chosen.is_none_or(|(_, s, _)| seq < s) {
                        chosen = Some((key, seq, r));
                    }
                }
                None => wake = Some(wake.map_or(due, |w| w.min(due))),
            }
        }
        let Some((key, _, reason)) = chosen else {
            return Formation::Wait(wake);
        };
        match self.take(key, now, cap, cfg, reason) {
            Some(b) => Formation::Batch(b),
            None => Formation::Wait(wake),
        }
    }

    fn take(
        &mut self,
        key: u64,
        now: Instant,
        cap: usize,
        cfg: &Config,
        mut reason: Reason,
    ) -> Option<Batch<T>> {
        let lane = self.lanes.get_mut(&key)?;
        let mut taken: Vec<Entry<T>> = Vec::with_capacity(cap.min(lane.len));
        let mut weight = 0u64;
        if cfg.max_batch_weight.is_none() && lane.levels.len() == 1 {
            // One priority level, no weight limit: the batch is the level's
            // first `cap` items (a single drain keeps the lock short).
            if let Some(mut entry) = lane.levels.first_entry() {
                let q = entry.get_mut();
                let k = cap.min(q.len());
                taken.extend(q.drain(..k));
                if q.is_empty() {
                    entry.remove();
                }
            }
            for e in &taken {
                weight = weight.saturating_add(e.meta.weight);
            }
            lane.len -= taken.len();
            lane.weight = lane.weight.saturating_sub(weight);
        }
        while taken.len() < cap {
            let Some(level) = lane.best_level(now, cfg.aging) else {
                break;
            };
            if let Some(limit) = cfg.max_batch_weight {
                let w = lane.peek_weight(level);
                if weight.saturating_add(w) > limit {
                    reason = Reason::Weight;
                    if taken.is_empty() {
                        // Oversize: it runs alone rather than failing.
                        if let Some(e) = lane.pop(level) {
                            weight = e.meta.weight;
                            taken.push(e);
                        }
                    }
                    break;
                }
            }
            let Some(e) = lane.pop(level) else { break };
            weight = weight.saturating_add(e.meta.weight);
            taken.push(e);
        }
        if lane.len == 0 {
            self.remove_lane(key);
        }
        self.len -= taken.len();
        if taken.is_empty() {
            return None;
        }
        if taken
            .windows(2)
            .any(|w| w[0].meta.priority < w[1].meta.priority)
        {
            taken.sort_by_key(|e| (Reverse(e.meta.priority), e.seq));
        }
        let mut items = Vec::with_capacity(taken.len());
        let mut priorities = Vec::with_capacity(taken.len());
        let mut arrivals = Vec::with_capacity(taken.len());
        for e in taken {
            items.push(e.value);
            priorities.push(e.meta.priority);
            arrivals.push(e.arrival);
        }
        self.batches += 1;
        Some(Batch {
            items,
            priorities,
            arrivals,
            weight,
            key,
            reason,
            seq: self.batches,
        })
    }
}
