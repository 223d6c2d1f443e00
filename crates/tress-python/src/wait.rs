//! How the bindings block: the GIL is let go only while the thread really
//! sleeps, and a wait on the main thread reacts to signals as CPython's own
//! lock waits do.
//!
//! [`Blocking`] is the [`tress::Interrupt`] every blocking binding passes to
//! the core. The core calls `before_sleep` / `after_sleep` around each sleep:
//! they release and retake the GIL (`PyEval_SaveThread` /
//! `PyEval_RestoreThread`, CPython's `Py_BEGIN_ALLOW_THREADS` pair), so the
//! fast paths never touch it. On the main thread, `check` runs Python's
//! pending signal handlers after the futex wait returned on `EINTR` (or after
//! a five-second slice, the safety net for a signal other than `SIGINT`
//! delivered to another thread, or one that came just before the sleep
//! began; a `SIGINT` delivered to another thread wakes the main thread
//! through `relay`);
//! an exception from a handler (`KeyboardInterrupt`) abandons the wait, and
//! the core leaves the primitive as if the call had never been made. Other
//! threads never run signal handlers, so they sleep in one piece.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyFloat;

/// The thread that runs Python's signal handlers (`threading.main_thread()`),
/// by `threading.get_ident()`; the forking thread in a child process.
static MAIN_THREAD: AtomicUsize = AtomicUsize::new(0);

/// `threading.TIMEOUT_MAX`, in seconds, read at import.
static TIMEOUT_MAX_BITS: AtomicUsize = AtomicUsize::new(0);

/// The longest a main-thread wait sleeps before running signal handlers.
const SIGNAL_SLICE: Duration = Duration::from_secs(5);

/// Records the main thread and the timeout limit; registers the fork hook.
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    let threading = py.import("threading")?;
    let ident: usize = threading
        .call_method0("main_thread")?
        .getattr("ident")?
        .extract()?;
    MAIN_THREAD.store(ident, Ordering::Relaxed);
    let max: f64 = threading.getattr("TIMEOUT_MAX")?.extract()?;
    TIMEOUT_MAX_BITS.store(max.to_bits() as usize, Ordering::Relaxed);
    let minor = py.version_info().minor;
    PY_MINOR.store(minor, Ordering::Relaxed);
    register_fork_hook();
    Ok(())
}

#[cfg(unix)]
fn register_fork_hook() {
    extern "C" fn child() {
        MAIN_THREAD.store(python_thread_ident(), Ordering::Relaxed);
        crate::relay::forget_target();
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `child` is async-signal-safe (one atomic store of a value
        // read from PyThread_get_thread_ident, which is pthread_self on
        // POSIX) and lives as long as the process, since the
        // extension module is never unloaded.
        unsafe {
            libc::pthread_atfork(None, None, Some(child));
        }
    });
}

#[cfg(not(unix))]
fn register_fork_hook() {}

/// `threading.TIMEOUT_MAX` in seconds.
pub(crate) fn timeout_max() -> f64 {
    f64::from_bits(TIMEOUT_MAX_BITS.load(Ordering::Relaxed) as u64)
}

/// Whether the calling thread runs Python's signal handlers. Compared in
/// Python's own thread ids (`threading.get_ident()`), which is what
/// `MAIN_THREAD` holds on every platform; looked up only when a call is
/// about to sleep.
#[inline]
pub(crate) fn on_main_thread() -> bool {
    python_thread_ident() == MAIN_THREAD.load(Ordering::Relaxed)
}

/// `threading.get_ident()` of the calling thread.
#[inline]
fn python_thread_ident() -> usize {
    // SAFETY: PyThread_get_thread_ident has no preconditions (it does not
    // need the GIL) and cannot fail.
    unsafe { ffi::PyThread_get_thread_ident() as usize }
}

/// The [`tress::Interrupt`] of a blocking call made with the GIL held.
pub(crate) struct Blocking<'py, 'w> {
    py: Python<'py>,
    /// Condition waiters to wake once this thread has let go of the GIL, so
    /// they do not wake into a GIL it still holds.
    wakes: Option<&'w tress::WakeList>,
    /// Set between `before_sleep` and `after_sleep`.
    saved: *mut ffi::PyThreadState,
    /// Whether signals may abandon the wait when it runs on the main
    /// thread (which is looked up only once the call really waits).
    interruptible: bool,
}

impl<'py, 'w> Blocking<'py, 'w> {
    /// A wait that `KeyboardInterrupt` (or any exception from a signal
    /// handler) abandons when it runs on the main thread.
    #[inline]
    pub(crate) fn interruptible(py: Python<'py>) -> Self {
        Self {
            py,
            wakes: None,
            saved: std::ptr::null_mut(),
            interruptible: true,
        }
    }

    /// A wait that signals do not abandon (the handlers run once the call
    /// returns): for taking a lock back after a condition wait.
    #[inline]
    pub(crate) fn uninterruptible(py: Python<'py>) -> Self {
        Self {
            py,
            wakes: None,
            saved: std::ptr::null_mut(),
            interruptible: false,
        }
    }

    /// Also wake `wakes` as soon as the GIL is let go of (the caller
    /// flushes them itself if the call never sleeps).
    #[inline]
    pub(crate) fn waking(mut self, wakes: Option<&'w tress::WakeList>) -> Self {
        self.wakes = wakes;
        self
    }
}

impl tress::Interrupt for Blocking<'_, '_> {
    type Error = PyErr;

    fn slice(&self) -> Option<Duration> {
        (self.interruptible && on_main_thread()).then_some(SIGNAL_SLICE)
    }

    fn check(&mut self) -> PyResult<()> {
        if self.interruptible && on_main_thread() {
            self.py.check_signals()
        } else {
            Ok(())
        }
    }

    fn may_spin(&self) -> bool {
        // Never poll with the GIL held: the holder may need it to release.
        false
    }

    fn before_sleep(&mut self) {
        // SAFETY: this thread holds the GIL (every binding method runs with
        // it, and `after_sleep` retakes it before control returns); nothing
        // touches Python objects until `after_sleep`.
        self.saved = unsafe { ffi::PyEval_SaveThread() };
        #[cfg(unix)]
        if self.interruptible && on_main_thread() {
            crate::relay::arm();
        }
        if let Some(wakes) = self.wakes {
            wakes.flush();
        }
    }

    fn after_sleep(&mut self) {
        // SAFETY: `saved` is the thread state `before_sleep` released on this
        // same thread.
        unsafe { ffi::PyEval_RestoreThread(self.saved) };
        self.saved = std::ptr::null_mut();
    }
}

/// `OverflowError` for an integer timeout past a 64-bit count of nanoseconds.
fn pytime_overflow() -> PyErr {
    // (3.13 made the type public: `PyTime_t`)
    PyOverflowError::new_err(if python_since(13) {
        "timestamp too large to convert to C PyTime_t"
    } else {
        "timestamp too large to convert to C _PyTime_t"
    })
}

/// How a float timeout is rounded to nanoseconds (CPython's `_PyTime_round_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Round {
    /// `_PyTime_ROUND_TIMEOUT`: away from zero (the locks).
    Timeout,
    /// `_PyTime_ROUND_CEILING`: towards +infinity (`SimpleQueue.get`).
    Ceiling,
}

/// Seconds to nanoseconds exactly as CPython 3.11 converts a timeout
/// (`_PyTime_FromSecondsObject` with the given rounding): NaN is a
/// `ValueError`, anything but a float goes through `__index__`, and
/// out-of-range values are `OverflowError`s.
pub(crate) fn seconds_to_ns(t: &Bound<'_, PyAny>, round: Round) -> PyResult<i64> {
    if let Ok(f) = t.cast::<PyFloat>() {
        let d = f.value();
        if d.is_nan() {
            return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
        }
        let x = d * 1e9;
        let x = if x >= 0.0 || round == Round::Ceiling {
            x.ceil()
        } else {
            x.floor()
        };
        let limit = -(i64::MIN as f64);
        if !(-limit <= x && x < limit) {
            return Err(PyOverflowError::new_err(
                "timestamp out of range for platform time_t",
            ));
        }
        return Ok(x as i64);
    }
    let secs = match t.extract::<i64>() {
        Ok(v) => v,
        Err(e) if e.is_instance_of::<PyOverflowError>(t.py()) => return Err(pytime_overflow()),
        Err(e) => return Err(e),
    };
    secs.checked_mul(1_000_000_000).ok_or_else(pytime_overflow)
}

/// A non-negative timeout in nanoseconds as a deadline, after CPython's
/// `TIMEOUT_MAX` check (`OverflowError: timeout value is too large`).
pub(crate) fn deadline_ns(ns: i64) -> PyResult<Instant> {
    let micros = (ns.max(0) as u64).div_ceil(1000);
    if micros as f64 > timeout_max() * 1e6 {
        return Err(PyOverflowError::new_err("timeout value is too large"));
    }
    let now = Instant::now();
    Ok(now
        .checked_add(Duration::from_nanos(ns.max(0) as u64))
        .unwrap_or_else(|| now + Duration::from_secs(u64::from(u32::MAX))))
}

/// How `Lock.acquire(blocking, timeout)` should wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LockWait {
    /// `blocking=False`.
    NoWait,
    /// `timeout=-1`.
    Forever,
    /// Until this deadline.
    Until(Instant),
}

/// `timeout=-1` in nanoseconds: "no timeout".
const UNSET_NS: i64 = -1_000_000_000;

/// An optional argument that keeps an explicit `None` (PyO3 maps `None` to
/// a missing `Option`): `Lock.acquire(timeout=None)` is a `TypeError`.
#[derive(Default)]
pub(crate) enum Arg<'py> {
    /// Not passed.
    #[default]
    Missing,
    /// Passed, whatever it is.
    Given(Bound<'py, PyAny>),
}

impl<'py> Arg<'py> {
    /// The argument, if passed.
    #[inline]
    pub(crate) fn get(&self) -> Option<&Bound<'py, PyAny>> {
        match self {
            Arg::Missing => None,
            Arg::Given(b) => Some(b),
        }
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Arg<'py> {
    type Error = PyErr;

    #[inline]
    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Arg::Given(obj.to_owned()))
    }
}

/// A flag argument taken by its truth value, as multiprocessing's `block`
/// (`q.get(1, 5)`, `lock.acquire(0)`): any object, `bool()` of it.
#[derive(Clone, Copy)]
pub(crate) struct Truthy(pub(crate) bool);

impl<'a, 'py> FromPyObject<'a, 'py> for Truthy {
    type Error = PyErr;

    #[inline]
    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Truthy(obj.is_truthy()?))
    }
}

/// The running interpreter's minor version (3.x), set by [`init`]: what
/// the stdlib's C functions do that changed between versions follows it.
static PY_MINOR: AtomicU8 = AtomicU8::new(11);

/// Whether the running interpreter is CPython 3.`minor` or later.
#[inline]
pub(crate) fn python_since(minor: u8) -> bool {
    PY_MINOR.load(Ordering::Relaxed) >= minor
}

/// A flag argument as the running interpreter's stdlib takes it: from
/// 3.12 on any object, by its truth value; on 3.11
/// an integer (or `__index__`) by its truth value, anything else (a float,
/// None, a str...) a `TypeError`.
#[inline]
pub(crate) fn c_flag(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    // 3.12 made `_thread.lock.acquire`'s `blocking` and `SemLock.acquire`'s
    // `block` truth values (they were C ints)
    if python_since(12) {
        obj.is_truthy()
    } else {
        Ok(obj.extract::<i64>()? != 0)
    }
}

/// A flag argument taken by [`c_flag`] (multiprocessing's
/// `SemLock.acquire(block)`, which `Queue.put` calls).
#[derive(Clone, Copy)]
pub(crate) struct CFlag(pub(crate) bool);

impl<'a, 'py> FromPyObject<'a, 'py> for CFlag {
    type Error = PyErr;

    #[inline]
    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(CFlag(c_flag(&obj)?))
    }
}

/// Parses `acquire(blocking=True, timeout=-1)` as `_thread.lock` does.
#[inline]
pub(crate) fn lock_args(
    blocking: Option<&Bound<'_, PyAny>>,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<LockWait> {
    let blocking = match blocking {
        None => true,
        Some(b) => c_flag(b)?,
    };
    let ns = match timeout {
        None => UNSET_NS,
        Some(t) => seconds_to_ns(t, Round::Timeout)?,
    };
    if !blocking && ns != UNSET_NS {
        return Err(PyValueError::new_err(
            "can't specify a timeout for a non-blocking call",
        ));
    }
    if ns < 0 && ns != UNSET_NS {
        return Err(PyValueError::new_err(if python_since(13) {
            "timeout value must be a non-negative number"
        } else {
            "timeout value must be positive"
        }));
    }
    if !blocking {
        return Ok(LockWait::NoWait);
    }
    if ns == UNSET_NS {
        return Ok(LockWait::Forever);
    }
    Ok(LockWait::Until(deadline_ns(ns)?))
}

/// The deadline of a Python-level wait (`Condition.wait`, `Event.wait`,
/// `Semaphore.acquire`, `Barrier.wait`) given `timeout=None` or seconds:
/// `None` waits forever, a timeout that is not `> 0` does not wait at all,
/// as `threading`'s `waiter.acquire(True, timeout)` / `acquire(False)`.
pub(crate) fn wait_deadline(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Instant>> {
    let Some(t) = timeout else {
        return Ok(None);
    };
    if t.is_none() {
        return Ok(None);
    }
    let positive = if let Ok(f) = t.cast::<PyFloat>() {
        f.value() > 0.0
    } else if let Ok(i) = t.extract::<i64>() {
        i > 0
    } else {
        t.gt(0)?
    };
    if !positive {
        return Ok(Some(Instant::now()));
    }
    Ok(Some(deadline_ns(seconds_to_ns(t, Round::Timeout)?)?))
}
