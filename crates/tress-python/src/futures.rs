//! `tress.futures` natively: the future's hot paths and the thread pool's
//! queue and worker loop.
//!
//! [`PyFutureCore`] is the first base of `tress.futures.Future`, whose
//! second base is `concurrent.futures.Future`: instances are the stdlib's
//! futures for `isinstance`, `wait`, `as_completed` and asyncio, and every
//! method of the stdlib's class is overridden here. The stdlib's module
//! functions reach into a future's private attributes under its
//! `_condition` (`_state`, `_waiters`); they are properties here, backed by
//! the native fields, and the condition (over a tress RLock, as the stdlib's
//! `threading.Condition()`) is made on first use. Every change of state
//! holds that condition when it exists, so `wait` and `as_completed` see
//! the same protocol as with the stdlib's futures; while it does not exist
//! nobody can hold it, and a change made without it is made under the
//! future's own lock in the same section that saw there was none. That
//! lock (the class is frozen) keeps two threads out of the fields at once
//! without counting on the GIL; it is never held across Python code (see
//! [`PyFutureCore`]).
//!
//! [`PyPoolCore`] is the work queue of `tress.futures.ThreadPoolExecutor`
//! with the stdlib's bookkeeping (idle credits, lazily started workers,
//! shutdown, broken pool) and the loop its worker threads run. The threads
//! are `threading.Thread`s started by the Python side; their loop is here:
//! it keeps the GIL from one task to the next while there is work (passing
//! through the eval loop's GIL-drop check every [`CHECKPOINT_EVERY`], so a
//! stream of C-level calls does not starve other threads) and lets go of it
//! only to wait for work.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::threading::PyCondition;
use crate::wait::wait_deadline;

/// Registers the classes and functions on the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Imported now, not on first use: a first use that imports runs Python
    // code, which may hand the GIL to another thread in the middle of a
    // method that has looked at a future's state.
    base(m.py())?;
    FREE_THREADED.store(free_threaded(m.py())?, Ordering::Relaxed);
    m.add_class::<PyFutureCore>()?;
    m.add_class::<PyPoolCore>()?;
    m.add_class::<PyChunkedMap>()?;
    m.add_class::<PyMapIter>()?;
    m.add_function(wrap_pyfunction!(_pools_exiting, m)?)?;
    Ok(())
}

/// Whether the interpreter is a free-threaded build (see [`free_threaded`]);
/// until the module is initialized, assumed so (the safe answer).
static FREE_THREADED: AtomicBool = AtomicBool::new(true);

/// Whether the interpreter may run two threads' Python code at once: a
/// free-threaded build (`t` in `sys.abiflags`, 3.13t on POSIX), or one
/// whose GIL is off as the module is initialized (`sys._is_gil_enabled()`,
/// 3.13 on: what a free-threaded build on Windows, which has no
/// `abiflags`, says while it runs without its GIL). A free-threaded build
/// that turns its GIL on later still counts as one: the answer only picks
/// the safe path for either.
fn free_threaded(py: Python<'_>) -> PyResult<bool> {
    let sys = py.import("sys")?;
    if let Ok(flags) = sys.getattr("abiflags")
        && flags.extract::<String>()?.contains('t')
    {
        return Ok(true);
    }
    match sys.getattr("_is_gil_enabled") {
        Ok(enabled) => Ok(!enabled.call0()?.is_truthy()?),
        Err(_) => Ok(false),
    }
}

/// A future's state: `concurrent.futures._base`'s five.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Cancelled,
    CancelledAndNotified,
    Finished,
}

impl State {
    const ALL: [State; 5] = [
        State::Pending,
        State::Running,
        State::Cancelled,
        State::CancelledAndNotified,
        State::Finished,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn is_cancelled(self) -> bool {
        matches!(self, State::Cancelled | State::CancelledAndNotified)
    }

    /// Cancelled or finished: `done()`.
    fn is_done(self) -> bool {
        matches!(
            self,
            State::Cancelled | State::CancelledAndNotified | State::Finished
        )
    }
}

/// What `concurrent.futures._base` provides, imported once.
struct Base {
    /// `PENDING`, `RUNNING`, … as the very string objects of `_base`, in the
    /// order of [`State::ALL`].
    states: [Py<PyString>; 5],
    cancelled_error: Py<PyType>,
    invalid_state_error: Py<PyType>,
    timeout_error: Py<PyType>,
    logger: Py<PyAny>,
}

fn base(py: Python<'_>) -> PyResult<&'static Base> {
    static BASE: PyOnceLock<Base> = PyOnceLock::new();
    BASE.get_or_try_init(py, || {
        let m = py.import("concurrent.futures._base")?;
        let state = |name: &str| -> PyResult<Py<PyString>> {
            Ok(m.getattr(name)?.cast_into::<PyString>()?.unbind())
        };
        let class = |name: &str| -> PyResult<Py<PyType>> {
            Ok(m.getattr(name)?.cast_into::<PyType>()?.unbind())
        };
        Ok(Base {
            states: [
                state("PENDING")?,
                state("RUNNING")?,
                state("CANCELLED")?,
                state("CANCELLED_AND_NOTIFIED")?,
                state("FINISHED")?,
            ],
            cancelled_error: class("CancelledError")?,
            invalid_state_error: class("InvalidStateError")?,
            timeout_error: class("TimeoutError")?,
            logger: m.getattr("LOGGER")?.unbind(),
        })
    })
}

fn error<'py>(
    class: &Py<PyType>,
    py: Python<'py>,
    args: impl IntoPyObject<'py>,
) -> PyResult<PyErr> {
    let value = class.bind(py).call1((args,))?;
    Ok(PyErr::from_value(value))
}

fn error0(class: &Py<PyType>, py: Python<'_>) -> PyResult<PyErr> {
    Ok(PyErr::from_value(class.bind(py).call0()?))
}

/// The native half of `tress.futures.Future` (see the module docs).
///
/// Frozen: the fields live behind [`PyFutureCore::inner`], a short lock
/// that is never held across anything that can run Python code (calling
/// Python, dropping a `Py` whose decref may run a finalizer, allocating a
/// Python object, which may run the collector) and never while waiting for
/// another lock; so a finalizer or callback that comes back to the same
/// future never finds it taken, and no thread waits for it while its
/// holder waits for something else.
#[pyclass(name = "FutureCore", module = "tress._tress", subclass, frozen)]
pub(crate) struct PyFutureCore {
    inner: tress::Mutex<Inner>,
}

/// The fields of a [`PyFutureCore`], under its lock.
struct Inner {
    state: State,
    result: Option<Py<PyAny>>,
    exception: Option<Py<PyAny>>,
    /// `_waiters`, made on first use.
    waiters: Option<Py<PyList>>,
    /// `_done_callbacks`, made on first use.
    callbacks: Option<Py<PyList>>,
    /// `_condition`, made on first use.
    condition: Option<Py<PyCondition>>,
}

/// The future's condition held (when it has one) for a change of state;
/// released on drop.
struct Held<'py> {
    cond: Option<Bound<'py, PyCondition>>,
}

impl Held<'_> {
    fn notify_all(&self) -> PyResult<()> {
        match &self.cond {
            Some(c) => c.get().notify_all_native(c.py()),
            None => Ok(()),
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.cond.take() {
            // Releasing an RLock this thread holds cannot fail.
            let _ = c.get().unlock_native(c.py());
        }
    }
}

/// A non-empty list's handle, for iterating after the lock is let go of
/// (a new reference: no Python code runs; `is_empty` reads the size).
fn nonempty(list: &Option<Py<PyList>>, py: Python<'_>) -> Option<Py<PyList>> {
    list.as_ref()
        .filter(|l| !l.bind(py).is_empty())
        .map(|l| l.clone_ref(py))
}

/// How a finished or cancelled future's `result()` / `exception()` ends,
/// as read under the lock (new references, turned into errors after).
enum Outcome {
    Finished {
        result: Option<Py<PyAny>>,
        exception: Option<Py<PyAny>>,
    },
    Cancelled,
    NotDone,
}

impl PyFutureCore {
    fn blank() -> Self {
        Self {
            inner: tress::Mutex::new(Inner {
                state: State::Pending,
                result: None,
                exception: None,
                waiters: None,
                callbacks: None,
                condition: None,
            }),
        }
    }

    fn state(&self) -> State {
        self.inner.lock().state
    }

    /// Takes the future's condition (when it has one), then runs `change`
    /// on the fields under the lock. The condition held is the one the
    /// fields name when `change` runs: one made by another thread between
    /// looking and locking (possible without a GIL) means letting go and
    /// taking that one instead. So a change of state holds the condition
    /// whenever the future has one, and a change made without it is made
    /// in the same locked section that saw there was none (before anyone
    /// could hold it). `change` must not run Python code nor drop Python
    /// references: what it replaces it returns, for the caller to drop.
    fn change<'py, R>(
        slf: &Bound<'py, Self>,
        change: impl FnOnce(&mut Inner) -> R,
    ) -> PyResult<(Held<'py>, R)> {
        let py = slf.py();
        let me = slf.get();
        loop {
            let cond = me.inner.lock().condition.as_ref().map(|c| c.clone_ref(py));
            let cond = cond.map(|c| c.into_bound(py));
            if let Some(c) = &cond {
                c.get().lock_native(py)?;
            }
            let held = Held { cond };
            let mut inner = me.inner.lock();
            let current = inner.condition.as_ref().map(Py::as_ptr);
            if current == held.cond.as_ref().map(Bound::as_ptr) {
                let r = change(&mut inner);
                drop(inner);
                return Ok((held, r));
            }
            drop(inner);
            drop(held);
        }
    }

    /// The condition, made now if it was not yet.
    fn condition_of<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyCondition>> {
        let py = slf.py();
        let me = slf.get();
        let existing = me.inner.lock().condition.as_ref().map(|c| c.clone_ref(py));
        if let Some(c) = existing {
            return Ok(c.into_bound(py));
        }
        // Made with the lock let go of (allocating may run the collector,
        // whose finalizers may come back here): the first one stored wins,
        // and a loser is dropped after the lock is let go of.
        let made = Bound::new(py, PyCondition::with_rlock(py)?)?;
        let stored = me
            .inner
            .lock()
            .condition
            .get_or_insert_with(|| made.clone().unbind())
            .clone_ref(py);
        drop(made);
        Ok(stored.into_bound(py))
    }

    /// The list in `field` (`_waiters` or `_done_callbacks`), made if there
    /// is none yet (with the lock let go of: allocating may run the
    /// collector); the first one stored wins.
    fn list_of<'py>(
        slf: &Bound<'py, Self>,
        field: fn(&mut Inner) -> &mut Option<Py<PyList>>,
    ) -> Bound<'py, PyList> {
        let py = slf.py();
        let me = slf.get();
        let existing = field(&mut me.inner.lock())
            .as_ref()
            .map(|l| l.clone_ref(py));
        if let Some(l) = existing {
            return l.into_bound(py);
        }
        let made = PyList::empty(py);
        let stored = field(&mut me.inner.lock())
            .get_or_insert_with(|| made.clone().unbind())
            .clone_ref(py);
        drop(made);
        stored.into_bound(py)
    }

    /// The outcome as it stands, read under the lock.
    fn outcome_now(&self, py: Python<'_>) -> Outcome {
        let me = self.inner.lock();
        match me.state {
            State::Finished => Outcome::Finished {
                result: me.result.as_ref().map(|r| r.clone_ref(py)),
                exception: me.exception.as_ref().map(|e| e.clone_ref(py)),
            },
            s if s.is_cancelled() => Outcome::Cancelled,
            _ => Outcome::NotDone,
        }
    }

    /// What `result()` returns or raises once the future is done; `None`
    /// while it is not.
    fn outcome(slf: &Bound<'_, Self>) -> Option<PyResult<Py<PyAny>>> {
        let py = slf.py();
        match slf.get().outcome_now(py) {
            Outcome::Finished { result, exception } => Some(match exception {
                Some(e) => {
                    drop(result);
                    Err(PyErr::from_value(e.into_bound(py)))
                }
                None => Ok(result.unwrap_or_else(|| py.None())),
            }),
            Outcome::Cancelled => Some(
                base(py)
                    .and_then(|b| error0(&b.cancelled_error, py))
                    .and_then(Err),
            ),
            Outcome::NotDone => None,
        }
    }

    /// Waits until the future is done or `timeout` (seconds, `None` for no
    /// limit) has passed.
    fn wait_done(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let until = wait_deadline(timeout)?;
        let cond = Self::condition_of(slf)?;
        let c = cond.get();
        c.lock_native(py)?;
        let held = Held {
            cond: Some(cond.clone()),
        };
        loop {
            if me.state().is_done() {
                return Ok(());
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(());
            }
            let woke = c.wait_native(py, until);
            // The lock is held again whatever the wait's outcome.
            if !woke? && !me.state().is_done() {
                drop(held);
                return Ok(());
            }
        }
    }

    /// Runs the done callbacks, logging their `Exception`s as the stdlib.
    fn invoke(slf: &Bound<'_, Self>, callbacks: Option<Py<PyList>>) -> PyResult<()> {
        let Some(callbacks) = callbacks else {
            return Ok(());
        };
        let py = slf.py();
        let callbacks = callbacks.bind(py);
        let mut i = 0;
        while i < callbacks.len() {
            let cb = callbacks.get_item(i)?;
            Self::call_logged(slf, &cb)?;
            i += 1;
        }
        Ok(())
    }

    fn call_logged(slf: &Bound<'_, Self>, cb: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        match cb.call1((slf,)) {
            Ok(_) => Ok(()),
            Err(e) if e.is_instance_of::<PyException>(py) => {
                let kwargs = PyDict::new(py);
                kwargs.set_item("exc_info", e.value(py))?;
                base(py)?.logger.bind(py).call_method(
                    "exception",
                    ("exception calling callback for %r", slf),
                    Some(&kwargs),
                )?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `set_result` / `set_exception`.
    fn finish(
        slf: &Bound<'_, Self>,
        value: Bound<'_, PyAny>,
        failed: bool,
        method: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        // set_exception(None): as the stdlib, no exception after all
        let mut value = (!(failed && value.is_none())).then(|| value.unbind());
        let (held, changed) = Self::change(slf, |me| {
            if me.state.is_done() {
                return Err(me.state);
            }
            me.state = State::Finished;
            let old = if failed {
                std::mem::replace(&mut me.exception, value.take())
            } else {
                std::mem::replace(&mut me.result, value.take())
            };
            Ok((old, nonempty(&me.waiters, py), nonempty(&me.callbacks, py)))
        })?;
        // Not stored (the future was done): dropped with the lock let go of.
        drop(value);
        let (old, waiters, callbacks) = match changed {
            Ok(changed) => changed,
            Err(state) => {
                let message = format!(
                    "{}: {}",
                    base(py)?.states[state.index()].bind(py),
                    slf.repr()?
                );
                drop(held);
                return Err(error(&base(py)?.invalid_state_error, py, message)?);
            }
        };
        drop(old);
        if let Some(waiters) = waiters {
            for w in waiters.bind(py).iter() {
                w.call_method1(method, (slf,))?;
            }
        }
        held.notify_all()?;
        drop(held);
        Self::invoke(slf, callbacks)
    }

    /// Sets the outcome from a worker: `set_result` or `set_exception`.
    fn settle(slf: &Bound<'_, Self>, outcome: PyResult<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let (value, failed) = match outcome {
            Ok(v) => (v, false),
            Err(e) => (e.into_value(py).into_bound(py).into_any(), true),
        };
        // The fast path: nobody has looked at the future's insides (no
        // condition anyone could hold, no waiters, no callbacks). Nothing
        // here allocates, runs Python code or drops a reference under the
        // lock: the value replaced is dropped after.
        let mut value = Some(value.unbind());
        let replaced = {
            let mut me = slf.get().inner.lock();
            if me.state == State::Running
                && me.condition.is_none()
                && me.waiters.is_none()
                && me.callbacks.is_none()
            {
                me.state = State::Finished;
                Some(if failed {
                    std::mem::replace(&mut me.exception, value.take())
                } else {
                    std::mem::replace(&mut me.result, value.take())
                })
            } else {
                None
            }
        };
        match (replaced, value) {
            (Some(old), _) => {
                drop(old);
                Ok(())
            }
            (None, Some(value)) => {
                let value = value.into_bound(py);
                if failed {
                    Self::finish(slf, value, true, "add_exception")
                } else {
                    Self::finish(slf, value, false, "add_result")
                }
            }
            (None, None) => unreachable!("the value is taken only when stored"),
        }
    }

    /// `set_running_or_notify_cancel()`.
    fn start(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        {
            let mut me = slf.get().inner.lock();
            if me.state == State::Pending && me.condition.is_none() {
                me.state = State::Running;
                return Ok(true);
            }
        }
        let (held, (state, waiters)) = Self::change(slf, |me| match me.state {
            State::Cancelled => {
                me.state = State::CancelledAndNotified;
                (State::Cancelled, nonempty(&me.waiters, py))
            }
            State::Pending => {
                me.state = State::Running;
                (State::Pending, None)
            }
            state => (state, None),
        })?;
        match state {
            State::Cancelled => {
                if let Some(waiters) = waiters {
                    for w in waiters.bind(py).iter() {
                        w.call_method1("add_cancelled", (slf,))?;
                    }
                }
                drop(held);
                Ok(false)
            }
            State::Pending => {
                drop(held);
                Ok(true)
            }
            state => {
                let b = base(py)?;
                let id = slf.as_ptr() as usize;
                b.logger.bind(py).call_method1(
                    "critical",
                    (
                        "Future %s in unexpected state: %s",
                        id,
                        b.states[state.index()].bind(py),
                    ),
                )?;
                drop(held);
                Err(PyRuntimeError::new_err("Future in unexpected state"))
            }
        }
    }
}

#[pymethods]
impl PyFutureCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self::blank()
    }

    /// Initializes the future (a pending one).
    fn __init__(&self) {}

    /// Cancel the future if possible; returns whether it is cancelled.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let (held, changed) = Self::change(slf, |me| match me.state {
            State::Running | State::Finished => Err(false),
            State::Cancelled | State::CancelledAndNotified => Err(true),
            State::Pending => {
                me.state = State::Cancelled;
                Ok(nonempty(&me.callbacks, py))
            }
        })?;
        let callbacks = match changed {
            Ok(callbacks) => callbacks,
            Err(cancelled) => return Ok(cancelled),
        };
        held.notify_all()?;
        drop(held);
        Self::invoke(slf, callbacks)?;
        Ok(true)
    }

    /// Return True if the future was cancelled.
    fn cancelled(&self) -> bool {
        self.state().is_cancelled()
    }

    /// Return True if the future is currently executing.
    fn running(&self) -> bool {
        self.state() == State::Running
    }

    /// Return True if the future was cancelled or finished executing.
    fn done(&self) -> bool {
        self.state().is_done()
    }

    /// Return the result of the call that the future represents, waiting
    /// at most `timeout` seconds (`TimeoutError`); re-raises the call's
    /// exception; `CancelledError` if the future was cancelled.
    #[pyo3(signature = (timeout=None))]
    fn result(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        if let Some(outcome) = Self::outcome(slf) {
            return outcome;
        }
        Self::wait_done(slf, timeout)?;
        match Self::outcome(slf) {
            Some(outcome) => outcome,
            None => Err(error0(&base(slf.py())?.timeout_error, slf.py())?),
        }
    }

    /// Return the exception raised by the call that the future represents
    /// (None if it returned), waiting at most `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn exception(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = slf.get();
        if !me.state().is_done() {
            Self::wait_done(slf, timeout)?;
        }
        match me.outcome_now(py) {
            Outcome::Finished { result, exception } => {
                drop(result);
                Ok(exception.unwrap_or_else(|| py.None()))
            }
            Outcome::Cancelled => Err(error0(&base(py)?.cancelled_error, py)?),
            Outcome::NotDone => Err(error0(&base(py)?.timeout_error, py)?),
        }
    }

    /// Attach a callable, called with the future when it is cancelled or
    /// finishes (at once if it already did).
    #[pyo3(name = "add_done_callback")]
    fn add_done_callback_py(slf: &Bound<'_, Self>, func: &Bound<'_, PyAny>) -> PyResult<()> {
        let me = slf.get();
        if !me.state().is_done() {
            // Looking at the state and appending must not interleave with
            // a `finish` or `cancel` taking the list. The append cannot be
            // made under the future's lock (a list operation may wait for
            // the list on a free-threaded build), so it is made under the
            // condition, which every change of state holds once it exists
            // (see `change`). With a GIL, the condition need not be made
            // for this: from the last look to the append nothing lets go
            // of the GIL, so no change of state can come in between.
            if FREE_THREADED.load(Ordering::Relaxed) {
                Self::condition_of(slf)?;
            }
            let (held, pending) = Self::change(slf, |me| !me.state.is_done())?;
            if pending {
                let list = Self::list_of(slf, |me| &mut me.callbacks);
                // Making the list may have run the collector, whose
                // finalizers may have let another thread in (without a
                // condition, only the GIL orders changes): look again.
                if !me.state().is_done() {
                    list.append(func)?;
                    drop(held);
                    return Ok(());
                }
            }
            drop(held);
        }
        Self::call_logged(slf, func)
    }

    /// Mark the future as running or process any cancel notifications
    /// (for executors).
    fn set_running_or_notify_cancel(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Self::start(slf)
    }

    /// Sets the return value of work associated with the future.
    fn set_result(slf: &Bound<'_, Self>, result: Bound<'_, PyAny>) -> PyResult<()> {
        Self::finish(slf, result, false, "add_result")
    }

    /// Sets the result of the future as being the given exception.
    fn set_exception(slf: &Bound<'_, Self>, exception: Bound<'_, PyAny>) -> PyResult<()> {
        Self::finish(slf, exception, true, "add_exception")
    }

    fn _invoke_callbacks(slf: &Bound<'_, Self>) -> PyResult<()> {
        let callbacks = nonempty(&slf.get().inner.lock().callbacks, slf.py());
        Self::invoke(slf, callbacks)
    }

    #[getter]
    fn _state(&self, py: Python<'_>) -> PyResult<Py<PyString>> {
        let state = self.state();
        Ok(base(py)?.states[state.index()].clone_ref(py))
    }

    #[setter(_state)]
    fn set_state(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = value.py();
        let states = &base(py)?.states;
        for (s, name) in State::ALL.iter().zip(states) {
            if value.eq(name.bind(py))? {
                self.inner.lock().state = *s;
                return Ok(());
            }
        }
        Err(PyValueError::new_err(format!(
            "not a future state: {} (one of concurrent.futures._base's PENDING, RUNNING, \
             CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)",
            value.repr()?
        )))
    }

    #[getter]
    fn _result(&self, py: Python<'_>) -> Py<PyAny> {
        let result = self.inner.lock().result.as_ref().map(|r| r.clone_ref(py));
        result.unwrap_or_else(|| py.None())
    }

    #[setter(_result)]
    fn set_result_attr(&self, value: Bound<'_, PyAny>) {
        let v = (!value.is_none()).then(|| value.unbind());
        let old = std::mem::replace(&mut self.inner.lock().result, v);
        drop(old);
    }

    #[getter]
    fn _exception(&self, py: Python<'_>) -> Py<PyAny> {
        let exception = self
            .inner
            .lock()
            .exception
            .as_ref()
            .map(|e| e.clone_ref(py));
        exception.unwrap_or_else(|| py.None())
    }

    #[setter(_exception)]
    fn set_exception_attr(&self, value: Bound<'_, PyAny>) {
        let v = (!value.is_none()).then(|| value.unbind());
        let old = std::mem::replace(&mut self.inner.lock().exception, v);
        drop(old);
    }

    #[getter]
    fn _waiters<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyList> {
        Self::list_of(slf, |me| &mut me.waiters)
    }

    #[setter(_waiters)]
    fn set_waiters(&self, value: Bound<'_, PyList>) {
        let old = self.inner.lock().waiters.replace(value.unbind());
        drop(old);
    }

    #[getter]
    fn _done_callbacks<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyList> {
        Self::list_of(slf, |me| &mut me.callbacks)
    }

    #[setter(_done_callbacks)]
    fn set_done_callbacks(&self, value: Bound<'_, PyList>) {
        let old = self.inner.lock().callbacks.replace(value.unbind());
        drop(old);
    }

    #[getter]
    fn _condition<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyCondition>> {
        Self::condition_of(slf)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // A try-lock: a traversal must not block. It always succeeds. The
        // lock is only ever held over a few instructions that run no
        // Python code, allocate nothing, and neither wait nor let go of
        // the interpreter; a collection starts only at an allocation (or
        // `gc.collect()`), and with a GIL it runs on a thread holding the
        // GIL, which no other thread in such a section can have let go of
        // in the middle of it, nor can this thread be in one; without a
        // GIL it stops the world first, and a thread stops only where it
        // could let go of the interpreter, never inside such a section.
        // Should it ever fail, this visits nothing, as PyO3 itself does
        // for a mutable pyclass it finds borrowed: the fields' referents
        // then count as referenced from outside, so the collector keeps
        // them (a cycle through them waits for a later collection) and
        // frees nothing wrongly; the answer cannot change within one
        // collection, as the lock's state cannot.
        let Some(me) = self.inner.try_lock() else {
            return Ok(());
        };
        for obj in [&me.result, &me.exception].into_iter().flatten() {
            visit.call(obj)?;
        }
        for list in [&me.waiters, &me.callbacks].into_iter().flatten() {
            visit.call(list)?;
        }
        if let Some(c) = &me.condition {
            visit.call(c)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        // The references are taken out under the lock and dropped after
        // it (a decref may run a finalizer that comes back to this
        // future). The lock is free: the collector clears only
        // unreachable futures, which no thread is in a method of, and
        // never while this thread holds it (see `__traverse__`).
        let taken = {
            let mut me = self.inner.lock();
            (
                me.result.take(),
                me.exception.take(),
                me.waiters.take(),
                me.callbacks.take(),
                me.condition.take(),
            )
        };
        drop(taken);
    }
}

// ---------------------------------------------------------------- the pool

/// How often a worker running tasks back to back passes through the
/// interpreter's eval loop (see [`PyPoolCore::work`]).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

/// A no-op Python function: calling it runs the eval loop's check for a
/// request to drop the GIL, which is how CPython hands the GIL to a thread
/// that has waited for it a switch interval.
fn checkpoint(py: Python<'_>) -> PyResult<&'static Py<PyAny>> {
    static CHECKPOINT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CHECKPOINT.get_or_try_init(py, || Ok(py.eval(c"lambda: None", None, None)?.unbind()))
}

/// The interpreter is exiting: pools refuse new work (`_pools_exiting`).
static EXITING: AtomicBool = AtomicBool::new(false);

/// Marks the interpreter as exiting: every pool's `submit` raises
/// `RuntimeError('cannot schedule new futures after interpreter shutdown')`.
#[pyfunction]
fn _pools_exiting() {
    EXITING.store(true, Ordering::SeqCst);
}

/// A queued call.
struct Call {
    future: Py<PyFutureCore>,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
}

/// A queued call of a `tress.pool.ThreadPool`: no future, its outcome
/// goes to `deliver(success, value)`.
struct Delivery {
    func: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
    deliver: Py<PyAny>,
}

enum Job {
    Call(Call),
    Deliver(Delivery),
    /// Workers exit; each passes it on to the next.
    Stop,
}

/// The queue, bookkeeping and worker loop of a
/// `tress.futures.ThreadPoolExecutor`.
#[pyclass(name = "ThreadPoolCore", module = "tress._tress", frozen)]
pub(crate) struct PyPoolCore {
    jobs: tress::SimpleQueue<Job>,
    /// The future class to create (`tress.futures.Future`).
    future_type: Py<PyType>,
    /// Called with no arguments to start one more worker thread.
    spawn: OnceLock<Py<PyAny>>,
    /// `concurrent.futures.thread.BrokenThreadPool`.
    broken_class: Py<PyType>,
    max_workers: usize,
    /// Workers started.
    threads: AtomicUsize,
    /// Tasks finished that no submit has counted on yet: the stdlib's
    /// `_idle_semaphore`.
    idle: AtomicUsize,
    shutdown: AtomicBool,
    /// Why the pool is broken, once it is. Its lock is also the pool's
    /// gate: a `submit` checks the pool's state and queues its call under
    /// it, and `shutdown`, `break_pool` and `stop_workers` change the state
    /// and queue the workers' stop under it, so a call is never queued
    /// behind a stop (its future would never finish). Held for Rust code
    /// only: nothing under it runs Python code or drops a reference.
    broken: Mutex<Option<String>>,
}

impl PyPoolCore {
    fn take_idle(&self) -> bool {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The gate (see `broken`).
    fn gate(&self) -> MutexGuard<'_, Option<String>> {
        self.broken.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn broken_message(&self) -> Option<String> {
        self.gate().clone()
    }

    /// Takes every queued call out (and the stop, if queued: the caller
    /// queues one again when it needs to); the deliveries are dropped
    /// undelivered (a terminated `ThreadPool`'s, as the stdlib's).
    fn drain(&self) -> Vec<Call> {
        let mut calls = Vec::new();
        while let Some(job) = self.jobs.try_get() {
            if let Job::Call(c) = job {
                calls.push(c);
            }
        }
        calls
    }

    /// Runs one delivery: the call, then its outcome to `deliver` (an
    /// exception of any kind is the outcome: nothing waits forever).
    fn deliver(py: Python<'_>, d: Delivery) -> PyResult<()> {
        let outcome = d
            .func
            .bind(py)
            .call(d.args.bind(py), d.kwargs.as_ref().map(|k| k.bind(py)));
        drop(d.func);
        drop(d.args);
        drop(d.kwargs);
        let deliver = d.deliver.bind(py);
        match outcome {
            Ok(value) => deliver.call1((true, value))?,
            Err(e) => deliver.call1((false, e.into_value(py)))?,
        };
        Ok(())
    }

    /// Runs one call; its references die here.
    fn run(py: Python<'_>, call: Call) -> PyResult<()> {
        let future = call.future.bind(py);
        if !PyFutureCore::start(future)? {
            return Ok(());
        }
        let outcome = call
            .func
            .bind(py)
            .call(call.args.bind(py), call.kwargs.as_ref().map(|k| k.bind(py)));
        drop(call.func);
        drop(call.args);
        drop(call.kwargs);
        PyFutureCore::settle(future, outcome)
    }
}

#[pymethods]
impl PyPoolCore {
    #[new]
    fn new(
        py: Python<'_>,
        future_type: Bound<'_, PyType>,
        spawn: Option<Bound<'_, PyAny>>,
        max_workers: usize,
    ) -> PyResult<Self> {
        if !future_type.is_subclass_of::<PyFutureCore>()? {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "future_type must be a subclass of tress._tress.FutureCore",
            ));
        }
        let broken_class = py
            .import("concurrent.futures.thread")?
            .getattr("BrokenThreadPool")?
            .cast_into::<PyType>()?
            .unbind();
        Ok(Self {
            jobs: tress::SimpleQueue::new(),
            future_type: future_type.unbind(),
            spawn: spawn.map_or_else(OnceLock::new, |s| OnceLock::from(s.unbind())),
            broken_class,
            max_workers,
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            broken: Mutex::new(None),
        })
    }

    /// Queues `func(*args, **kwargs)` and returns its future; starts a
    /// worker if none is idle and there are fewer than `max_workers`.
    #[pyo3(signature = (func, args, kwargs=None))]
    fn submit<'py>(
        &self,
        py: Python<'py>,
        func: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // The future and the call first, outside the gate: making them may
        // run the collector, and a refused call is dropped after it.
        let future = self.future_type.bind(py).call0()?;
        let call = Job::Call(Call {
            future: future.cast::<PyFutureCore>()?.clone().unbind(),
            func: func.unbind(),
            args: args.unbind(),
            kwargs: kwargs.filter(|k| !k.is_empty()).map(Bound::unbind),
        });
        let refused = {
            let broken = self.gate();
            if let Some(message) = broken.as_ref() {
                Some(Err(message.clone()))
            } else if self.shutdown.load(Ordering::SeqCst) {
                Some(Ok("cannot schedule new futures after shutdown"))
            } else if EXITING.load(Ordering::SeqCst) {
                Some(Ok("cannot schedule new futures after interpreter shutdown"))
            } else {
                self.jobs.put(call);
                None
            }
        };
        match refused {
            Some(Err(message)) => return Err(error(&self.broken_class, py, message)?),
            Some(Ok(message)) => return Err(PyRuntimeError::new_err(message)),
            None => {}
        }
        if !self.take_idle() {
            if let Some(spawn) = self.spawn.get() {
                let more = self
                    .threads
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.max_workers).then_some(n + 1)
                    });
                if let Ok(index) = more {
                    spawn.bind(py).call1((index,))?;
                }
            }
        }
        Ok(future)
    }

    /// Queues `func(*args, **kwargs)` for a `tress.pool.ThreadPool`: no
    /// future; a worker calls `deliver(True, value)` or `deliver(False,
    /// exception)` with its outcome. Starts no worker (a `ThreadPool`
    /// starts its own) and checks no state (the pool does).
    #[pyo3(signature = (deliver, func, args, kwargs=None))]
    fn put(
        &self,
        deliver: Bound<'_, PyAny>,
        func: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        kwargs: Option<Bound<'_, PyDict>>,
    ) {
        self.jobs.put(Job::Deliver(Delivery {
            func: func.unbind(),
            args: args.unbind(),
            kwargs: kwargs.filter(|k| !k.is_empty()).map(Bound::unbind),
            deliver: deliver.unbind(),
        }));
    }

    /// The worker loop: runs calls until the pool stops. A failure of the
    /// machinery itself (not of a call: those go to the futures) is
    /// reported as unraisable and the worker carries on.
    fn work(&self, py: Python<'_>) -> PyResult<()> {
        let mut held_since = Instant::now();
        loop {
            let job = match self.jobs.try_get() {
                Some(job) => job,
                None => {
                    let job = py.detach(|| self.jobs.get());
                    held_since = Instant::now();
                    job
                }
            };
            match job {
                Job::Stop => {
                    self.jobs.put(Job::Stop);
                    return Ok(());
                }
                Job::Call(call) => {
                    // A failure of the machinery (not of the call, which goes
                    // to its future) is reported, and the worker carries on.
                    let future = call.future.clone_ref(py);
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        Self::run(py, call)
                    })) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => e.write_unraisable(py, None),
                        Err(_) => {
                            PyRuntimeError::new_err(
                                "tress: internal error in a thread-pool worker",
                            )
                            .write_unraisable(py, Some(future.bind(py).as_any()));
                        }
                    }
                    self.idle.fetch_add(1, Ordering::AcqRel);
                }
                Job::Deliver(d) => {
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        Self::deliver(py, d)
                    })) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => e.write_unraisable(py, None),
                        Err(_) => {
                            PyRuntimeError::new_err(
                                "tress: internal error in a thread-pool worker",
                            )
                            .write_unraisable(py, None);
                        }
                    }
                }
            }
            // Tasks that are C calls never reach the eval loop, so another
            // thread's request for the GIL would go unanswered: pass through
            // it now and then. (Letting go of the GIL and taking it straight
            // back instead would restart that thread's wait each time and
            // starve it: CPython counts a switch, not who got the GIL.)
            if held_since.elapsed() >= CHECKPOINT_EVERY {
                if let Err(e) = checkpoint(py).and_then(|c| c.call0(py)) {
                    e.write_unraisable(py, None);
                }
                held_since = Instant::now();
            }
        }
    }

    /// Stops taking work: later submits raise; with `cancel_futures` the
    /// queued calls are cancelled; the workers exit once the queue is
    /// empty.
    #[pyo3(signature = (cancel_futures=false))]
    fn shutdown(&self, py: Python<'_>, cancel_futures: bool) -> PyResult<()> {
        let calls = {
            let _gate = self.gate();
            self.shutdown.store(true, Ordering::SeqCst);
            let calls = if cancel_futures {
                self.drain()
            } else {
                Vec::new()
            };
            self.jobs.put(Job::Stop);
            calls
        };
        for call in calls {
            PyFutureCore::cancel(call.future.bind(py))?;
        }
        Ok(())
    }

    /// Breaks the pool (a failed initializer): later submits raise
    /// `BrokenThreadPool(message)`, and so do the queued calls' futures.
    fn break_pool(&self, py: Python<'_>, message: String) -> PyResult<()> {
        let calls = {
            let mut broken = self.gate();
            *broken = Some(message.clone());
            let calls = self.drain();
            // The drain took a queued stop out with the calls: put back.
            if self.shutdown.load(Ordering::SeqCst) {
                self.jobs.put(Job::Stop);
            }
            calls
        };
        for call in calls {
            let future = call.future.bind(py);
            // A future cancelled meanwhile stays cancelled (the stdlib's
            // set_exception would raise here and leave the rest pending).
            if future.get().state().is_done() {
                continue;
            }
            let exc = self.broken_class.bind(py).call1((message.as_str(),))?;
            if let Err(e) = PyFutureCore::finish(future, exc, true, "add_exception") {
                e.write_unraisable(py, None);
            }
        }
        Ok(())
    }

    /// Queues a stop for the workers without shutting the pool (the
    /// executor is gone, or the interpreter exits: `_pools_exiting` was
    /// called before, so no call is queued after this stop).
    fn stop_workers(&self) {
        let _gate = self.gate();
        self.jobs.put(Job::Stop);
    }

    /// Sets the callable that starts a worker (once).
    fn set_spawn(&self, spawn: Bound<'_, PyAny>) -> PyResult<()> {
        self.spawn
            .set(spawn.unbind())
            .map_err(|_| PyRuntimeError::new_err("the spawn hook is already set"))
    }

    /// Whether `shutdown` was called.
    #[getter]
    fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Why the pool is broken, or None.
    #[getter]
    fn broken(&self) -> Option<String> {
        self.broken_message()
    }

    /// Workers started.
    #[getter]
    fn threads(&self) -> usize {
        self.threads.load(Ordering::Relaxed)
    }

    /// Calls queued, not yet taken by a worker.
    fn __len__(&self) -> usize {
        self.jobs.len()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.future_type)?;
        if let Some(spawn) = self.spawn.get() {
            visit.call(spawn)?;
        }
        let queued = self.jobs.try_inspect(|jobs| {
            for job in jobs {
                match job {
                    Job::Call(c) => {
                        visit.call(&c.future)?;
                        visit.call(&c.func)?;
                        visit.call(&c.args)?;
                        if let Some(k) = &c.kwargs {
                            visit.call(k)?;
                        }
                    }
                    Job::Deliver(d) => {
                        visit.call(&d.func)?;
                        visit.call(&d.args)?;
                        visit.call(&d.deliver)?;
                        if let Some(k) = &d.kwargs {
                            visit.call(k)?;
                        }
                    }
                    Job::Stop => {}
                }
            }
            Ok(())
        });
        queued.unwrap_or(Ok(()))
    }
}

// ---------------------------------------------------------------- map

/// No item is waited on.
const NOBODY: usize = usize::MAX;

/// An item's state in a [`PyChunkedMap`].
const PENDING_ITEM: u8 = 0;
const VALUE: u8 = 1;
const RAISED: u8 = 2;

/// The shared state of a long `ThreadPoolExecutor.map`: a few runner
/// tasks (one per worker) take the calls one at a time from a shared
/// cursor, in order, and publish each result (or exception) as it comes;
/// the caller's iterator ([`PyMapIter`]) takes them in order and waits on
/// the condition only when the next one is not there yet (a runner
/// notifies only the item the caller waits on). As with the stdlib's one
/// future per call, as many calls run at once as there are runners, a call
/// that raises does not stop the others, and a call that waits for a later
/// one is not stuck behind it.
#[pyclass(name = "ChunkedMap", module = "tress._tress", frozen)]
pub(crate) struct PyChunkedMap {
    func: Py<PyAny>,
    /// The argument tuples; each is replaced by None once its call starts.
    calls: Py<PyList>,
    /// The results (or exceptions); each is replaced by None once yielded.
    values: Py<PyList>,
    total: usize,
    /// The next call to start.
    cursor: AtomicUsize,
    /// Per item: pending, a value, or an exception.
    states: Box<[std::sync::atomic::AtomicU8]>,
    /// Runner tasks, and how many are over (finished, failed, cancelled).
    runners: usize,
    over: AtomicUsize,
    /// The item the caller waits on, or [`NOBODY`].
    waiting: AtomicUsize,
    /// The caller is gone: runners start no more calls.
    stopped: AtomicBool,
    cond: Py<PyCondition>,
    /// The runners' futures.
    futures: Mutex<Option<Py<PyList>>>,
}

impl PyChunkedMap {
    fn notify(&self, py: Python<'_>) -> PyResult<()> {
        let cond = self.cond.get();
        cond.lock_native(py)?;
        let notified = cond.notify_all_native(py);
        cond.unlock_native(py)?;
        notified
    }

    fn futures<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyList>> {
        self.futures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f.bind(py).clone())
    }

    /// Stops the runners and cancels those not started.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(fs) = self.futures(py) {
            for f in fs.iter() {
                f.call_method0("cancel")?;
            }
        }
        Ok(())
    }

    /// Why item `k` will never come: every runner is over without it (the
    /// pool broke, or the runners were cancelled).
    fn lost(&self, py: Python<'_>) -> PyErr {
        if let Some(fs) = self.futures(py) {
            for f in fs.iter() {
                if let Err(e) = f.call_method1("result", (0,)) {
                    return e;
                }
            }
        }
        PyRuntimeError::new_err("map runners ended before every call ran")
    }

    /// Waits until item `k` is there (or raises why it never will be, or
    /// `TimeoutError` at `until`).
    fn wait(&self, py: Python<'_>, k: usize, until: Option<Instant>) -> PyResult<()> {
        let cond = self.cond.get();
        cond.lock_native(py)?;
        self.waiting.store(k, Ordering::SeqCst);
        let outcome = (|| {
            loop {
                if self.states[k].load(Ordering::Acquire) != PENDING_ITEM {
                    return Ok(());
                }
                if self.over.load(Ordering::Acquire) >= self.runners {
                    return Err(self.lost(py));
                }
                if until.is_some_and(|u| Instant::now() >= u) {
                    return Err(error0(&base(py)?.timeout_error, py)?);
                }
                cond.wait_native(py, until)?;
            }
        })();
        self.waiting.store(NOBODY, Ordering::SeqCst);
        cond.unlock_native(py)?;
        outcome
    }
}

#[pymethods]
impl PyChunkedMap {
    /// `func` over the argument tuples `calls` (a list, consumed), by
    /// `runners` runner tasks.
    #[new]
    fn new(
        py: Python<'_>,
        func: Bound<'_, PyAny>,
        calls: Bound<'_, PyList>,
        runners: usize,
    ) -> PyResult<Self> {
        let total = calls.len();
        let values = PyList::new(py, (0..total).map(|_| py.None()))?;
        Ok(Self {
            func: func.unbind(),
            calls: calls.unbind(),
            values: values.unbind(),
            total,
            cursor: AtomicUsize::new(0),
            states: (0..total)
                .map(|_| std::sync::atomic::AtomicU8::new(PENDING_ITEM))
                .collect(),
            runners: runners.max(1),
            over: AtomicUsize::new(0),
            waiting: AtomicUsize::new(NOBODY),
            stopped: AtomicBool::new(false),
            cond: Py::new(py, PyCondition::with_rlock(py)?)?,
            futures: Mutex::new(None),
        })
    }

    /// How many runner tasks to submit.
    #[getter]
    fn count(&self) -> usize {
        self.runners
    }

    /// Records the runners' futures (once).
    fn set_futures(&self, futures: Bound<'_, PyList>) -> PyResult<()> {
        let mut slot = self.futures.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(PyRuntimeError::new_err("the map's futures are already set"));
        }
        *slot = Some(futures.unbind());
        Ok(())
    }

    /// A runner task: takes calls from the cursor until none is left or
    /// the caller is gone. (`_c`, its number, is for the traceback.)
    fn chunk(&self, py: Python<'_>, _c: usize) -> PyResult<()> {
        let func = self.func.bind(py);
        let calls = self.calls.bind(py);
        let values = self.values.bind(py);
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return Ok(());
            }
            let k = self.cursor.fetch_add(1, Ordering::Relaxed);
            if k >= self.total {
                return Ok(());
            }
            let args = calls.get_item(k)?;
            calls.set_item(k, py.None())?;
            let result = match args.cast::<PyTuple>() {
                Ok(t) => func.call(t, None),
                Err(e) => Err(e.into()),
            };
            let state = match result {
                Ok(v) => {
                    values.set_item(k, v)?;
                    VALUE
                }
                Err(e) => {
                    values.set_item(k, e.into_value(py))?;
                    RAISED
                }
            };
            self.states[k].store(state, Ordering::Release);
            if self.waiting.load(Ordering::SeqCst) == k {
                self.notify(py)?;
            }
        }
    }

    /// The done callback of runner `c`'s future.
    fn chunk_done(&self, py: Python<'_>, _c: usize, _future: &Bound<'_, PyAny>) -> PyResult<()> {
        self.over.fetch_add(1, Ordering::AcqRel);
        self.notify(py)
    }

    /// The iterator of the results, in order, waiting at most `timeout`
    /// seconds from now in all (None, or more than a deadline can hold: no
    /// limit).
    #[pyo3(signature = (timeout=None))]
    fn results(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyMapIter {
        let until = match timeout {
            Some(t) if t <= 0.0 => Some(Instant::now()),
            Some(t) => std::time::Duration::try_from_secs_f64(t)
                .ok()
                .and_then(|d| Instant::now().checked_add(d)),
            None => None,
        };
        PyMapIter {
            run: slf.clone().unbind(),
            next: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            executing: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            until,
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.func)?;
        visit.call(&self.calls)?;
        visit.call(&self.values)?;
        visit.call(&self.cond)?;
        if let Ok(f) = self.futures.try_lock()
            && let Some(f) = f.as_ref()
        {
            visit.call(f)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = self
            .futures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(old);
    }
}

/// The results of a long map, in order (see [`PyChunkedMap`]), behaving as
/// the stdlib's generator: closing it, an exception out of it, or dropping
/// it once started stops the map (running calls finish, no new ones
/// start); a map whose results are never asked for runs to the end.
#[pyclass(name = "MapIterator", module = "tress._tress", frozen)]
pub(crate) struct PyMapIter {
    run: Py<PyChunkedMap>,
    next: AtomicUsize,
    /// `next` was called at least once.
    started: AtomicBool,
    /// A `next` is running (another thread's is an error, as for generators).
    executing: AtomicBool,
    /// Exhausted, failed or closed.
    finished: AtomicBool,
    until: Option<Instant>,
}

impl PyMapIter {
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        if self.finished.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.run.get().stop(py)
    }

    fn step(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if self.finished.load(Ordering::Relaxed) {
            return Ok(None);
        }
        self.started.store(true, Ordering::Relaxed);
        let run = self.run.get();
        let k = self.next.load(Ordering::Relaxed);
        if k >= run.total {
            self.finish(py)?;
            return Ok(None);
        }
        if run.states[k].load(Ordering::Acquire) == PENDING_ITEM
            && let Err(e) = run.wait(py, k, self.until)
        {
            self.finish(py)?;
            return Err(e);
        }
        let values = run.values.bind(py);
        let value = values.get_item(k)?;
        values.set_item(k, py.None())?;
        self.next.store(k + 1, Ordering::Relaxed);
        if run.states[k].load(Ordering::Acquire) == RAISED {
            self.finish(py)?;
            return Err(PyErr::from_value(value));
        }
        Ok(Some(value.unbind()))
    }
}

#[pymethods]
impl PyMapIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if self.executing.swap(true, Ordering::Acquire) {
            return Err(PyValueError::new_err("generator already executing"));
        }
        let r = self.step(py);
        self.executing.store(false, Ordering::Release);
        r
    }

    /// Stops the map: running calls finish, the others never start; later
    /// `next` calls raise `StopIteration`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.finish(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.run)
    }
}

impl Drop for PyMapIter {
    fn drop(&mut self) {
        // As a generator: one dropped once started stops the map (no Python
        // code here: the runners see the flag and start no more calls).
        if self.started.load(Ordering::Relaxed) && !self.finished.load(Ordering::Relaxed) {
            self.run.get().stopped.store(true, Ordering::SeqCst);
        }
    }
}
