//! Binding for `MemoryTier`: the in-process (L1) cache tier over the core's
//! W-TinyLFU / LRU store (`overdrive_core::cache`).
//!
//! Locking: one lock around the store, a [`GilLock`] (the interpreter lock
//! serialises every access; its busy flag covers the stretches where the
//! holder runs Python code). Python code never runs under it
//! except a key's own `__eq__` (dict semantics need it); every other call
//! into Python (hashing, the weigher, the clock) happens before locking, and
//! every object that leaves the store is dropped after unlocking. The lock
//! is never waited for while attached to the interpreter: a contended lock
//! is awaited detached (a thread inside a key's `__eq__` may have let the
//! interpreter go). A key whose `__eq__` calls back into the same tier gets
//! `ReentrantCallError` instead of a deadlock.

use std::sync::atomic::{AtomicU64, Ordering};

use overdrive_core::cache::{Config, Found, Matcher, Policy, Store, NEVER};
use overdrive_core::Error;
use parking_lot::Mutex;
use pyo3::exceptions::PyKeyError;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};
use pyo3::PyTraverseError;

use crate::args::{self, type_name};
use crate::errors::{bad_value, to_py, wrong_type, IntoPy};
use crate::gil_lock::{GilGuard, GilLock};

type Obj = Py<PyAny>;
type Pairs = Vec<(Obj, Obj)>;

/// The monotonic clocks of the TTL checks, in nanoseconds.
///
/// A hit must not pay for a precise clock read (an ordered TSC read through
/// the vDSO, ~20 ns here): it reads the kernel's coarse monotonic clock
/// (the time of the last tick, a few ns), which lags the precise one by
/// about its resolution, more when ticks come late. An entry that expires
/// later than coarse + [`clock::margin`] (twice that resolution, at least
/// 1 s) is alive; only one closer to its expiry pays for the precise clock.
/// Both clocks run on the same timeline.
mod clock {
    #[cfg(target_os = "linux")]
    fn read(id: libc::clockid_t) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid out-pointer; both clock ids exist on Linux.
        unsafe { libc::clock_gettime(id, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }

    /// The smallest lag of the coarse clock a TTL check allows for (1 s).
    #[cfg(target_os = "linux")]
    const MIN_MARGIN: u64 = 1_000_000_000;

    /// Now, precisely.
    #[cfg(target_os = "linux")]
    #[inline]
    pub(super) fn precise() -> u64 {
        read(libc::CLOCK_MONOTONIC)
    }

    /// Now, give or take [`margin`] (never later than [`precise`]).
    #[cfg(target_os = "linux")]
    #[inline]
    pub(super) fn coarse() -> u64 {
        read(libc::CLOCK_MONOTONIC_COARSE)
    }

    /// How far [`coarse`] is trusted to lag: twice its resolution, but
    /// never under [`MIN_MARGIN`]. The coarse clock is the time of the last
    /// tick, and ticks can come late: in a VM under load it was seen 16 ms
    /// behind with a 4 ms resolution, so "twice the resolution" returned
    /// entries expired by several ms. Only entries closer than the margin
    /// to their expiry pay for the precise read.
    #[cfg(target_os = "linux")]
    pub(super) fn margin() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid out-pointer.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } == 0;
        if ok {
            (2 * ((ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64)).max(MIN_MARGIN)
        } else {
            u64::MAX // never trust the coarse clock
        }
    }

    #[cfg(not(target_os = "linux"))]
    #[inline]
    pub(super) fn precise() -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static BASE: OnceLock<Instant> = OnceLock::new();
        let base = *BASE.get_or_init(Instant::now);
        base.elapsed().as_nanos() as u64 + 1
    }

    #[cfg(not(target_os = "linux"))]
    #[inline]
    pub(super) fn coarse() -> u64 {
        precise()
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn margin() -> u64 {
        0
    }
}

/// A small id per thread (for spotting re-entry from a key's `__eq__`).
fn thread_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.try_with(|id| *id).unwrap_or(u64::MAX)
}

/// Seconds (a float from the user's clock) to the store's nanoseconds.
fn secs_to_ns(s: f64) -> u64 {
    if s <= 0.0 {
        0
    } else {
        // Saturates (and NaN, ruled out by the callers, would give 0).
        (s * 1e9) as u64
    }
}

/// The user's callables (behind a lock only so the GC can clear them).
struct Hooks {
    weigher: Option<Obj>,
    clock: Option<Obj>,
}

/// An in-process cache tier: a bounded, thread-safe map with W-TinyLFU (or
/// LRU) eviction, per-entry TTL and tags.
#[pyclass(frozen, weakref, module = "overdrive._core", name = "MemoryTier")]
pub(crate) struct PyMemoryTier {
    store: GilLock<Store<Obj, Obj>>,
    /// The id of the thread running a key's `__eq__` under the lock (0: none).
    comparing: AtomicU64,
    hooks: Mutex<Hooks>,
    has_weigher: bool,
    has_clock: bool,
    name: String,
    ttl: Option<f64>,
    ttl_ns: Option<u64>,
    config: Config,
    /// How far the coarse clock may lag ([`clock::margin`]).
    margin: u64,
}

/// A key comparison failed: its Python exception is set, for the caller to
/// fetch once the store call returns (a one-byte error keeps the store's
/// lookup results small).
struct Raised;

/// Is `obj` of a builtin type whose `==` runs no Python code?
#[inline]
fn plain(obj: *mut ffi::PyObject) -> bool {
    // SAFETY: obj is a live object (borrowed from a Bound or the store).
    unsafe {
        ffi::PyUnicode_CheckExact(obj) != 0
            || ffi::PyLong_CheckExact(obj) != 0
            || ffi::PyBytes_CheckExact(obj) != 0
            || ffi::PyFloat_CheckExact(obj) != 0
    }
}

/// One is an exact str and the other exact bytes.
fn str_and_bytes(a: *mut ffi::PyObject, b: *mut ffi::PyObject) -> bool {
    // SAFETY: both live objects.
    unsafe {
        (ffi::PyUnicode_CheckExact(a) != 0 && ffi::PyBytes_CheckExact(b) != 0)
            || (ffi::PyBytes_CheckExact(a) != 0 && ffi::PyUnicode_CheckExact(b) != 0)
    }
}

/// Marks the tier as comparing keys on this thread (a key's `__eq__` that
/// calls back into the tier gets ReentrantCallError) until dropped.
struct Comparing<'a>(&'a AtomicU64);

impl<'a> Comparing<'a> {
    fn enter(flag: &'a AtomicU64) -> Self {
        flag.store(thread_id(), Ordering::Release);
        Comparing(flag)
    }
}

impl Drop for Comparing<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// A new reference to `obj`, its count raised inline.
///
/// Under the stable ABI pyo3 raises a count through a call into the
/// interpreter (`_Py_IncRef`); a C extension built for the 3.11 stable ABI
/// does it inline, as here, and CPython keeps supporting that: immortal
/// objects (3.12+) are built so that such increments (and the matching
/// decrements) leave them immortal (PEP 683).
#[inline(always)]
fn new_ref<'py>(py: Python<'py>, obj: &Obj) -> Bound<'py, PyAny> {
    let p = obj.as_ptr();
    // SAFETY: p is a live object (the store holds a reference, and the
    // caller holds the store's lock); the thread is attached (`py`), so no
    // other thread touches the count (the module is not free-threaded:
    // the interpreter lock is held). `ob_refcnt` is the first field of
    // every non-free-threaded object, in every CPython the stable ABI runs
    // on. The new reference is handed to the Bound, which drops it.
    unsafe {
        (*p).ob_refcnt += 1;
        Bound::from_owned_ptr(py, p)
    }
}

/// Compares stored keys with a looked-up one (see [`PyMemoryTier::eq`]).
struct KeyMatch<'a, 'py> {
    tier: &'a PyMemoryTier,
    key: &'a Bound<'py, PyAny>,
}

impl Matcher<Obj> for KeyMatch<'_, '_> {
    type Error = Raised;

    #[inline]
    fn quick(&mut self, k: &Obj) -> Option<bool> {
        let (a, b) = (self.key.as_ptr(), k.as_ptr());
        if a == b {
            return Some(true);
        }
        // Two ints by value: no generic rich comparison (and no bool object).
        if let (Some(x), Some(y)) = (small_int(a), small_int(b)) {
            return Some(x == y);
        }
        // SAFETY: both live.
        if unsafe { ffi::PyUnicode_CheckExact(a) != 0 && ffi::PyUnicode_CheckExact(b) != 0 } {
            // SAFETY: two exact str: compared in C, no Python code.
            return Some(unsafe { ffi::PyUnicode_Compare(a, b) } == 0);
        }
        None
    }

    #[inline]
    fn full(&mut self, k: &Obj) -> Result<bool, Raised> {
        self.tier.eq_general(self.key, k)
    }
}

/// The value of an exact int that fits an `i64` (None: any other object).
#[inline]
fn small_int(obj: *mut ffi::PyObject) -> Option<i64> {
    // SAFETY: obj is a live object; an exact int converts without running
    // Python code or raising (overflow is reported in `overflow`).
    unsafe {
        if ffi::PyLong_CheckExact(obj) == 0 {
            return None;
        }
        let mut overflow = 0;
        let v = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
        (overflow == 0).then_some(v)
    }
}

/// The default weight: `len()` for bytes, bytearray and str, `sys.getsizeof`
/// for anything else.
fn default_weight(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(s) = obj.cast::<PyString>() {
        // SAFETY: s is a live str.
        let n = unsafe { ffi::PyUnicode_GetLength(s.as_ptr()) };
        return Ok(n.max(0) as u64);
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().len() as u64);
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.len() as u64);
    }
    static GETSIZEOF: PyOnceLock<Obj> = PyOnceLock::new();
    let py = obj.py();
    let f = GETSIZEOF.import(py, "sys", "getsizeof")?;
    f.call1((obj,))?.extract::<u64>()
}

impl PyMemoryTier {
    /// The store, locked; never waits while attached to the interpreter.
    #[inline]
    fn lock<'a>(&'a self, py: Python<'_>) -> PyResult<GilGuard<'a, Store<Obj, Obj>>> {
        if let Some(g) = self.store.try_enter(py) {
            return Ok(g);
        }
        self.lock_slow(py)
    }

    #[cold]
    fn lock_slow<'a>(&'a self, py: Python<'_>) -> PyResult<GilGuard<'a, Store<Obj, Obj>>> {
        loop {
            if self.comparing.load(Ordering::Acquire) == thread_id() {
                return Err(to_py(
                    py,
                    Error::Reentrant(format!(
                        "MemoryTier {:?} was called from a key's __eq__ while it compared \
                         keys (re-entrant use of the same tier)",
                        self.name
                    )),
                ));
            }
            self.store.wait_free(py);
            // A wait that never ends (two tiers' __eq__ waiting on each
            // other) must still let Ctrl-C through.
            py.check_signals()?;
            if let Some(g) = self.store.try_enter(py) {
                return Ok(g);
            }
        }
    }

    /// `key`'s hash (InputTypeError when unhashable).
    #[inline]
    fn hash(key: &Bound<'_, PyAny>) -> PyResult<u64> {
        // SAFETY: key is live (a str's hash is cached in the object).
        let h = unsafe { ffi::PyObject_Hash(key.as_ptr()) };
        if h == -1 {
            return Err(Self::hash_error(key));
        }
        Ok(h as u64)
    }

    /// The error of a failed `hash(key)`.
    #[cold]
    #[inline(never)]
    fn hash_error(key: &Bound<'_, PyAny>) -> PyErr {
        let py = key.py();
        let e = PyErr::fetch(py);
        if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py) {
            wrong_type(py, format!("key must be hashable, not {}", type_name(key)))
        } else {
            e
        }
    }

    /// The equality test against `key` for the store: identity, two ints
    /// or two str compared in C, else (after the store compared hashes)
    /// `==`, marking this thread as comparing while Python code may run.
    #[inline]
    fn eq<'a, 'py>(&'a self, key: &'a Bound<'py, PyAny>) -> KeyMatch<'a, 'py> {
        KeyMatch { tier: self, key }
    }

    /// `key == k` for keys other than two ints or two str.
    #[inline(never)]
    fn eq_general(&self, key: &Bound<'_, PyAny>, k: &Obj) -> Result<bool, Raised> {
        let (a, b) = (key.as_ptr(), k.as_ptr());
        if plain(a) && plain(b) && !str_and_bytes(a, b) {
            // SAFETY: both live; builtin comparisons run no Python code
            // (str == bytes is left out: under `python -b` it warns, and the
            // warnings machinery is Python code).
            let r = unsafe { ffi::PyObject_RichCompareBool(a, b, ffi::Py_EQ) };
            return match r {
                -1 => Err(Raised),
                r => Ok(r == 1),
            };
        }
        let r = {
            // Reset even if a panic unwinds out of the comparison.
            let _comparing = Comparing::enter(&self.comparing);
            key.eq(k.bind(key.py()))
        };
        r.map_err(|e| {
            e.restore(key.py());
            Raised
        })
    }

    /// Now on the tier's clock, in nanoseconds.
    fn now(&self, py: Python<'_>) -> PyResult<u64> {
        if !self.has_clock {
            return Ok(clock::precise());
        }
        let clock = self.hooks.lock().clock.as_ref().map(|c| c.clone_ref(py));
        let Some(clock) = clock else {
            return Ok(clock::precise());
        };
        let t = clock.call0(py)?;
        let t = t.bind(py);
        match t.extract::<f64>() {
            Ok(s) if s.is_finite() => Ok(secs_to_ns(s)),
            Ok(s) => Err(bad_value(
                py,
                "clock",
                format!("returning {}", float_repr(s)),
                "must return a finite number of seconds",
            )),
            Err(_) => Err(wrong_type(
                py,
                format!(
                    "clock must return a number of seconds, not {}",
                    type_name(t)
                ),
            )),
        }
    }

    /// The entry's weight: the weigher's (or the default) for the value,
    /// plus the default for the key.
    fn weigh(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        let py = key.py();
        let value_weight = if self.has_weigher {
            let weigher = self.hooks.lock().weigher.as_ref().map(|w| w.clone_ref(py));
            match weigher {
                Some(w) => {
                    let got = w.call1(py, (value,))?;
                    let got = got.bind(py);
                    match got.extract::<i64>() {
                        Ok(n) if n >= 0 => n as u64,
                        Ok(n) => {
                            return Err(bad_value(
                                py,
                                "weigher",
                                format!("returning {n}"),
                                "must return an int >= 0",
                            ))
                        }
                        // An int beyond u64 weighs more than any max_bytes
                        // (the entry is rejected); below i64, it is negative.
                        Err(_) if got.is_instance_of::<PyInt>() => {
                            if got.lt(0i32)? {
                                return Err(bad_value(
                                    py,
                                    "weigher",
                                    format!("returning {}", args::show(got)),
                                    "must return an int >= 0",
                                ));
                            }
                            u64::MAX
                        }
                        Err(_) => {
                            return Err(wrong_type(
                                py,
                                format!("weigher must return an int, not {}", type_name(got)),
                            ))
                        }
                    }
                }
                None => default_weight(value)?,
            }
        } else {
            default_weight(value)?
        };
        Ok(value_weight.saturating_add(default_weight(key)?))
    }

    /// When an entry written now with `ttl` expires.
    fn expiry(&self, py: Python<'_>, ttl: Option<f64>, now: u64) -> PyResult<u64> {
        let ttl_ns = match ttl {
            None => match self.ttl_ns {
                None => return Ok(NEVER),
                Some(n) => n,
            },
            Some(t) => check_ttl(py, t)?,
        };
        Ok(now.saturating_add(ttl_ns).min(NEVER - 1))
    }

    /// Tags from an iterable of str.
    fn tags(tags: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
        let Some(tags) = tags else {
            return Ok(Vec::new());
        };
        let py = tags.py();
        if tags.is_instance_of::<PyString>() {
            return Err(wrong_type(
                py,
                "tags must be an iterable of str, not a str (wrap one tag in a tuple)".into(),
            ));
        }
        let iter = tags.try_iter().map_err(|_| {
            wrong_type(
                py,
                format!("tags must be an iterable of str, not {}", type_name(tags)),
            )
        })?;
        let mut out = Vec::new();
        for t in iter {
            let t = t?;
            out.push(args::text(&t, "tags")?.to_owned());
        }
        Ok(out)
    }

    /// The live entry under `key`: its value, its expiry and the time the
    /// check used (precise when `precise`, else possibly coarse; 0 when the
    /// entry never expires).
    #[inline]
    fn lookup_inner(
        &self,
        key: &Bound<'_, PyAny>,
        precise: bool,
    ) -> PyResult<Option<(Obj, u64, u64)>> {
        let py = key.py();
        let hash = Self::hash(key)?;
        let injected = if self.has_clock {
            Some(self.now(py)?)
        } else {
            None
        };
        let margin = self.margin;
        let mut now_seen = 0;
        let mut guard = self.lock(py)?;
        let found = guard
            .get(hash, self.eq(key), |expires| {
                now_seen = match injected {
                    Some(t) => t,
                    None if precise => clock::precise(),
                    None => lagging_now(expires, margin),
                };
                now_seen
            })
            .map_err(|Raised| PyErr::fetch(py))?;
        let r = match found {
            Found::Hit(v, exp) => Ok(Some((v.clone_ref(py), exp, now_seen))),
            Found::Miss => Ok(None),
            Found::Expired(k, v) => Err((k, v)),
        };
        drop(guard);
        match r {
            Ok(hit) => Ok(hit),
            Err(pair) => {
                drop(pair);
                Ok(None)
            }
        }
    }

    /// `get(key, default)`: the value under `key`, else `default` (the
    /// hit path of `get`, kept lean: no tuple, no precise clock).
    #[inline]
    pub(crate) fn get_value<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Borrowed<'_, 'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        if self.has_clock {
            return self.get_value_slow(key, default);
        }
        let hash = Self::hash(key)?;
        let margin = self.margin;
        // With a default ttl nearly every entry expires: read the coarse
        // clock now, off the lookup's dependency chain.
        let early = self.ttl_ns.map(|_| clock::coarse());
        let mut guard = self.lock(py)?;
        let r = match guard.get_value(hash, self.eq(key), |expires| match early {
            Some(c) if expires > c.saturating_add(margin) => c,
            _ => lagging_now(expires, margin),
        }) {
            Ok(Found::Hit(v, _)) => Ok(Ok(new_ref(py, v))),
            Ok(Found::Miss) => Ok(Err(None)),
            Ok(Found::Expired(k, v)) => Ok(Err(Some((k, v)))),
            Err(Raised) => Err(PyErr::fetch(py)),
        };
        drop(guard);
        match r? {
            Ok(v) => Ok(v),
            Err(gone) => {
                // Dropped attached and now (not via pyo3's deferred pool).
                drop(gone.map(|(k, v)| (k.into_bound(py), v.into_bound(py))));
                Ok(default.to_owned())
            }
        }
    }

    /// [`PyMemoryTier::get_value`] on the user's clock.
    #[cold]
    #[inline(never)]
    fn get_value_slow<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Borrowed<'_, 'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.lookup_inner(key, false)? {
            Some((v, _, _)) => v.into_bound(key.py()),
            None => default.to_owned(),
        })
    }

    fn set_inner(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
        tags: &[String],
    ) -> PyResult<()> {
        let py = key.py();
        let hash = Self::hash(key)?;
        let weight = self.weigh(key, value)?;
        // The precise clock: the coarse one lags by a tick or more (16 ms
        // was seen here), so an entry would expire that much early, and one
        // with a ttl under the lag could never be read at all.
        let now = self.now(py)?;
        let expires = self.expiry(py, ttl, now)?;
        let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let mut out: Pairs = Vec::new();
        let mut guard = self.lock(py)?;
        let r = guard.insert(
            hash,
            key.clone().unbind(),
            value.clone().unbind(),
            weight,
            expires,
            &tag_refs,
            now,
            self.eq(key),
            &mut out,
        );
        let r = r.map_err(|Raised| PyErr::fetch(py));
        drop(guard);
        drop(out);
        r.map(|_| ())
    }

    fn delete_inner(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = key.py();
        let hash = Self::hash(key)?;
        let now = self.now(py)?;
        let mut out: Pairs = Vec::new();
        let mut guard = self.lock(py)?;
        let r = guard
            .delete(hash, self.eq(key), now, &mut out)
            .map_err(|Raised| PyErr::fetch(py));
        drop(guard);
        drop(out);
        r
    }

    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let all = guard.clear();
        drop(guard);
        drop(all);
        Ok(())
    }
}

/// `t` as Python's `repr(float)` spells it (`-1.0`, `nan`, `inf`).
fn float_repr(t: f64) -> String {
    if t.is_nan() {
        "nan".into()
    } else if t.is_infinite() {
        if t > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{t:?}")
    }
}

/// Now, for deciding whether an entry expiring at `expires` has expired:
/// the cheap coarse clock when that is clearly in the future, else the
/// precise one.
#[inline]
fn lagging_now(expires: u64, margin: u64) -> u64 {
    let c = clock::coarse();
    if expires > c.saturating_add(margin) {
        c
    } else {
        clock::precise()
    }
}

/// A ttl in seconds to nanoseconds (> 0, finite).
fn check_ttl(py: Python<'_>, t: f64) -> PyResult<u64> {
    if t.is_finite() && t > 0.0 {
        Ok(secs_to_ns(t).max(1))
    } else {
        Err(bad_value(
            py,
            "ttl",
            float_repr(t),
            "must be a finite number of seconds > 0, or None for no expiry",
        ))
    }
}

fn check_callable(py: Python<'_>, param: &str, f: Option<&Obj>) -> PyResult<()> {
    if let Some(f) = f {
        if !f.bind(py).is_callable() {
            return Err(wrong_type(
                py,
                format!(
                    "{param} must be callable or None, not {}",
                    type_name(f.bind(py))
                ),
            ));
        }
    }
    Ok(())
}

#[pymethods]
impl PyMemoryTier {
    /// Registers the new tier with `overdrive.telemetry` (construction only).
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) {
        crate::telemetry_hook::announce(slf.as_any(), "memory_tier");
    }

    #[new]
    #[pyo3(signature = (max_bytes = None, max_entries = None, ttl = None, policy = "tinylfu", weigher = None, clock = None, name = "memory"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::cache_max_bytes)] max_bytes: Option<u64>,
        #[pyo3(from_py_with = args::max_entries)] max_entries: Option<u64>,
        #[pyo3(from_py_with = args::ttl)] ttl: Option<f64>,
        #[pyo3(from_py_with = args::cache_policy)] policy: &str,
        weigher: Option<Obj>,
        clock: Option<Obj>,
        #[pyo3(from_py_with = args::tier_name)] name: &str,
    ) -> PyResult<Self> {
        let policy = Policy::parse(policy).py(py)?;
        let config = Config::new(max_bytes, max_entries, policy).py(py)?;
        let ttl_ns = ttl.map(|t| check_ttl(py, t)).transpose()?;
        check_callable(py, "weigher", weigher.as_ref())?;
        check_callable(py, "clock", clock.as_ref())?;
        let tier = PyMemoryTier {
            store: GilLock::new(Store::new(config)),
            comparing: AtomicU64::new(0),
            has_weigher: weigher.is_some(),
            has_clock: clock.is_some(),
            hooks: Mutex::new(Hooks { weigher, clock }),
            name: name.to_owned(),
            ttl,
            ttl_ns,
            margin: clock::margin(),
            config,
        };
        // A clock that fails says so now, not on the first get.
        if tier.has_clock {
            tier.now(py)?;
        }
        Ok(tier)
    }

    /// The tier's name (in stats, reprs and metrics).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The byte bound (None: bounded by max_entries only).
    #[getter]
    fn max_bytes(&self) -> Option<u64> {
        self.config.max_bytes
    }

    /// The entry-count bound (None: bounded by max_bytes only).
    #[getter]
    fn max_entries(&self) -> Option<u64> {
        self.config.max_entries
    }

    /// The default time to live in seconds (None: entries never expire).
    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.ttl
    }

    /// The eviction policy: "tinylfu" or "lru".
    #[getter]
    fn policy(&self) -> &'static str {
        self.config.policy.name()
    }

    /// ``(value, seconds left or None)`` for a live entry, else None.
    fn lookup(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<(Obj, Option<f64>)>> {
        // The store reads the clock (now_seen) whenever the entry expires.
        Ok(self.lookup_inner(key, true)?.map(|(v, exp, now_seen)| {
            let left = (exp != NEVER).then(|| exp.saturating_sub(now_seen) as f64 / 1e9);
            (v, left)
        }))
    }

    /// The value under `key`, or `default` when absent or expired.
    // Calls come to `get_fastcall` (installed over this method by
    // `install_fast_get`); this one serves the calls it hands on (by
    // keyword, or with a wrong number of arguments).
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        let none = py.None();
        let default = default.map_or_else(|| none.bind_borrowed(py), |d| d.as_borrowed());
        self.get_value(key, default)
    }

    /// Store `value` under `key` for `ttl` seconds (None: the tier's
    /// default), tagged with `tags` (an iterable of str).
    #[pyo3(signature = (key, value, ttl = None, tags = None), text_signature = "($self, key, value, ttl=None, tags=())")]
    fn set(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = args::ttl)] ttl: Option<f64>,
        tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let tags = Self::tags(tags)?;
        self.set_inner(key, value, ttl, &tags)
    }

    /// Remove `key`; True when a live entry was removed.
    fn delete(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.delete_inner(key)
    }

    /// A dict of the present, unexpired keys among `keys`.
    fn get_many<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let py = keys.py();
        let out = PyDict::new(py);
        let iter = keys.try_iter().map_err(|_| {
            wrong_type(
                py,
                format!("keys must be an iterable of keys, not {}", type_name(keys)),
            )
        })?;
        for key in iter {
            let key = key?;
            if let Some((v, _, _)) = self.lookup_inner(&key, false)? {
                out.set_item(key, v)?;
            }
        }
        Ok(out)
    }

    /// Store every item of the mapping `items` (same `ttl` and `tags`).
    #[pyo3(signature = (items, ttl = None, tags = None), text_signature = "($self, items, ttl=None, tags=())")]
    fn set_many(
        &self,
        items: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = args::ttl)] ttl: Option<f64>,
        tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = items.py();
        let tags = Self::tags(tags)?;
        if let Some(t) = ttl {
            check_ttl(py, t)?;
        }
        let pairs = items.call_method0("items").map_err(|_| {
            wrong_type(
                py,
                format!("items must be a mapping, not {}", type_name(items)),
            )
        })?;
        for pair in pairs.try_iter()? {
            let pair = pair?;
            let pair = pair.cast::<PyTuple>().map_err(|_| {
                wrong_type(
                    py,
                    format!("items must be a mapping, not {}", type_name(items)),
                )
            })?;
            let (k, v) = (pair.get_item(0)?, pair.get_item(1)?);
            self.set_inner(&k, &v, ttl, &tags)?;
        }
        Ok(())
    }

    /// Remove every entry tagged `tag`; returns how many.
    fn invalidate_tag(&self, tag: &Bound<'_, PyAny>) -> PyResult<usize> {
        let py = tag.py();
        let tag = args::text(tag, "tag")?;
        let mut out: Pairs = Vec::new();
        let mut guard = self.lock(py)?;
        let n = guard.invalidate_tag(tag, &mut out);
        drop(guard);
        drop(out);
        Ok(n)
    }

    /// Drop every expired entry now; returns how many.
    fn expire(&self, py: Python<'_>) -> PyResult<usize> {
        let now = self.now(py)?;
        let mut out: Pairs = Vec::new();
        let mut guard = self.lock(py)?;
        let n = guard.expire(now, &mut out);
        drop(guard);
        drop(out);
        Ok(n)
    }

    /// Remove every entry (the counters stay).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.drain(py)
    }

    /// Clear the tier. A memory tier has nothing to flush: the object stays
    /// usable after close (later calls work, on an empty cache).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.drain(py)
    }

    /// Counters: hits, misses, sets, deletes, evictions, expirations,
    /// rejected, entries, bytes, max_bytes, max_entries, policy, errors.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.lock(py)?.stats();
        let c = self.config;
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("sets", s.sets)?;
        d.set_item("deletes", s.deletes)?;
        d.set_item("evictions", s.evictions)?;
        d.set_item("expirations", s.expirations)?;
        d.set_item("rejected", s.rejected)?;
        d.set_item("entries", s.entries)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("max_bytes", c.max_bytes)?;
        d.set_item("max_entries", c.max_entries)?;
        d.set_item("policy", c.policy.name())?;
        d.set_item("errors", 0u64)?;
        Ok(d)
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Obj> {
        match self.lookup_inner(key, false)? {
            Some((v, _, _)) => Ok(v),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_inner(key, value, None, &[])
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.delete_inner(key)? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    /// True for a live entry (no hit or miss is counted).
    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = key.py();
        let hash = Self::hash(key)?;
        let injected = if self.has_clock {
            Some(self.now(py)?)
        } else {
            None
        };
        let margin = self.margin;
        let mut guard = self.lock(py)?;
        let found = guard.peek(hash, self.eq(key), |expires| {
            injected.unwrap_or_else(|| lagging_now(expires, margin))
        });
        let r = match found.map_err(|Raised| PyErr::fetch(py))? {
            Found::Hit(..) => Ok(true),
            Found::Miss => Ok(false),
            Found::Expired(k, v) => Err((k, v)),
        };
        drop(guard);
        Ok(r.unwrap_or(false))
    }

    /// Entries held (expired entries not yet cleaned up included).
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.len())
    }

    /// An iterator over a snapshot of the live keys.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let now = self.now(py)?;
        let keys: Vec<Obj> = {
            let guard = self.lock(py)?;
            guard
                .pairs()
                .filter(|(_, _, exp)| *exp > now)
                .map(|(k, _, _)| k.clone_ref(py))
                .collect()
        };
        Ok(PyList::new(py, keys)?.try_iter()?.into_any())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let s = self.lock(py)?.stats();
        let c = self.config;
        let opt = |v: Option<u64>| v.map_or_else(|| "None".to_string(), |n| n.to_string());
        Ok(format!(
            "MemoryTier(name={:?}, policy='{}', entries={}, bytes={}, max_bytes={}, max_entries={}, ttl={})",
            self.name,
            c.policy.name(),
            s.entries,
            s.bytes,
            opt(c.max_bytes),
            opt(c.max_entries),
            self.ttl.map_or_else(|| "None".to_string(), |t| t.to_string()),
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(h) = self.hooks.try_lock() {
            if let Some(w) = &h.weigher {
                visit.call(w)?;
            }
            if let Some(c) = &h.clock {
                visit.call(c)?;
            }
        }
        // Busy (a thread mid-__eq__): report nothing, so the GC keeps all.
        // SAFETY: the garbage collector runs attached.
        if let Some(store) = unsafe { self.store.try_enter_attached() } {
            store.try_for_each(|k, v| {
                visit.call(k)?;
                visit.call(v)
            })?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let hooks = self
            .hooks
            .try_lock()
            .map(|mut h| (h.weigher.take(), h.clock.take()));
        drop(hooks);
        // SAFETY: the garbage collector runs attached.
        let all = unsafe { self.store.try_enter_attached() }.map(|mut s| s.clear());
        drop(all);
    }
}

/// The pyo3-generated `get`, which [`get_fastcall`] hands unusual calls to.
static GENERIC_GET: PyOnceLock<Obj> = PyOnceLock::new();

/// `MemoryTier.get(key, default=None)` as a bare `METH_FASTCALL` function.
///
/// A cache hit is a few dozen nanoseconds of work; pyo3's generic method
/// wrapper (argument descriptions, keyword matching, its attach guard)
/// cost about as much again. This entry point takes the common call,
/// one or two positional arguments, straight to
/// [`PyMemoryTier::get_value`], and hands any other (keywords, a wrong
/// count) to the pyo3 method, so errors read exactly as before.
///
/// # Safety
/// Called by CPython only: attached, with `slf` a `MemoryTier` (the method
/// descriptor checks the type of `self`), `args` pointing at `nargs`
/// positional arguments followed by one per name in `kwnames`.
unsafe extern "C" fn get_fastcall(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls method functions attached; the token does not
    // outlive this call.
    let py = unsafe { Python::assume_attached() };
    if !kwnames.is_null() || !(1..=2).contains(&nargs) {
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { get_generic(py, slf, args, nargs, kwnames) };
    }
    // SAFETY: nargs is 1 or 2, so args[0] (and args[1] when nargs is 2)
    // are live borrowed references for the duration of the call.
    let (key, default) = unsafe {
        let key = Borrowed::from_ptr(py, *args);
        let default = if nargs == 2 {
            Borrowed::from_ptr(py, *args.add(1))
        } else {
            Borrowed::from_ptr(py, ffi::Py_None())
        };
        (key, default)
    };
    // SAFETY: the method descriptor only calls this with a MemoryTier.
    let tier = unsafe { Borrowed::from_ptr(py, slf).cast_unchecked::<PyMemoryTier>() };
    let tier = tier.get();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tier.get_value(&key, default)
    }));
    match r {
        Ok(Ok(v)) => v.into_ptr(),
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(payload) => {
            panic_error(payload).restore(py);
            std::ptr::null_mut()
        }
    }
}

/// The call [`get_fastcall`] does not serve, made on the pyo3 method.
///
/// # Safety
/// As for [`get_fastcall`].
#[cold]
#[inline(never)]
unsafe fn get_generic(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let Some(generic) = GENERIC_GET.get(py) else {
        pyo3::exceptions::PySystemError::new_err("MemoryTier.get is not initialised").restore(py);
        return std::ptr::null_mut();
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> PyResult<Bound<'_, PyAny>> {
            let nargs = nargs.max(0) as usize;
            // The method descriptor takes self first.
            // SAFETY: slf and the nargs positional arguments are live borrowed
            // references for the duration of the call.
            let mut positional = vec![unsafe { Borrowed::from_ptr(py, slf) }.to_owned()];
            for i in 0..nargs {
                // SAFETY: as above.
                positional.push(unsafe { Borrowed::from_ptr(py, *args.add(i)) }.to_owned());
            }
            let kwargs = if kwnames.is_null() {
                None
            } else {
                // SAFETY: a non-NULL kwnames is a tuple of str, whose values
                // follow the positional arguments in args.
                let names = unsafe { Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>() };
                let d = PyDict::new(py);
                for (j, name) in names.iter().enumerate() {
                    // SAFETY: as above.
                    let value = unsafe { Borrowed::from_ptr(py, *args.add(nargs + j)) };
                    d.set_item(name, value)?;
                }
                Some(d)
            };
            generic
                .bind(py)
                .call(PyTuple::new(py, positional)?, kwargs.as_ref())
        },
    ))
    .unwrap_or_else(|payload| Err(panic_error(payload)));
    match r {
        Ok(v) => v.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// A panic caught at the boundary, as pyo3 reports one.
#[cold]
fn panic_error(payload: Box<dyn std::any::Any + Send + 'static>) -> PyErr {
    let msg = if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "panic from Rust code".to_owned()
    };
    pyo3::panic::PanicException::new_err((msg,))
}

/// Put [`get_fastcall`] in place of the pyo3 `get` on the `MemoryTier`
/// type (once, at module initialisation).
pub(crate) fn install_fast_get(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<PyMemoryTier>();
    let generic = ty.getattr("get")?;
    if GENERIC_GET.set(py, generic.unbind()).is_err() {
        return Ok(()); // installed already
    }
    // Lives as long as the type's descriptor: for the process.
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"get".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: get_fastcall,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c"get($self, key, default=None)\n--\n\nThe value under ``key``, or ``default`` when absent or expired.".as_ptr(),
    }));
    // SAFETY: ty is a live type object; def outlives the descriptor.
    let descr =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))? };
    ty.setattr("get", descr)
}
