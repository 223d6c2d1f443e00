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
//! a 50 ms slice, the safety net for signals delivered to another thread);
//! an exception from a handler (`KeyboardInterrupt`) abandons the wait, and
//! the core leaves the primitive as if the call had never been made. Other
//! threads never run signal handlers, so they sleep in one piece.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

/// The thread that runs Python's signal handlers (`threading.main_thread()`),
/// by [`tress::current_thread_id`]; the forking thread in a child process.
static MAIN_THREAD: AtomicUsize = AtomicUsize::new(0);

/// `threading.TIMEOUT_MAX`, in seconds, read at import.
static TIMEOUT_MAX_BITS: AtomicUsize = AtomicUsize::new(0);

/// The longest a main-thread wait sleeps before running signal handlers.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

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
    register_fork_hook();
    Ok(())
}

#[cfg(unix)]
fn register_fork_hook() {
    extern "C" fn child() {
        MAIN_THREAD.store(tress::current_thread_id(), Ordering::Relaxed);
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `child` is async-signal-safe (one atomic store of a value
        // read from pthread_self) and lives as long as the process, since the
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

/// Whether the calling thread runs Python's signal handlers.
#[inline]
pub(crate) fn on_main_thread() -> bool {
    tress::current_thread_id() == MAIN_THREAD.load(Ordering::Relaxed)
}

/// The [`tress::Interrupt`] of a blocking call made with the GIL held.
pub(crate) struct Blocking<'py> {
    py: Python<'py>,
    /// Set between `before_sleep` and `after_sleep`.
    saved: *mut ffi::PyThreadState,
    /// Whether signals may abandon the wait (main thread, and the caller
    /// allows it).
    interruptible: bool,
}

impl<'py> Blocking<'py> {
    /// A wait that `KeyboardInterrupt` (or any exception from a signal
    /// handler) abandons when it runs on the main thread.
    #[inline]
    pub(crate) fn interruptible(py: Python<'py>) -> Self {
        Self {
            py,
            saved: std::ptr::null_mut(),
            interruptible: on_main_thread(),
        }
    }

    /// A wait that signals do not abandon (the handlers run once the call
    /// returns): for taking a lock back after a condition wait.
    #[inline]
    pub(crate) fn uninterruptible(py: Python<'py>) -> Self {
        Self {
            py,
            saved: std::ptr::null_mut(),
            interruptible: false,
        }
    }
}

impl tress::Interrupt for Blocking<'_> {
    type Error = PyErr;

    fn slice(&self) -> Option<Duration> {
        self.interruptible.then_some(SIGNAL_SLICE)
    }

    fn check(&mut self) -> PyResult<()> {
        if self.interruptible {
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
    }

    fn after_sleep(&mut self) {
        // SAFETY: `saved` is the thread state `before_sleep` released on this
        // same thread.
        unsafe { ffi::PyEval_RestoreThread(self.saved) };
        self.saved = std::ptr::null_mut();
    }
}

/// A timeout in seconds as a deadline: `None` for "forever".
/// Past `threading.TIMEOUT_MAX` is CPython's `OverflowError`.
pub(crate) fn deadline(seconds: f64) -> PyResult<Option<Instant>> {
    if seconds > timeout_max() {
        return Err(PyOverflowError::new_err("timeout value is too large"));
    }
    let secs = seconds.max(0.0);
    Ok(Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(tress::deadline_after))
}

/// How `Lock.acquire(blocking, timeout)` should wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LockWait {
    /// `blocking=False`.
    NoWait,
    /// `timeout=-1`.
    Forever,
    /// A timeout in seconds (>= 0).
    For(f64),
}

/// Parses `acquire(blocking=True, timeout=-1)` as `_thread.lock` does.
#[inline]
pub(crate) fn lock_args(
    blocking: Option<&Bound<'_, PyAny>>,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<LockWait> {
    let blocking = match blocking {
        None => true,
        Some(b) => b.is_truthy()?,
    };
    let timeout = match timeout {
        None => {
            return Ok(if blocking {
                LockWait::Forever
            } else {
                LockWait::NoWait
            });
        }
        Some(t) => t.extract::<f64>()?,
    };
    if timeout == -1.0 {
        return Ok(if blocking {
            LockWait::Forever
        } else {
            LockWait::NoWait
        });
    }
    if !blocking {
        return Err(PyValueError::new_err(
            "can't specify a timeout for a non-blocking call",
        ));
    }
    if timeout < 0.0 {
        return Err(PyValueError::new_err(
            "timeout value must be a non-negative number",
        ));
    }
    if timeout > timeout_max() {
        return Err(PyOverflowError::new_err("timeout value is too large"));
    }
    Ok(LockWait::For(timeout))
}

/// Parses a Python-level `timeout=None` argument (Condition, Event,
/// Semaphore, Barrier): `None` waits forever.
#[inline]
pub(crate) fn py_timeout(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_none() => Ok(None),
        Some(t) => Ok(Some(t.extract::<f64>()?)),
    }
}
