//! A lock-free load balancer over N backends that hands out indices.
//!
//! Backends live in append-only chunks of atomics, so `acquire`/`release`
//! never take a lock: a pick scans the backends' atomics and bumps the chosen
//! one's in-flight count (and its packed pick key). Adding a backend takes a
//! writer-only mutex;
//! removing or marking one down flips its state atomically. Indices are
//! stable: a removed backend's index is never reused. Strategies, states and
//! tunables are in `config.rs`.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::OnceLock;
use std::time::Instant;

use parking_lot::Mutex;

use super::config::in_unit;
pub use super::config::{check_weight, Config, State, Strategy};
use super::rng;
use crate::error::{Error, Result};

/// Backends per chunk of slots.
const CHUNK: usize = 64;
/// Chunks at most: 65,536 backends per balancer.
const MAX_CHUNKS: usize = 1024;
/// The most backends one balancer holds (removed ones included).
pub const MAX_BACKENDS: usize = CHUNK * MAX_CHUNKS;

/// NaN bits: "no value reported".
const UNSET: u64 = 0x7ff8_0000_0000_0001;

// The pick key of `load_score`, one u64 per backend kept up to date by every
// state change, acquire, release and latency sample, so a pick is a plain
// minimum over 64 words (a load, a xor and a min per backend):
//   bit  63      set unless the backend is Up,
//   bits 46..63  requests in flight (saturating at FLIGHT_CAP),
//   bits  6..46  the top 40 bits of the EWMA latency (non-negative f64 bits
//                order like the values; no sample yet = 0),
//   bits  0..6   the backend's slot in its chunk (fixed).
const DOWN_BIT: u64 = 1 << 63;
const FLIGHT_SHIFT: u32 = 46;
const FLIGHT_CAP: u64 = (1 << 17) - 1;
const LAT_MASK: u64 = ((1 << 40) - 1) << 6;

/// A backend's cold counters (touched on release, not on every pick).
#[derive(Debug)]
struct Backend {
    completed: AtomicU64,
    errors: AtomicU64,
    ejections: AtomicU64,
    /// f64 bits.
    weight: AtomicU64,
    /// f64 bits in [0, 1].
    ewma_error: AtomicU64,
    /// f64 bits in [0, 1], reported by the backend; UNSET when not reported.
    reported_queue: AtomicU64,
    /// Nanoseconds since the balancer's epoch when an ejection ends.
    ejected_until: AtomicU64,
}

impl Default for Backend {
    fn default() -> Self {
        Backend {
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            weight: AtomicU64::new(1.0f64.to_bits()),
            ewma_error: AtomicU64::new(0.0f64.to_bits()),
            reported_queue: AtomicU64::new(UNSET),
            ejected_until: AtomicU64::new(0),
        }
    }
}

/// 64 backends: the fields every pick scans are dense arrays, so a scan of
/// 64 backends reads a few cache lines instead of 64 structs.
#[derive(Debug)]
struct Chunk {
    state: [AtomicU8; CHUNK],
    in_flight: [AtomicU64; CHUNK],
    /// f64 bits, seconds; UNSET before the first sample.
    ewma_latency: [AtomicU64; CHUNK],
    /// The `load_score` pick keys (see `DOWN_BIT`).
    key: [AtomicU64; CHUNK],
    cold: [Backend; CHUNK],
}

impl Chunk {
    fn new() -> Box<Chunk> {
        Box::new(Chunk {
            state: std::array::from_fn(|_| AtomicU8::new(State::Removed as u8)),
            in_flight: std::array::from_fn(|_| AtomicU64::new(0)),
            ewma_latency: std::array::from_fn(|_| AtomicU64::new(UNSET)),
            key: std::array::from_fn(|j| AtomicU64::new(DOWN_BIT | j as u64)),
            cold: std::array::from_fn(|_| Backend::default()),
        })
    }
}

/// One backend's view into its chunk.
#[derive(Clone, Copy)]
struct Slot<'a> {
    state: &'a AtomicU8,
    in_flight: &'a AtomicU64,
    ewma_latency: &'a AtomicU64,
    key: &'a AtomicU64,
    cold: &'a Backend,
}

impl Slot<'_> {
    /// Make the key's down bit match the state (re-checked, so concurrent
    /// state changes converge on the final state).
    fn sync_key(&self) {
        loop {
            let st = self.state.load(Acquire);
            if st == State::Up as u8 {
                self.key.fetch_and(!DOWN_BIT, AcqRel);
            } else {
                self.key.fetch_or(DOWN_BIT, AcqRel);
            }
            if self.state.load(Acquire) == st {
                return;
            }
        }
    }
}

impl std::ops::Deref for Slot<'_> {
    type Target = Backend;
    fn deref(&self) -> &Backend {
        self.cold
    }
}

fn ewma_update(cell: &AtomicU64, sample: f64, alpha: f64) {
    let mut cur = cell.load(Relaxed);
    loop {
        let old = f64::from_bits(cur);
        let new = if cur == UNSET {
            sample
        } else {
            old + alpha * (sample - old)
        };
        match cell.compare_exchange_weak(cur, new.to_bits(), Relaxed, Relaxed) {
            Ok(_) => return,
            Err(v) => cur = v,
        }
    }
}

fn unset_or(bits: u64) -> Option<f64> {
    (bits != UNSET).then(|| f64::from_bits(bits))
}

/// A point-in-time copy of one backend's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStats {
    /// The backend's index.
    pub index: usize,
    /// Its state.
    pub state: State,
    /// Its weight.
    pub weight: f64,
    /// Requests acquired and not yet released.
    pub in_flight: u64,
    /// Times it was picked.
    pub picks: u64,
    /// Releases.
    pub completed: u64,
    /// Releases with `ok=false`.
    pub errors: u64,
    /// Times it was ejected.
    pub ejections: u64,
    /// EWMA of reported latencies, seconds (None before the first).
    pub ewma_latency_s: Option<f64>,
    /// EWMA of the error indicator (0 = no errors lately).
    pub error_rate: f64,
    /// The queue utilisation it last reported, if any.
    pub queue_utilisation: Option<f64>,
}

/// The balancer. `Send + Sync`; every method takes `&self`.
#[derive(Debug)]
pub struct Balancer {
    config: Config,
    chunks: Box<[OnceLock<Box<Chunk>>]>,
    len: AtomicUsize,
    grow: Mutex<()>,
    rr: AtomicUsize,
    epoch: Instant,
    /// When the earliest ejection ends (u64::MAX: nothing ejected).
    next_probe_at: AtomicU64,
    uniform: std::sync::atomic::AtomicBool,
    reported: std::sync::atomic::AtomicBool,
    no_backend: AtomicU64,
}

impl Balancer {
    /// A balancer over backends with these weights (indices 0..len).
    pub fn new(weights: &[f64], config: Config) -> Result<Self> {
        config.validate()?;
        if weights.is_empty() {
            return Err(Error::invalid("n_backends", 0, "need at least one backend"));
        }
        if weights.len() > MAX_BACKENDS {
            return Err(Error::invalid(
                "n_backends",
                weights.len(),
                format!("at most {MAX_BACKENDS} backends"),
            ));
        }
        for &w in weights {
            check_weight(w)?;
        }
        let b = Balancer {
            config,
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            grow: Mutex::new(()),
            rr: AtomicUsize::new(0),
            epoch: Instant::now(),
            next_probe_at: AtomicU64::new(u64::MAX),
            uniform: std::sync::atomic::AtomicBool::new(true),
            reported: std::sync::atomic::AtomicBool::new(false),
            no_backend: AtomicU64::new(0),
        };
        for &w in weights {
            b.add(w)?;
        }
        Ok(b)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of indices handed out so far (removed backends included).
    pub fn len(&self) -> usize {
        self.len.load(Acquire)
    }

    /// Never true: a balancer is made with at least one backend.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn slot(&self, i: usize) -> Option<Slot<'_>> {
        let c = self.chunks.get(i / CHUNK)?.get()?;
        let j = i % CHUNK;
        Some(Slot {
            state: c.state.get(j)?,
            in_flight: c.in_flight.get(j)?,
            ewma_latency: c.ewma_latency.get(j)?,
            key: c.key.get(j)?,
            cold: c.cold.get(j)?,
        })
    }

    fn backend(&self, index: usize) -> Result<Slot<'_>> {
        if index < self.len() {
            if let Some(b) = self.slot(index) {
                return Ok(b);
            }
        }
        Err(Error::invalid(
            "index",
            index,
            format!("no such backend (indices run from 0 to {})", self.len()),
        ))
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Add a backend with `weight`; returns its index.
    pub fn add(&self, weight: f64) -> Result<usize> {
        let weight = check_weight(weight)?;
        let _g = self.grow.lock();
        let i = self.len.load(Relaxed);
        let Some(cell) = self.chunks.get(i / CHUNK) else {
            return Err(Error::invalid(
                "n_backends",
                i + 1,
                format!("at most {MAX_BACKENDS} backends"),
            ));
        };
        cell.get_or_init(Chunk::new);
        let Some(b) = self.slot(i) else {
            return Err(Error::invalid("index", i, "slot out of range"));
        };
        b.weight.store(weight.to_bits(), Relaxed);
        b.state.store(State::Up as u8, Release);
        b.sync_key();
        if i > 0 {
            let w0 = self
                .slot(0)
                .map_or(1.0, |b0| f64::from_bits(b0.weight.load(Relaxed)));
            if w0 != weight {
                self.uniform.store(false, Relaxed);
            }
        }
        self.len.store(i + 1, Release);
        Ok(i)
    }

    /// Remove a backend for good (requests in flight may still be released).
    pub fn remove(&self, index: usize) -> Result<()> {
        let b = self.backend(index)?;
        b.state.store(State::Removed as u8, Release);
        b.sync_key();
        Ok(())
    }

    /// Stop picking a backend until [`Balancer::mark_up`].
    pub fn mark_down(&self, index: usize) -> Result<()> {
        self.set_state(index, State::Down)
    }

    /// Pick a backend again (also ends an ejection early).
    pub fn mark_up(&self, index: usize) -> Result<()> {
        let b = self.backend(index)?;
        b.ewma_error.store(0.0f64.to_bits(), Relaxed);
        self.set_state(index, State::Up)
    }

    fn set_state(&self, index: usize, to: State) -> Result<()> {
        let b = self.backend(index)?;
        let cur = b.state.load(Acquire);
        if cur == State::Removed as u8 {
            return Err(Error::invalid("index", index, "the backend was removed"));
        }
        let r = match b.state.compare_exchange(cur, to as u8, AcqRel, Acquire) {
            Ok(_) => Ok(()),
            Err(v) if v == State::Removed as u8 => {
                Err(Error::invalid("index", index, "the backend was removed"))
            }
            Err(_) => {
                b.state.store(to as u8, Release);
                Ok(())
            }
        };
        b.sync_key();
        r
    }

    /// Change a backend's weight.
    pub fn set_weight(&self, index: usize, weight: f64) -> Result<()> {
        let weight = check_weight(weight)?;
        self.backend(index)?.weight.store(weight.to_bits(), Relaxed);
        self.uniform.store(false, Relaxed);
        Ok(())
    }

    /// Record a backend's own queue utilisation (0..1), used by `load_score`
    /// instead of `in_flight / max_in_flight`.
    pub fn report_queue(&self, index: usize, utilisation: f64) -> Result<()> {
        let u = in_unit("utilisation", utilisation)?;
        self.backend(index)?
            .reported_queue
            .store(u.to_bits(), Relaxed);
        self.reported.store(true, Relaxed);
        Ok(())
    }

    /// Cost of a backend under the strategy (lower is better).
    #[inline]
    fn cost(&self, b: Slot<'_>, uniform: bool) -> f64 {
        let active = b.in_flight.load(Relaxed) as f64;
        match self.config.strategy {
            Strategy::LoadScore => {
                let w = f64::from_bits(b.weight.load(Relaxed));
                let queue = unset_or(b.reported_queue.load(Relaxed))
                    .unwrap_or(active / self.config.max_in_flight as f64);
                self.config.load_weight * (active / w) + self.config.queue_weight * queue
            }
            _ if uniform => active,
            _ => {
                let w = f64::from_bits(b.weight.load(Relaxed));
                let bias = self.config.active_request_bias;
                if bias == 1.0 {
                    (active + 1.0) / w
                } else {
                    (active + 1.0).powf(bias) / w
                }
            }
        }
    }

    /// Pick a backend and count the request in flight.
    pub fn acquire(&self) -> Result<usize> {
        let i = self.pick()?;
        if let Some(b) = self.slot(i) {
            if b.in_flight.fetch_add(1, Relaxed) < FLIGHT_CAP {
                b.key.fetch_add(1 << FLIGHT_SHIFT, Relaxed);
            }
        }
        Ok(i)
    }

    fn pick(&self) -> Result<usize> {
        let n = self.len();
        let due = self.next_probe_at.load(Relaxed);
        if due != u64::MAX {
            let t = self.now_ns();
            if t >= due {
                if let Some(i) = self.take_probe(n, t) {
                    return Ok(i);
                }
            }
        }
        let found = match self.config.strategy {
            Strategy::RoundRobin => self.pick_rr(n),
            Strategy::P2C => self.pick_p2c(n),
            _ => self.pick_scan(n),
        };
        found.ok_or_else(|| {
            self.no_backend.fetch_add(1, Relaxed);
            Error::NoBackendAvailable(format!("all {n} backends are down, ejected or removed"))
        })
    }

    /// Take the first ejected backend whose cool-down has ended as a probe,
    /// and recompute when the next probe is due.
    #[cold]
    fn take_probe(&self, n: usize, now: u64) -> Option<usize> {
        self.next_probe_at.store(u64::MAX, Relaxed);
        let mut taken = None;
        for i in 0..n {
            let Some(b) = self.slot(i) else { continue };
            if b.state.load(Acquire) != State::Ejected as u8 {
                continue;
            }
            let until = b.ejected_until.load(Relaxed);
            if taken.is_none()
                && now >= until
                && b.state
                    .compare_exchange(State::Ejected as u8, State::Probing as u8, AcqRel, Relaxed)
                    .is_ok()
            {
                b.sync_key();
                taken = Some(i);
                continue;
            }
            self.next_probe_at.fetch_min(until, Relaxed);
        }
        taken
    }

    /// Whether `b` takes requests (an ejected backend is probed by `take_probe`).
    #[inline]
    fn up(b: Slot<'_>) -> bool {
        b.state.load(Acquire) == State::Up as u8
    }

    fn pick_rr(&self, n: usize) -> Option<usize> {
        let start = self.rr.fetch_add(1, Relaxed);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.slot(i).is_some_and(Self::up))
    }

    fn pick_p2c(&self, n: usize) -> Option<usize> {
        let uniform = self.uniform.load(Relaxed);
        if n >= 2 {
            for _ in 0..4 {
                let a = rng::below(n);
                let mut c = rng::below(n - 1);
                if c >= a {
                    c += 1;
                }
                let (Some(ba), Some(bc)) = (self.slot(a), self.slot(c)) else {
                    continue;
                };
                match (Self::up(ba), Self::up(bc)) {
                    (true, true) => {
                        return Some(if self.cost(bc, uniform) < self.cost(ba, uniform) {
                            c
                        } else {
                            a
                        })
                    }
                    (true, false) => return Some(a),
                    (false, true) => return Some(c),
                    (false, false) => {}
                }
            }
        }
        // Few or mostly unavailable backends: an exact scan.
        self.pick_scan(n)
    }

    fn pick_scan(&self, n: usize) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let uniform = self.uniform.load(Relaxed);
        let latency_ties = self.config.strategy == Strategy::LoadScore;
        if uniform && !(latency_ties && self.reported.load(Relaxed)) {
            // Cost is monotonic in the in-flight count: an integer scan.
            return self.scan_in_flight(n, latency_ties);
        }
        self.scan_costs(n, uniform)
    }

    /// The Up backends among the first `n`, from a random start (so ties spread).
    fn up_from_random_start(&self, n: usize) -> impl Iterator<Item = (usize, Slot<'_>)> + '_ {
        let start = rng::below(n);
        (0..n)
            .map(move |k| {
                if start + k >= n {
                    start + k - n
                } else {
                    start + k
                }
            })
            .filter_map(|i| self.slot(i).filter(|b| Self::up(*b)).map(|b| (i, b)))
    }

    /// Lowest cost from a random start; `load_score` ties go to the lower latency.
    fn scan_costs(&self, n: usize, uniform: bool) -> Option<usize> {
        let latency_ties = self.config.strategy == Strategy::LoadScore;
        let mut best: Option<(usize, f64, f64)> = None;
        for (i, b) in self.up_from_random_start(n) {
            let cost = self.cost(b, uniform);
            let lat = || unset_or(b.ewma_latency.load(Relaxed)).unwrap_or(0.0);
            match best {
                Some((_, c, _)) if cost > c + 1e-12 => {}
                Some((_, c, l)) if cost >= c - 1e-12 => {
                    // A tie: load_score prefers the backend that has been faster.
                    if latency_ties && lat() < l {
                        best = Some((i, cost, lat()));
                    }
                }
                _ => best = Some((i, cost, if latency_ties { lat() } else { 0.0 })),
            }
        }
        best.map(|(i, _, _)| i)
    }

    /// The backend with the fewest requests in flight, from a random start
    /// (so ties spread); with `latency_ties`, ties go to the lower EWMA
    /// latency, otherwise the first idle backend ends the scan.
    fn scan_in_flight(&self, n: usize, latency_ties: bool) -> Option<usize> {
        if !latency_ties {
            return self.scan_first_idle(n);
        }
        // The keys hold in-flight count, latency and slot (see `DOWN_BIT`);
        // xor-ing the slot bits with a random rotation spreads exact ties.
        let rot = rng::next() & (CHUNK as u64 - 1);
        let mut best_key = u64::MAX;
        let mut best = None;
        let mut base = 0;
        while base < n {
            let Some(c) = self.chunks.get(base / CHUNK).and_then(OnceLock::get) else {
                break;
            };
            let len = (n - base).min(CHUNK);
            let chunk_min = c.key[..len]
                .iter()
                .map(|k| k.load(Relaxed) ^ rot)
                .min()
                .unwrap_or(u64::MAX);
            if chunk_min < best_key {
                best_key = chunk_min;
                best = Some(base + ((chunk_min ^ rot) & (CHUNK as u64 - 1)) as usize);
            }
            base += CHUNK;
        }
        if best_key & DOWN_BIT != 0 {
            return None;
        }
        // A state change racing with this pick: fall back to the exact scan.
        match best {
            Some(i) if self.slot(i).is_some_and(Self::up) => Some(i),
            _ => self.scan_costs(n, true),
        }
    }

    /// Fewest in flight; the first idle backend from a random start wins at once.
    fn scan_first_idle(&self, n: usize) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut best_f = u64::MAX;
        for (i, b) in self.up_from_random_start(n) {
            let f = b.in_flight.load(Relaxed);
            if f == 0 {
                return Some(i);
            }
            if f < best_f {
                best_f = f;
                best = Some(i);
            }
        }
        best
    }

    /// End a request on `index`: `latency_s` feeds the latency EWMA, `ok`
    /// the error-rate EWMA (and ejection).
    pub fn release(&self, index: usize, latency_s: Option<f64>, ok: bool) -> Result<()> {
        let b = self.backend(index)?;
        if let Some(l) = latency_s {
            if !(l.is_finite() && l >= 0.0) {
                return Err(Error::invalid(
                    "latency_s",
                    l,
                    "must be a finite number >= 0",
                ));
            }
        }
        let mut cur = b.in_flight.load(Relaxed);
        loop {
            if cur == 0 {
                return Err(Error::invalid(
                    "index",
                    index,
                    "release without a matching acquire (no request in flight)",
                ));
            }
            match b
                .in_flight
                .compare_exchange_weak(cur, cur - 1, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(v) => cur = v,
            }
        }
        if cur - 1 < FLIGHT_CAP {
            b.key.fetch_sub(1 << FLIGHT_SHIFT, Relaxed);
        }
        let alpha = self.config.ewma_alpha;
        let done = b.completed.fetch_add(1, Relaxed) + 1;
        if let Some(l) = latency_s {
            ewma_update(b.ewma_latency, l, alpha);
            let lat = (b.ewma_latency.load(Relaxed) >> 23) << 6;
            let _ = b
                .key
                .fetch_update(Relaxed, Relaxed, |k| Some((k & !LAT_MASK) | lat));
        }
        if ok {
            if b.ewma_error.load(Relaxed) != 0.0f64.to_bits() {
                ewma_update(&b.ewma_error, 0.0, alpha);
            }
        } else {
            b.errors.fetch_add(1, Relaxed);
            ewma_update(&b.ewma_error, 1.0, alpha);
        }
        match State::from_u8(b.state.load(Acquire)) {
            State::Probing => {
                if ok {
                    b.ewma_error.store(0.0f64.to_bits(), Relaxed);
                    let _ = b.state.compare_exchange(
                        State::Probing as u8,
                        State::Up as u8,
                        AcqRel,
                        Relaxed,
                    );
                    b.sync_key();
                } else {
                    self.eject(b, State::Probing);
                }
            }
            State::Up if !ok => {
                let rate = f64::from_bits(b.ewma_error.load(Relaxed));
                if done >= self.config.eject_min_requests
                    && rate >= self.config.eject_error_rate
                    && self.may_eject()
                {
                    self.eject(b, State::Up);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn may_eject(&self) -> bool {
        let n = self.len();
        let mut live = 0usize;
        let mut out = 0usize;
        for i in 0..n {
            if let Some(b) = self.slot(i) {
                match State::from_u8(b.state.load(Relaxed)) {
                    State::Removed | State::Down => {}
                    State::Ejected | State::Probing => {
                        live += 1;
                        out += 1;
                    }
                    State::Up => live += 1,
                }
            }
        }
        ((out + 1) as f64) <= self.config.max_ejected_fraction * live as f64
    }

    fn eject(&self, b: Slot<'_>, from: State) {
        let until = self
            .now_ns()
            .saturating_add(u64::try_from(self.config.cooldown.as_nanos()).unwrap_or(u64::MAX));
        b.ejected_until.store(until, Relaxed);
        if b.state
            .compare_exchange(from as u8, State::Ejected as u8, AcqRel, Relaxed)
            .is_ok()
        {
            b.sync_key();
            if from == State::Up {
                b.ejections.fetch_add(1, Relaxed);
            }
            self.next_probe_at.fetch_min(until, Relaxed);
        }
    }

    /// Requests in flight on `index`.
    pub fn in_flight(&self, index: usize) -> Result<u64> {
        Ok(self.backend(index)?.in_flight.load(Relaxed))
    }

    /// The state of `index`.
    pub fn state(&self, index: usize) -> Result<State> {
        Ok(State::from_u8(self.backend(index)?.state.load(Acquire)))
    }

    /// Times a pick found no backend.
    pub fn no_backend_errors(&self) -> u64 {
        self.no_backend.load(Relaxed)
    }

    /// Counters of every backend (removed ones included, in index order).
    pub fn stats(&self) -> Vec<BackendStats> {
        (0..self.len())
            .filter_map(|i| {
                let b = self.slot(i)?;
                Some(BackendStats {
                    index: i,
                    state: State::from_u8(b.state.load(Acquire)),
                    weight: f64::from_bits(b.weight.load(Relaxed)),
                    in_flight: b.in_flight.load(Relaxed),
                    picks: b.completed.load(Relaxed) + b.in_flight.load(Relaxed),
                    completed: b.completed.load(Relaxed),
                    errors: b.errors.load(Relaxed),
                    ejections: b.ejections.load(Relaxed),
                    ewma_latency_s: unset_or(b.ewma_latency.load(Relaxed)),
                    error_rate: f64::from_bits(b.ewma_error.load(Relaxed)),
                    queue_utilisation: unset_or(b.reported_queue.load(Relaxed)),
                })
            })
            .collect()
    }
}
