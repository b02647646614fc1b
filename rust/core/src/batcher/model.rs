//! Adaptive batch sizing: handler latency learnt as `a + b·n` from recent
//! batches (least squares over a window), and an AIMD cap that halves on a
//! failed batch and grows by one on each success.

use std::collections::VecDeque;
use std::time::Duration;

const WINDOW: usize = 64;

/// The latency model and the AIMD cap.
#[derive(Debug, Clone)]
pub struct Model {
    samples: VecDeque<(f64, f64)>,
    a: f64,
    b: f64,
    aimd_cap: f64,
    max_batch_size: usize,
}

impl Model {
    /// A model for batches of at most `max_batch_size`.
    pub fn new(max_batch_size: usize) -> Self {
        Model {
            samples: VecDeque::with_capacity(WINDOW),
            a: 0.0,
            b: 0.0,
            aimd_cap: max_batch_size as f64,
            max_batch_size,
        }
    }

    /// Learn from one batch of `n` items that took `elapsed`; `ok` is false
    /// when the handler failed (the AIMD cap then halves).
    pub fn observe(&mut self, n: usize, elapsed: Duration, ok: bool) {
        if ok {
            self.aimd_cap = (self.aimd_cap + 1.0).min(self.max_batch_size as f64);
        } else {
            self.aimd_cap = (self.aimd_cap / 2.0).max(1.0);
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((n as f64, elapsed.as_secs_f64()));
        self.fit();
    }

    fn fit(&mut self) {
        let k = self.samples.len() as f64;
        if k == 0.0 {
            return;
        }
        let (sx, sy) = self
            .samples
            .iter()
            .fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
        let (mx, my) = (sx / k, sy / k);
        let (sxx, sxy) = self.samples.iter().fold((0.0, 0.0), |(sxx, sxy), &(x, y)| {
            (sxx + (x - mx) * (x - mx), sxy + (x - mx) * (y - my))
        });
        if sxx > 0.0 {
            self.b = (sxy / sxx).max(0.0);
            self.a = (my - self.b * mx).max(0.0);
        } else {
            // One batch size seen so far: attribute it all to per-item cost.
            self.a = 0.0;
            self.b = if mx > 0.0 { my / mx } else { 0.0 };
        }
    }

    /// Batches observed in the window.
    pub fn observations(&self) -> usize {
        self.samples.len()
    }

    /// Fixed cost per batch, seconds.
    pub fn a(&self) -> f64 {
        self.a
    }

    /// Cost per item, seconds.
    pub fn b(&self) -> f64 {
        self.b
    }

    /// The AIMD cap on the batch size.
    pub fn aimd_cap(&self) -> usize {
        self.aimd_cap as usize
    }

    /// Predicted handler time for a batch of `n`, seconds.
    pub fn predict(&self, n: usize) -> f64 {
        self.a + self.b * n as f64
    }

    /// The batch size to use: the largest (best throughput, since the fixed
    /// cost is shared) whose predicted time meets `target`, under the AIMD cap.
    pub fn choose(&self, target: Option<Duration>) -> usize {
        let mut n = self.max_batch_size;
        if let Some(t) = target {
            if self.observations() >= 2 && self.b > 0.0 {
                let fit = ((t.as_secs_f64() - self.a) / self.b).floor();
                n = if fit.is_finite() && fit >= 1.0 {
                    (fit as usize).min(n)
                } else {
                    1
                };
            }
        }
        n.min(self.aimd_cap()).max(1)
    }
}
