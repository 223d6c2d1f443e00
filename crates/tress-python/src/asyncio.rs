//! The native half of `tress.asyncio`'s loop (`python/tress/asyncio.py`):
//! its timers (`tress::event_loop::Timers`: O(1) cancellation that lets go
//! of the handle at once, compaction) and its inbox for other threads
//! (`tress::event_loop::Inbox`: the loop's eventfd is written only while
//! the loop is parked in its selector).
//!
//! Nothing here runs Python code under the core's lock: handles taken out
//! of the timers or the inbox are dropped, appended or called after it is
//! let go of (a handle's finalizer may come back to the loop).

use std::cmp::Ordering;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3::{PyTraverseError, PyVisit, intern};
use tress::event_loop::{Inbox, TimerId, Timers};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLoopCore>()?;
    Ok(())
}

/// A loop time in seconds (`loop.time()`), totally ordered (a NaN
/// deadline sorts after every number: never due).
#[derive(Debug, Clone, Copy)]
struct When(f64);

impl PartialEq for When {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for When {}
impl PartialOrd for When {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for When {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The timers and the cross-thread inbox of one `tress.asyncio` loop. It
/// also stands in for asyncio's `loop._scheduled` list where
/// `BaseEventLoop` touches it (`len`, `clear`).
#[pyclass(name = "LoopCore", module = "tress._tress", frozen)]
pub(crate) struct PyLoopCore {
    timers: tress::Mutex<Timers<Py<PyAny>, When>>,
    inbox: Arc<Inbox<Py<PyAny>>>,
}

impl PyLoopCore {
    fn timers(&self) -> tress::MutexGuard<'_, Timers<Py<PyAny>, When>> {
        self.timers.lock()
    }
}

#[pymethods]
impl PyLoopCore {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(PyLoopCore {
            timers: tress::Mutex::new(Timers::new()),
            inbox: Inbox::new()?,
        })
    }

    /// Schedules `handle` (a `TimerHandle`) for loop time `when`; its id.
    fn call_at(&self, when: f64, handle: Py<PyAny>) -> u64 {
        self.timers().insert(When(when), handle).to_bits()
    }

    /// Cancels the timer `id`: whether it was still scheduled. Its handle
    /// is let go of now.
    fn cancel(&self, id: u64) -> bool {
        let handle = self.timers().cancel(TimerId::from_bits(id));
        handle.is_some()
    }

    /// The earliest deadline scheduled, or None.
    fn next_when(&self) -> Option<f64> {
        self.timers().next_deadline().map(|w| w.0)
    }

    /// Appends every handle due at loop time `now` (deadline <= now: never
    /// early) to `ready`, earliest first, each marked `_scheduled = False`;
    /// how many.
    fn expire(&self, py: Python<'_>, now: f64, ready: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut due = Vec::new();
        self.timers().expire(When(now), |_, h| due.push(h));
        let n = due.len();
        if n == 0 {
            return Ok(0);
        }
        let scheduled = intern!(py, "_scheduled");
        for h in &due {
            h.bind(py).setattr(scheduled, false)?;
        }
        if n == 1 {
            ready.call_method1(intern!(py, "append"), (due.pop(),))?;
        } else {
            ready.call_method1(intern!(py, "extend"), (PyList::new(py, due)?,))?;
        }
        Ok(n)
    }

    /// Timers scheduled.
    fn __len__(&self) -> usize {
        self.timers().len()
    }

    /// Cancels every timer (a closing loop); their handles are let go of.
    fn clear(&self) {
        let handles = self.timers().clear();
        drop(handles);
    }

    /// Hands `handle` to the loop from another thread; the loop is woken
    /// only if it is parked in its selector.
    fn send(&self, handle: Py<PyAny>) {
        self.inbox.send(handle);
    }

    /// Wakes the loop (parked or about to park) with nothing sent.
    fn nudge(&self) {
        self.inbox.nudge();
    }

    /// Whether something was sent since the last `take`.
    fn pending(&self) -> bool {
        self.inbox.is_pending()
    }

    /// Appends what other threads sent to `ready`, in each one's order;
    /// how many.
    fn take(&self, py: Python<'_>, ready: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut items = Vec::new();
        self.inbox.take(&mut items);
        let n = items.len();
        if n > 0 {
            ready.call_method1(intern!(py, "extend"), (PyList::new(py, items)?,))?;
        }
        Ok(n)
    }

    /// Before a blocking select: whether the loop may block (false: work
    /// was sent, select without blocking and do not `unpark`).
    fn park(&self) -> bool {
        self.inbox.park()
    }

    /// After the blocking select returned.
    fn unpark(&self) {
        self.inbox.unpark();
    }

    /// The eventfd to watch for reading.
    fn waker_fd(&self) -> i32 {
        self.inbox.waker().as_raw_fd()
    }

    /// Drains the eventfd (its reader callback).
    fn drain_waker(&self) {
        self.inbox.waker().drain();
    }

    fn __repr__(&self) -> String {
        format!("<tress._tress.LoopCore timers={}>", self.timers().len())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Only a thread attached to the interpreter takes this lock, and it
        // is never held across Python code: the collector finds it free.
        if let Some(timers) = self.timers.try_lock() {
            for h in timers.values() {
                visit.call(h)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.clear();
    }
}
