//! Open-loop pacing: the intended send times of a load run, fixed ahead, and
//! a precise wait until each of them.
//!
//! A [`Schedule`] is a piecewise rate profile (constant steps and linear
//! ramps). Its arrivals are the points where the cumulative expected count
//! `N(t) = integral of rate` crosses the arrival's "operational time" `u_i`:
//! `u_i = i` for evenly spaced arrivals, or a unit-rate Poisson process (sum
//! of exponential gaps from a seeded generator) for Poisson arrivals. So one
//! inversion serves constant rates, steps, ramps, deterministic and Poisson.
//!
//! The [`Pacer`] walks a schedule against a monotonic clock: `wait_next`
//! sleeps most of the way to the next intended time and spins the last
//! stretch (`spin`, 50 µs by default, at most a quarter of the gap between
//! arrivals), because OS sleeps overshoot by tens
//! of microseconds and asyncio timers round to a millisecond. Arrivals
//! returned more than `tolerance` after their intended time are counted as
//! late; they are still returned (the caller sends them, and the latency
//! measured from the intended time shows the delay — no coordinated
//! omission).

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

#[cfg(test)]
mod tests;

/// One piece of a rate profile: `duration_s` seconds going linearly from
/// `start_rate` to `end_rate` arrivals per second (equal rates: a step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Length of the piece, seconds (> 0).
    pub duration_s: f64,
    /// Rate at the start of the piece, arrivals per second (>= 0).
    pub start_rate: f64,
    /// Rate at the end of the piece, arrivals per second (>= 0).
    pub end_rate: f64,
}

impl Segment {
    /// Expected arrivals over the whole piece.
    fn count(&self) -> f64 {
        0.5 * (self.start_rate + self.end_rate) * self.duration_s
    }

    /// Time into the piece at which `u` expected arrivals have happened
    /// (`0 <= u <= count()`): the root of `r0 t + (r1 - r0) t^2 / (2 D) = u`.
    fn invert(&self, u: f64) -> f64 {
        if u <= 0.0 {
            return 0.0;
        }
        let a = (self.end_rate - self.start_rate) / (2.0 * self.duration_s);
        let b = self.start_rate;
        let disc = (b * b + 4.0 * a * u).max(0.0);
        let denom = b + disc.sqrt();
        let t = if denom > 0.0 { 2.0 * u / denom } else { 0.0 };
        t.clamp(0.0, self.duration_s)
    }
}

fn invalid(param: &'static str, value: impl ToString, expected: &str) -> Error {
    Error::InvalidParameter {
        param,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Check one rate (arrivals per second): finite and >= 0.
pub fn check_rate(param: &'static str, rate: f64) -> Result<f64> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(rate)
    } else {
        Err(invalid(
            param,
            rate,
            "must be a finite rate >= 0 (arrivals per second)",
        ))
    }
}

/// Check one duration: finite and > 0.
pub fn check_duration(param: &'static str, secs: f64) -> Result<f64> {
    if secs.is_finite() && secs > 0.0 {
        Ok(secs)
    } else {
        Err(invalid(
            param,
            secs,
            "must be a finite number of seconds > 0",
        ))
    }
}

/// A small, seeded generator (SplitMix64): reproducible Poisson arrivals
/// without a dependency.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Exponential with mean 1.
    fn next_exp(&mut self) -> f64 {
        -self.next_open01().ln()
    }
}

/// The intended send times of a run, as offsets (seconds) from its start.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    /// Expected arrivals before each segment.
    cum_count: Vec<f64>,
    /// Start time of each segment.
    cum_time: Vec<f64>,
    total_count: f64,
    total_time: f64,
    poisson: Option<SplitMix64>,
    /// Operational time of the next arrival.
    next_u: f64,
    next_index: u64,
    /// Segment the last lookup ended in (lookups only move forward).
    seg: usize,
}

impl Schedule {
    /// A constant `rate` for `duration_s` seconds.
    pub fn constant(rate: f64, duration_s: f64) -> Result<Self> {
        let rate = check_rate("rate", rate)?;
        if rate <= 0.0 {
            return Err(invalid(
                "rate",
                rate,
                "must be a finite rate > 0 (arrivals per second)",
            ));
        }
        let duration_s = check_duration("duration", duration_s)?;
        Self::from_segments(vec![Segment {
            duration_s,
            start_rate: rate,
            end_rate: rate,
        }])
    }

    /// A piecewise profile of steps and ramps, played in order.
    pub fn from_segments(segments: Vec<Segment>) -> Result<Self> {
        if segments.is_empty() {
            return Err(invalid("schedule", "[]", "must hold at least one segment"));
        }
        let mut cum_count = Vec::with_capacity(segments.len());
        let mut cum_time = Vec::with_capacity(segments.len());
        let (mut n, mut t) = (0.0, 0.0);
        for s in &segments {
            check_duration("schedule duration", s.duration_s)?;
            check_rate("schedule rate", s.start_rate)?;
            check_rate("schedule rate", s.end_rate)?;
            cum_count.push(n);
            cum_time.push(t);
            n += s.count();
            t += s.duration_s;
        }
        if !(n.is_finite() && t.is_finite()) {
            return Err(invalid(
                "schedule",
                format!("{n} arrivals over {t} s"),
                "must be finite",
            ));
        }
        Ok(Schedule {
            segments,
            cum_count,
            cum_time,
            total_count: n,
            total_time: t,
            poisson: None,
            next_u: 0.0,
            next_index: 0,
            seg: 0,
        })
    }

    /// Poisson arrivals (exponential gaps) from a generator seeded by `seed`,
    /// with the same mean rate profile. The first arrival is at a random
    /// offset too.
    #[must_use]
    pub fn with_poisson(mut self, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        self.next_u = rng.next_exp();
        self.poisson = Some(rng);
        self
    }

    /// Total length of the schedule, seconds.
    pub fn duration(&self) -> f64 {
        self.total_time
    }

    /// Expected number of arrivals over the whole schedule.
    pub fn expected_count(&self) -> f64 {
        self.total_count
    }

    /// Offset (seconds) at which `u` expected arrivals have happened; None
    /// past the end.
    fn time_of(&mut self, u: f64) -> Option<f64> {
        // Arrivals exactly at the end belong to the next run, not this one.
        if u >= self.total_count {
            return None;
        }
        while self.seg + 1 < self.segments.len() && self.cum_count[self.seg + 1] <= u {
            self.seg += 1;
        }
        let s = &self.segments[self.seg];
        let t = self.cum_time[self.seg] + s.invert(u - self.cum_count[self.seg]);
        (t < self.total_time).then_some(t)
    }
}

impl Iterator for Schedule {
    /// (index, offset in seconds from the start).
    type Item = (u64, f64);

    fn next(&mut self) -> Option<(u64, f64)> {
        let t = self.time_of(self.next_u)?;
        let i = self.next_index;
        self.next_index += 1;
        self.next_u = match &mut self.poisson {
            Some(rng) => self.next_u + rng.next_exp(),
            None => self.next_index as f64,
        };
        Some((i, t))
    }
}

/// Default stretch spun (not slept) before an intended time.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Wait until `deadline`, or until `limit` (whichever comes first): sleep
/// until `spin` before the deadline, then busy-spin the rest.
/// Returns true once the deadline is reached.
pub fn wait_until(deadline: Instant, spin: Duration, limit: Option<Instant>) -> bool {
    if let Some(l) = limit {
        if l < deadline.checked_sub(spin).unwrap_or(deadline) {
            // The deadline is beyond the limit: plain sleep, no spin.
            let now = Instant::now();
            if l > now {
                std::thread::sleep(l - now);
            }
            return false;
        }
    }
    loop {
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        let left = deadline - now;
        if left > spin {
            std::thread::sleep(left - spin);
        } else {
            // A busy spin, not a yield: on a loaded machine sched_yield
            // gives the CPU away for a whole time slice (milliseconds).
            std::hint::spin_loop();
        }
    }
}

/// What a pacer has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PacerStats {
    /// Arrivals handed out.
    pub issued: u64,
    /// Of those, handed out more than `tolerance` after their intended time.
    pub late: u64,
    /// Total time spent inside `wait_next` (sleeping or spinning), seconds.
    pub waiting_s: f64,
    /// Largest lateness seen, seconds.
    pub max_lag_s: f64,
}

/// One arrival handed out by [`Pacer::wait_next`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// 0-based arrival number.
    pub index: u64,
    /// Intended send time, seconds from the pacer's start.
    pub intended_s: f64,
    /// How late it was handed out (>= 0), seconds.
    pub lag_s: f64,
}

/// Outcome of one bounded wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// The next arrival is due now.
    Due(Arrival),
    /// Not yet due; the wait stopped at its limit (call again).
    Pending,
    /// The schedule is over.
    Done,
}

/// Walks a [`Schedule`] against the monotonic clock.
#[derive(Debug)]
pub struct Pacer {
    schedule: Schedule,
    start: Instant,
    spin: Duration,
    tolerance: f64,
    pending: Option<(u64, f64)>,
    /// Intended time of the last arrival handed out (caps the spin).
    last_intended: f64,
    stats: PacerStats,
}

impl Pacer {
    /// A pacer whose time zero is now.
    pub fn new(schedule: Schedule, spin: Duration, tolerance_s: f64) -> Result<Self> {
        if !(tolerance_s.is_finite() && tolerance_s >= 0.0) {
            return Err(invalid(
                "tolerance",
                tolerance_s,
                "must be a finite number of seconds >= 0",
            ));
        }
        Ok(Self::starting_at(
            schedule,
            spin,
            tolerance_s,
            Instant::now(),
        ))
    }

    /// A pacer whose time zero is `start`.
    pub fn starting_at(
        schedule: Schedule,
        spin: Duration,
        tolerance_s: f64,
        start: Instant,
    ) -> Self {
        Pacer {
            schedule,
            start,
            spin,
            tolerance: tolerance_s,
            pending: None,
            last_intended: 0.0,
            stats: PacerStats::default(),
        }
    }

    /// The pacer's time zero.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Seconds since the pacer's time zero.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Total length of the schedule, seconds.
    pub fn duration(&self) -> f64 {
        self.schedule.duration()
    }

    /// Counters so far.
    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// Wait for the next arrival, at most `limit` (None: as long as it takes).
    pub fn wait_next(&mut self, limit: Option<Duration>) -> Next {
        let Some((index, intended_s)) = self.pending.take().or_else(|| self.schedule.next()) else {
            return Next::Done;
        };
        let began = Instant::now();
        let deadline = self.start + Duration::from_secs_f64(intended_s);
        // Spin at most a quarter of the gap since the last arrival: at high
        // rates a full spin would keep the thread busy all the time.
        let gap = (intended_s - self.last_intended).max(0.0);
        let spin = self.spin.min(Duration::from_secs_f64(gap / 4.0));
        let reached = wait_until(deadline, spin, limit.map(|l| began + l));
        self.stats.waiting_s += began.elapsed().as_secs_f64();
        if !reached {
            self.pending = Some((index, intended_s));
            return Next::Pending;
        }
        let lag_s = (self.elapsed() - intended_s).max(0.0);
        self.last_intended = intended_s;
        self.stats.issued += 1;
        if lag_s > self.tolerance {
            self.stats.late += 1;
        }
        if lag_s > self.stats.max_lag_s {
            self.stats.max_lag_s = lag_s;
        }
        Next::Due(Arrival {
            index,
            intended_s,
            lag_s,
        })
    }
}
