//! Binding for open-loop pacing: `Pacer`, the clock of `LoadRunner`.
//!
//! The schedule and the precise wait live in `overdrive_core::pacing`; this
//! file reads the arguments and waits with the interpreter released, in
//! slices with a signal check between them (like `wait.rs`), so Ctrl-C gets
//! through and other threads keep running while the pacer sleeps or spins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use overdrive_core::pacing::{Next, Pacer, PacerStats, Schedule, Segment};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::args::{self, type_name, FromArg};
use crate::errors::{at_item, bad_value, wrong_type, IntoPy};
use crate::wait::WAIT_SLICE;

/// One `schedule` item: `(duration, rate)` or `(duration, start_rate, end_rate)`.
fn read_segment(item: &Bound<'_, PyAny>) -> PyResult<Segment> {
    let py = item.py();
    let shape = || {
        wrong_type(
            py,
            format!(
                "schedule items must be (duration, rate) or (duration, start_rate, end_rate) tuples, not {}",
                type_name(item)
            ),
        )
    };
    let t = item.cast::<PyTuple>().map_err(|_| shape())?;
    let num =
        |i: usize, param: &'static str| -> PyResult<f64> { f64::from_arg(&t.get_item(i)?, param) };
    match t.len() {
        2 => {
            let r = num(1, "schedule rate")?;
            Ok(Segment {
                duration_s: num(0, "schedule duration")?,
                start_rate: r,
                end_rate: r,
            })
        }
        3 => Ok(Segment {
            duration_s: num(0, "schedule duration")?,
            start_rate: num(1, "schedule start_rate")?,
            end_rate: num(2, "schedule end_rate")?,
        }),
        _ => Err(shape()),
    }
}

fn read_schedule(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Segment>> {
    let py = obj.py();
    if obj.is_instance_of::<PyString>() {
        return Err(wrong_type(
            py,
            format!(
                "schedule must be a sequence of tuples, not {}",
                type_name(obj)
            ),
        ));
    }
    let iter = obj.try_iter().map_err(|_| {
        wrong_type(
            py,
            format!(
                "schedule must be a sequence of tuples, not {}",
                type_name(obj)
            ),
        )
    })?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        out.push(read_segment(&item).map_err(|e| at_item(py, e, i))?);
    }
    Ok(out)
}

/// Ask the kernel for exact sleeps on this thread (timer slack 1 ns instead
/// of the default 50 µs), once per thread: the pacer then needs little spin.
fn precise_timers() {
    #[cfg(target_os = "linux")]
    {
        thread_local! {
            static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        DONE.with(|d| {
            if !d.get() {
                d.set(true);
                // SAFETY: PR_SET_TIMERSLACK takes one integer argument and
                // only changes this thread's timer slack; failure is harmless.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
            }
        });
    }
}

/// The intended send times of an open-loop run, handed out on time.
///
/// Either `rate` (arrivals per second) for `duration` seconds, or a
/// `schedule` of `(duration, rate)` steps and `(duration, start_rate,
/// end_rate)` ramps. `poisson=True` draws exponential gaps (seeded by
/// `seed`) with the same mean rate. Time zero is the construction.
#[pyclass(frozen, module = "overdrive._core", name = "Pacer")]
pub(crate) struct PyPacer {
    inner: Mutex<Pacer>,
    start: Instant,
    duration: f64,
    expected: f64,
    stopped: AtomicBool,
}

impl PyPacer {
    fn stats_dict<'py>(&self, py: Python<'py>, s: PacerStats) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("issued", s.issued)?;
        d.set_item("late", s.late)?;
        d.set_item("waiting_s", s.waiting_s)?;
        d.set_item("max_lag_s", s.max_lag_s)?;
        d.set_item("elapsed_s", self.start.elapsed().as_secs_f64())?;
        Ok(d)
    }
}

#[pymethods]
impl PyPacer {
    #[new]
    #[pyo3(signature = (rate = None, duration = None, *, schedule = None, poisson = false, seed = 0, spin_s = 50e-6, tolerance_s = 0.001))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::rate)] rate: Option<f64>,
        #[pyo3(from_py_with = args::duration)] duration: Option<f64>,
        schedule: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::poisson)] poisson: bool,
        #[pyo3(from_py_with = args::seed)] seed: u64,
        #[pyo3(from_py_with = args::spin_s)] spin_s: f64,
        #[pyo3(from_py_with = args::tolerance_s)] tolerance_s: f64,
    ) -> PyResult<Self> {
        let sched = match (schedule, rate) {
            (Some(_), Some(r)) => {
                return Err(bad_value(
                    py,
                    "rate",
                    r,
                    "must be None when schedule is given",
                ));
            }
            (Some(s), None) => {
                if let Some(d) = duration {
                    return Err(bad_value(
                        py,
                        "duration",
                        d,
                        "must be None when schedule is given",
                    ));
                }
                Schedule::from_segments(read_schedule(s)?).py(py)?
            }
            (None, Some(r)) => match duration {
                Some(d) => Schedule::constant(r, d).py(py)?,
                None => return Err(bad_value(py, "duration", "None", "must be given with rate")),
            },
            (None, None) => {
                return Err(bad_value(
                    py,
                    "rate",
                    "None",
                    "give rate and duration, or schedule",
                ));
            }
        };
        if !(spin_s.is_finite() && (0.0..=0.1).contains(&spin_s)) {
            return Err(bad_value(
                py,
                "spin_s",
                spin_s,
                "must be a number of seconds from 0 to 0.1",
            ));
        }
        let sched = if poisson {
            sched.with_poisson(seed)
        } else {
            sched
        };
        let (duration, expected) = (sched.duration(), sched.expected_count());
        let pacer = Pacer::new(sched, Duration::from_secs_f64(spin_s), tolerance_s)
            .map_err(|e| match e {
                overdrive_core::Error::InvalidParameter {
                    value, expected, ..
                } => overdrive_core::Error::InvalidParameter {
                    param: "tolerance_s",
                    value,
                    expected,
                },
                other => other,
            })
            .py(py)?;
        let start = pacer.start();
        Ok(PyPacer {
            inner: Mutex::new(pacer),
            start,
            duration,
            expected,
            stopped: AtomicBool::new(false),
        })
    }

    /// Block (interpreter released) until the next arrival is due; return
    /// `(index, intended_s, lag_s)`, or None when the schedule is over or
    /// `stop()` was called. `intended_s` is seconds from time zero.
    fn wait_next(&self, py: Python<'_>) -> PyResult<Option<(u64, f64, f64)>> {
        precise_timers();
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return Ok(None);
            }
            let next = py.detach(|| self.inner.lock().wait_next(Some(WAIT_SLICE)));
            match next {
                Next::Due(a) => return Ok(Some((a.index, a.intended_s, a.lag_s))),
                Next::Done => return Ok(None),
                Next::Pending => py.check_signals()?,
            }
        }
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<(u64, f64, f64)>> {
        self.wait_next(py)
    }

    /// Seconds since time zero (the same monotonic clock as the intended times).
    fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// End the schedule early: `wait_next` returns None from now on (a wait
    /// in progress returns within one slice, 50 ms).
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// True once `stop()` was called.
    #[getter]
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Length of the schedule, seconds.
    #[getter]
    fn duration(&self) -> f64 {
        self.duration
    }

    /// Expected number of arrivals over the schedule.
    #[getter]
    fn expected_count(&self) -> f64 {
        self.expected
    }

    /// Counters: issued, late (handed out more than `tolerance_s` after
    /// their intended time), waiting_s (time inside `wait_next`),
    /// max_lag_s, elapsed_s.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.inner.lock().stats());
        self.stats_dict(py, s)
    }

    fn __repr__(&self) -> String {
        format!(
            "Pacer(duration={}, expected_count={}, stopped={})",
            self.duration,
            self.expected,
            self.stopped.load(Ordering::Acquire)
        )
    }
}
