//! The balancer's strategies, backend states and tunables, with validation.

use std::time::Duration;

use crate::error::{Error, Result};

/// How a backend is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Lowest `load_weight * load + queue_weight * queue utilisation`.
    LoadScore,
    /// Exact join-the-shortest-queue (fewest requests in flight, per weight).
    LeastOutstanding,
    /// Power of two choices: two random backends, the less loaded wins.
    P2C,
    /// Each backend in turn.
    RoundRobin,
}

impl Strategy {
    /// Parse the Python spelling.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "load_score" => Ok(Strategy::LoadScore),
            "least_outstanding" => Ok(Strategy::LeastOutstanding),
            "p2c" => Ok(Strategy::P2C),
            "round_robin" => Ok(Strategy::RoundRobin),
            other => Err(Error::invalid(
                "strategy",
                format!("{other:?}"),
                "one of 'load_score', 'least_outstanding', 'p2c', 'round_robin'",
            )),
        }
    }

    /// The Python spelling.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::LoadScore => "load_score",
            Strategy::LeastOutstanding => "least_outstanding",
            Strategy::P2C => "p2c",
            Strategy::RoundRobin => "round_robin",
        }
    }
}

/// A backend's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Takes requests.
    Up = 0,
    /// Marked down by the user.
    Down = 1,
    /// Ejected for its error rate; probed after the cool-down.
    Ejected = 2,
    /// One probe request is in flight after a cool-down.
    Probing = 3,
    /// Removed; its index is never reused.
    Removed = 4,
}

impl State {
    pub(crate) fn from_u8(v: u8) -> State {
        match v {
            0 => State::Up,
            1 => State::Down,
            2 => State::Ejected,
            3 => State::Probing,
            _ => State::Removed,
        }
    }

    /// The Python spelling.
    pub fn name(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Ejected => "ejected",
            State::Probing => "probing",
            State::Removed => "removed",
        }
    }
}

/// Tunables of a [`Balancer`]; `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The strategy.
    pub strategy: Strategy,
    /// Weight of load (in flight per unit of backend weight) in `load_score`.
    pub load_weight: f64,
    /// Weight of queue utilisation in `load_score`.
    pub queue_weight: f64,
    /// In-flight count at which a backend's queue counts as full (utilisation 1.0)
    /// unless the backend reports its own utilisation.
    pub max_in_flight: u64,
    /// Envoy's active-request bias: weighted backends cost `(active + 1)^bias / weight`.
    pub active_request_bias: f64,
    /// Smoothing of the latency and error-rate EWMAs (weight of the newest sample).
    pub ewma_alpha: f64,
    /// Error-rate EWMA at which a backend is ejected (> 1.0 disables ejection).
    pub eject_error_rate: f64,
    /// Completed requests a backend needs before it can be ejected.
    pub eject_min_requests: u64,
    /// How long an ejected backend rests before one probe request.
    pub cooldown: Duration,
    /// Never eject more than this fraction of the backends.
    pub max_ejected_fraction: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            strategy: Strategy::LoadScore,
            load_weight: 0.7,
            queue_weight: 0.3,
            max_in_flight: 100,
            active_request_bias: 1.0,
            ewma_alpha: 0.2,
            eject_error_rate: 0.5,
            eject_min_requests: 5,
            cooldown: Duration::from_secs(10),
            max_ejected_fraction: 0.5,
        }
    }
}

pub(crate) fn in_unit(param: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(Error::invalid(param, v, "must be between 0.0 and 1.0"))
    }
}

fn non_negative(param: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(Error::invalid(param, v, "must be a finite number >= 0"))
    }
}

/// Check a backend weight.
pub fn check_weight(w: f64) -> Result<f64> {
    if w.is_finite() && w > 0.0 {
        Ok(w)
    } else {
        Err(Error::invalid("weight", w, "must be a finite number > 0"))
    }
}

impl Config {
    /// Check every field's range.
    pub fn validate(&self) -> Result<()> {
        non_negative("load_weight", self.load_weight)?;
        non_negative("queue_weight", self.queue_weight)?;
        non_negative("active_request_bias", self.active_request_bias)?;
        in_unit("max_ejected_fraction", self.max_ejected_fraction)?;
        non_negative("eject_error_rate", self.eject_error_rate)?;
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return Err(Error::invalid(
                "ewma_alpha",
                self.ewma_alpha,
                "must be in (0.0, 1.0]",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(Error::invalid("max_in_flight", 0, "must be >= 1"));
        }
        Ok(())
    }
}
