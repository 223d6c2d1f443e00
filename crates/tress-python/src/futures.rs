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
//! nobody can hold it, and the GIL alone orders the changes (no code here
//! lets go of the GIL between looking and changing).
//!
//! [`PyPoolCore`] is the work queue of `tress.futures.ThreadPoolExecutor`
//! with the stdlib's bookkeeping (idle credits, lazily started workers,
//! shutdown, broken pool) and the loop its worker threads run. The threads
//! are `threading.Thread`s started by the Python side; their loop is here:
//! it keeps the GIL from one task to the next while there is work (letting
//! it go every [`GIL_YIELD_EVERY`] tasks so a stream of C-level calls does
//! not starve other threads) and lets go of it only to wait for work.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
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
    m.add_class::<PyFutureCore>()?;
    m.add_class::<PyPoolCore>()?;
    m.add_class::<PyChunkedMap>()?;
    m.add_class::<PyMapIter>()?;
    m.add_function(wrap_pyfunction!(_pools_exiting, m)?)?;
    Ok(())
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
#[pyclass(name = "FutureCore", module = "tress._tress", subclass)]
pub(crate) struct PyFutureCore {
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

/// A non-empty list's handle, for iterating after the borrow ends.
fn nonempty(list: &Option<Py<PyList>>, py: Python<'_>) -> Option<Py<PyList>> {
    list.as_ref()
        .filter(|l| !l.bind(py).is_empty())
        .map(|l| l.clone_ref(py))
}

impl PyFutureCore {
    fn blank() -> Self {
        Self {
            state: State::Pending,
            result: None,
            exception: None,
            waiters: None,
            callbacks: None,
            condition: None,
        }
    }

    /// Takes the future's condition if it has one.
    fn hold<'py>(slf: &Bound<'py, Self>) -> PyResult<Held<'py>> {
        let py = slf.py();
        let cond = slf.borrow().condition.as_ref().map(|c| c.bind(py).clone());
        if let Some(c) = &cond {
            c.get().lock_native(py)?;
        }
        Ok(Held { cond })
    }

    /// The condition, made now if it was not yet.
    fn condition_of<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyCondition>> {
        let py = slf.py();
        if let Some(c) = &slf.borrow().condition {
            return Ok(c.bind(py).clone());
        }
        let c = Bound::new(py, PyCondition::with_rlock(py)?)?;
        slf.borrow_mut().condition = Some(c.clone().unbind());
        Ok(c)
    }

    /// What `result()` returns or raises once the future is done; `None`
    /// while it is not.
    fn outcome(slf: &Bound<'_, Self>) -> Option<PyResult<Py<PyAny>>> {
        let py = slf.py();
        let me = slf.borrow();
        match me.state {
            State::Finished => Some(match &me.exception {
                Some(e) => Err(PyErr::from_value(e.bind(py).clone())),
                None => Ok(me
                    .result
                    .as_ref()
                    .map_or_else(|| py.None(), |r| r.clone_ref(py))),
            }),
            s if s.is_cancelled() => {
                drop(me);
                Some(
                    base(py)
                        .and_then(|b| error0(&b.cancelled_error, py))
                        .and_then(Err),
                )
            }
            _ => None,
        }
    }

    /// Waits until the future is done or `timeout` (seconds, `None` for no
    /// limit) has passed.
    fn wait_done(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let until = wait_deadline(timeout)?;
        let cond = Self::condition_of(slf)?;
        let c = cond.get();
        c.lock_native(py)?;
        let held = Held {
            cond: Some(cond.clone()),
        };
        loop {
            if slf.borrow().state.is_done() {
                return Ok(());
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(());
            }
            let woke = c.wait_native(py, until);
            // The lock is held again whatever the wait's outcome.
            if !woke? && !slf.borrow().state.is_done() {
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
        let held = Self::hold(slf)?;
        let (old, waiters, callbacks) = {
            let mut me = slf.borrow_mut();
            if matches!(
                me.state,
                State::Cancelled | State::CancelledAndNotified | State::Finished
            ) {
                let state = me.state;
                drop(me);
                let message = format!(
                    "{}: {}",
                    base(py)?.states[state.index()].bind(py),
                    slf.repr()?
                );
                drop(held);
                return Err(error(&base(py)?.invalid_state_error, py, message)?);
            }
            me.state = State::Finished;
            let old = if failed {
                me.exception.replace(value.unbind())
            } else {
                me.result.replace(value.unbind())
            };
            (old, nonempty(&me.waiters, py), nonempty(&me.callbacks, py))
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
        // The fast path: nobody has looked at the future's insides.
        {
            let mut me = slf.borrow_mut();
            if me.state == State::Running
                && me.condition.is_none()
                && me.waiters.is_none()
                && me.callbacks.is_none()
            {
                me.state = State::Finished;
                match outcome {
                    Ok(v) => me.result = Some(v.unbind()),
                    Err(e) => me.exception = Some(e.into_value(py).into_any()),
                }
                return Ok(());
            }
        }
        match outcome {
            Ok(v) => Self::finish(slf, v, false, "add_result"),
            Err(e) => Self::finish(
                slf,
                e.into_value(py).into_bound(py).into_any(),
                true,
                "add_exception",
            ),
        }
    }

    /// `set_running_or_notify_cancel()`.
    fn start(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        {
            let mut me = slf.borrow_mut();
            if me.state == State::Pending && me.condition.is_none() {
                me.state = State::Running;
                return Ok(true);
            }
        }
        let held = Self::hold(slf)?;
        let mut me = slf.borrow_mut();
        match me.state {
            State::Cancelled => {
                me.state = State::CancelledAndNotified;
                let waiters = nonempty(&me.waiters, py);
                drop(me);
                if let Some(waiters) = waiters {
                    for w in waiters.bind(py).iter() {
                        w.call_method1("add_cancelled", (slf,))?;
                    }
                }
                drop(held);
                Ok(false)
            }
            State::Pending => {
                me.state = State::Running;
                Ok(true)
            }
            state => {
                drop(me);
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
        let held = Self::hold(slf)?;
        let callbacks = {
            let mut me = slf.borrow_mut();
            match me.state {
                State::Running | State::Finished => return Ok(false),
                State::Cancelled | State::CancelledAndNotified => return Ok(true),
                State::Pending => {}
            }
            me.state = State::Cancelled;
            nonempty(&me.callbacks, py)
        };
        held.notify_all()?;
        drop(held);
        Self::invoke(slf, callbacks)?;
        Ok(true)
    }

    /// Return True if the future was cancelled.
    fn cancelled(&self) -> bool {
        self.state.is_cancelled()
    }

    /// Return True if the future is currently executing.
    fn running(&self) -> bool {
        self.state == State::Running
    }

    /// Return True if the future was cancelled or finished executing.
    fn done(&self) -> bool {
        self.state.is_done()
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
        if !slf.borrow().state.is_done() {
            Self::wait_done(slf, timeout)?;
        }
        let me = slf.borrow();
        match me.state {
            State::Finished => Ok(me
                .exception
                .as_ref()
                .map_or_else(|| py.None(), |e| e.clone_ref(py))),
            s if s.is_cancelled() => {
                drop(me);
                Err(error0(&base(py)?.cancelled_error, py)?)
            }
            _ => {
                drop(me);
                Err(error0(&base(py)?.timeout_error, py)?)
            }
        }
    }

    /// Attach a callable, called with the future when it is cancelled or
    /// finishes (at once if it already did).
    #[pyo3(name = "add_done_callback")]
    fn add_done_callback_py(slf: &Bound<'_, Self>, func: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        {
            let _held = Self::hold(slf)?;
            let mut me = slf.borrow_mut();
            if !me.state.is_done() {
                let list = me
                    .callbacks
                    .get_or_insert_with(|| PyList::empty(py).unbind());
                list.bind(py).append(func)?;
                return Ok(());
            }
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
        let callbacks = nonempty(&slf.borrow().callbacks, slf.py());
        Self::invoke(slf, callbacks)
    }

    #[getter]
    fn _state(&self, py: Python<'_>) -> PyResult<Py<PyString>> {
        Ok(base(py)?.states[self.state.index()].clone_ref(py))
    }

    #[setter(_state)]
    fn set_state(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let states = &base(py)?.states;
        for (s, name) in State::ALL.iter().zip(states) {
            if value.eq(name.bind(py))? {
                self.state = *s;
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
        self.result
            .as_ref()
            .map_or_else(|| py.None(), |r| r.clone_ref(py))
    }

    #[setter(_result)]
    fn set_result_attr(&mut self, value: Bound<'_, PyAny>) {
        self.result = (!value.is_none()).then(|| value.unbind());
    }

    #[getter]
    fn _exception(&self, py: Python<'_>) -> Py<PyAny> {
        self.exception
            .as_ref()
            .map_or_else(|| py.None(), |e| e.clone_ref(py))
    }

    #[setter(_exception)]
    fn set_exception_attr(&mut self, value: Bound<'_, PyAny>) {
        self.exception = (!value.is_none()).then(|| value.unbind());
    }

    #[getter]
    fn _waiters(&mut self, py: Python<'_>) -> Py<PyList> {
        self.waiters
            .get_or_insert_with(|| PyList::empty(py).unbind())
            .clone_ref(py)
    }

    #[setter(_waiters)]
    fn set_waiters(&mut self, value: Bound<'_, PyList>) {
        self.waiters = Some(value.unbind());
    }

    #[getter]
    fn _done_callbacks(&mut self, py: Python<'_>) -> Py<PyList> {
        self.callbacks
            .get_or_insert_with(|| PyList::empty(py).unbind())
            .clone_ref(py)
    }

    #[setter(_done_callbacks)]
    fn set_done_callbacks(&mut self, value: Bound<'_, PyList>) {
        self.callbacks = Some(value.unbind());
    }

    #[getter]
    fn _condition<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyCondition>> {
        Self::condition_of(slf)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for obj in [&self.result, &self.exception].into_iter().flatten() {
            visit.call(obj)?;
        }
        for list in [&self.waiters, &self.callbacks].into_iter().flatten() {
            visit.call(list)?;
        }
        if let Some(c) = &self.condition {
            visit.call(c)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.result = None;
        self.exception = None;
        self.waiters = None;
        self.callbacks = None;
        self.condition = None;
    }
}

// ---------------------------------------------------------------- the pool

/// A worker lets go of the GIL after this many tasks in a row, so calls
/// that never enter the interpreter's loop (C functions) cannot keep other
/// threads from it.
const GIL_YIELD_EVERY: u32 = 128;

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

enum Job {
    Call(Call),
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
    /// Why the pool is broken, once it is.
    broken: Mutex<Option<String>>,
}

impl PyPoolCore {
    fn take_idle(&self) -> bool {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn broken_message(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes every queued call out (and the stop, if queued: the caller
    /// queues one again when it needs to).
    fn drain(&self) -> Vec<Call> {
        let mut calls = Vec::new();
        while let Some(job) = self.jobs.try_get() {
            if let Job::Call(c) = job {
                calls.push(c);
            }
        }
        calls
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
        if let Some(message) = self.broken_message() {
            return Err(error(&self.broken_class, py, message)?);
        }
        if self.shutdown.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err(
                "cannot schedule new futures after shutdown",
            ));
        }
        if EXITING.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err(
                "cannot schedule new futures after interpreter shutdown",
            ));
        }
        let future = self.future_type.bind(py).call0()?;
        let core = future.cast::<PyFutureCore>()?.clone().unbind();
        self.jobs.put(Job::Call(Call {
            future: core,
            func: func.unbind(),
            args: args.unbind(),
            kwargs: kwargs.filter(|k| !k.is_empty()).map(Bound::unbind),
        }));
        if !self.take_idle() && self.threads.load(Ordering::Relaxed) < self.max_workers {
            if let Some(spawn) = self.spawn.get() {
                self.threads.fetch_add(1, Ordering::Relaxed);
                spawn.bind(py).call0()?;
            }
        }
        Ok(future)
    }

    /// The worker loop: runs calls until the pool stops.
    fn work(&self, py: Python<'_>) -> PyResult<()> {
        let mut streak = 0u32;
        loop {
            let job = match self.jobs.try_get() {
                Some(job) => job,
                None => {
                    streak = 0;
                    py.detach(|| self.jobs.get())
                }
            };
            match job {
                Job::Stop => {
                    self.jobs.put(Job::Stop);
                    return Ok(());
                }
                Job::Call(call) => {
                    Self::run(py, call)?;
                    self.idle.fetch_add(1, Ordering::AcqRel);
                }
            }
            streak += 1;
            if streak == GIL_YIELD_EVERY {
                streak = 0;
                py.detach(|| ());
            }
        }
    }

    /// Stops taking work: later submits raise; with `cancel_futures` the
    /// queued calls are cancelled; the workers exit once the queue is
    /// empty.
    #[pyo3(signature = (cancel_futures=false))]
    fn shutdown(&self, py: Python<'_>, cancel_futures: bool) -> PyResult<()> {
        self.shutdown.store(true, Ordering::SeqCst);
        if cancel_futures {
            for call in self.drain() {
                PyFutureCore::cancel(call.future.bind(py))?;
            }
        }
        self.jobs.put(Job::Stop);
        Ok(())
    }

    /// Breaks the pool (a failed initializer): later submits raise
    /// `BrokenThreadPool(message)`, and so do the queued calls' futures.
    fn break_pool(&self, py: Python<'_>, message: String) -> PyResult<()> {
        *self.broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
        let calls = self.drain();
        let stopping = self.shutdown.load(Ordering::SeqCst);
        for call in calls {
            let exc = self.broken_class.bind(py).call1((message.as_str(),))?;
            PyFutureCore::finish(call.future.bind(py), exc, true, "add_exception")?;
        }
        if stopping {
            self.jobs.put(Job::Stop);
        }
        Ok(())
    }

    /// Queues a stop for the workers without shutting the pool (the
    /// executor is gone, or the interpreter exits).
    fn stop_workers(&self) {
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
                if let Job::Call(c) = job {
                    visit.call(&c.future)?;
                    visit.call(&c.func)?;
                    visit.call(&c.args)?;
                    if let Some(k) = &c.kwargs {
                        visit.call(k)?;
                    }
                }
            }
            Ok(())
        });
        queued.unwrap_or(Ok(()))
    }
}

// ---------------------------------------------------------------- map

/// No chunk is waited on.
const NOBODY: usize = usize::MAX;

/// The shared state of a chunked `ThreadPoolExecutor.map`: each chunk's
/// calls run in turn on one worker ([`chunk`](Self::chunk), the chunk's
/// task), which publishes every result as it comes (a per-chunk count of
/// finished calls); the caller's iterator ([`PyMapIter`]) takes them in
/// order and waits on the condition only when the next one is not there yet
/// (a worker notifies only the chunk the caller waits on).
#[pyclass(name = "ChunkedMap", module = "tress._tress", frozen)]
pub(crate) struct PyChunkedMap {
    func: Py<PyAny>,
    /// The argument tuples; each is replaced by None once its call starts.
    calls: Py<PyList>,
    /// The results; each is replaced by None once it is yielded.
    values: Py<PyList>,
    size: usize,
    total: usize,
    /// Calls finished, per chunk.
    done: Box<[AtomicUsize]>,
    /// The chunk's task is over (finished, failed or cancelled), per chunk.
    over: Box<[AtomicBool]>,
    /// The exception that stopped a chunk.
    errors: Mutex<Vec<Option<Py<PyAny>>>>,
    /// The chunk the caller waits on, or [`NOBODY`].
    waiting: AtomicUsize,
    /// The caller is gone: running chunks stop after their current call.
    stopped: AtomicBool,
    cond: Py<PyCondition>,
    /// The chunks' futures, in order.
    futures: OnceLock<Py<PyList>>,
}

impl PyChunkedMap {
    fn notify(&self, py: Python<'_>) -> PyResult<()> {
        let cond = self.cond.get();
        cond.lock_native(py)?;
        let notified = cond.notify_all_native(py);
        cond.unlock_native(py)?;
        notified
    }

    fn future<'py>(&self, py: Python<'py>, c: usize) -> PyResult<Bound<'py, PyAny>> {
        match self.futures.get() {
            Some(fs) => fs.bind(py).get_item(c),
            None => Err(PyRuntimeError::new_err("map started without its futures")),
        }
    }

    /// Stops the chunks and cancels those not started.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(fs) = self.futures.get() {
            for f in fs.bind(py).iter() {
                f.call_method0("cancel")?;
            }
        }
        Ok(())
    }

    /// Waits until call `offset` of chunk `c` has its result; raises the
    /// exception that stopped the chunk there, the chunk's own failure
    /// (cancelled, broken pool), or `TimeoutError` at `until`.
    fn wait(
        &self,
        py: Python<'_>,
        c: usize,
        offset: usize,
        until: Option<Instant>,
    ) -> PyResult<()> {
        let cond = self.cond.get();
        cond.lock_native(py)?;
        self.waiting.store(c, Ordering::SeqCst);
        let outcome = (|| loop {
            if self.done[c].load(Ordering::Acquire) > offset {
                return Ok(());
            }
            if self.over[c].load(Ordering::Acquire) {
                let error = self.errors.lock().unwrap_or_else(|e| e.into_inner())[c].take();
                return Err(match error {
                    Some(e) => PyErr::from_value(e.into_bound(py)),
                    None => match self.future(py, c)?.call_method1("result", (0,)) {
                        Err(e) => e,
                        Ok(_) => PyRuntimeError::new_err("map chunk ended early"),
                    },
                });
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Err(error0(&base(py)?.timeout_error, py)?);
            }
            cond.wait_native(py, until)?;
        })();
        self.waiting.store(NOBODY, Ordering::SeqCst);
        cond.unlock_native(py)?;
        outcome
    }
}

#[pymethods]
impl PyChunkedMap {
    /// `func` over the argument tuples `calls` (a list, consumed), in
    /// chunks of `size` calls.
    #[new]
    fn new(
        py: Python<'_>,
        func: Bound<'_, PyAny>,
        calls: Bound<'_, PyList>,
        size: usize,
    ) -> PyResult<Self> {
        let total = calls.len();
        let size = size.max(1);
        let count = total.div_ceil(size);
        let values = PyList::new(py, (0..total).map(|_| py.None()))?;
        Ok(Self {
            func: func.unbind(),
            calls: calls.unbind(),
            values: values.unbind(),
            size,
            total,
            done: (0..count).map(|_| AtomicUsize::new(0)).collect(),
            over: (0..count).map(|_| AtomicBool::new(false)).collect(),
            errors: Mutex::new((0..count).map(|_| None).collect()),
            waiting: AtomicUsize::new(NOBODY),
            stopped: AtomicBool::new(false),
            cond: Py::new(py, PyCondition::with_rlock(py)?)?,
            futures: OnceLock::new(),
        })
    }

    /// How many chunks.
    #[getter]
    fn count(&self) -> usize {
        self.done.len()
    }

    /// Records the chunks' futures (once).
    fn set_futures(&self, futures: Bound<'_, PyList>) -> PyResult<()> {
        self.futures
            .set(futures.unbind())
            .map_err(|_| PyRuntimeError::new_err("the map's futures are already set"))
    }

    /// Runs chunk `c`'s calls in turn (a worker's task).
    fn chunk(&self, py: Python<'_>, c: usize) -> PyResult<()> {
        let func = self.func.bind(py);
        let calls = self.calls.bind(py);
        let values = self.values.bind(py);
        let start = c * self.size;
        let end = (start + self.size).min(self.total);
        let mut finished = 0;
        for k in start..end {
            if self.stopped.load(Ordering::Relaxed) {
                return Ok(());
            }
            let args = calls.get_item(k)?;
            calls.set_item(k, py.None())?;
            let result = match args.cast::<PyTuple>() {
                Ok(t) => func.call(t, None),
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(v) => values.set_item(k, v)?,
                Err(e) => {
                    let value = e.into_value(py).into_any();
                    self.errors.lock().unwrap_or_else(|e| e.into_inner())[c] = Some(value);
                    return Ok(());
                }
            }
            finished += 1;
            self.done[c].store(finished, Ordering::Release);
            if self.waiting.load(Ordering::SeqCst) == c {
                self.notify(py)?;
            }
        }
        Ok(())
    }

    /// The done callback of chunk `c`'s future.
    fn chunk_done(&self, py: Python<'_>, c: usize, _future: &Bound<'_, PyAny>) -> PyResult<()> {
        self.over[c].store(true, Ordering::Release);
        self.notify(py)
    }

    /// The iterator of the results, in order, waiting at most `timeout`
    /// seconds from now in all (None: no limit).
    #[pyo3(signature = (timeout=None))]
    fn results(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<PyMapIter> {
        let until = match timeout {
            None => None,
            Some(t) if t <= 0.0 => Some(Instant::now()),
            Some(t) => Some(
                Instant::now()
                    .checked_add(std::time::Duration::try_from_secs_f64(t).map_err(|_| {
                        pyo3::exceptions::PyOverflowError::new_err("timeout value is too large")
                    })?)
                    .ok_or_else(|| {
                        pyo3::exceptions::PyOverflowError::new_err("timeout value is too large")
                    })?,
            ),
        };
        Ok(PyMapIter {
            run: slf.clone().unbind(),
            next: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
            until,
        })
    }
}

/// The results of a chunked map, in order (see [`PyChunkedMap`]). Closing
/// it, an exception out of it, or dropping it stops the map: running chunks
/// stop after their current call, the others are cancelled.
#[pyclass(name = "MapIterator", module = "tress._tress", frozen)]
pub(crate) struct PyMapIter {
    run: Py<PyChunkedMap>,
    next: AtomicUsize,
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
}

#[pymethods]
impl PyMapIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if self.finished.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let run = self.run.get();
        let k = self.next.load(Ordering::Relaxed);
        if k >= run.total {
            self.finish(py)?;
            return Ok(None);
        }
        let c = k / run.size;
        let offset = k - c * run.size;
        if run.done[c].load(Ordering::Acquire) <= offset
            && let Err(e) = run.wait(py, c, offset, self.until)
        {
            self.finish(py)?;
            return Err(e);
        }
        let values = run.values.bind(py);
        let value = values.get_item(k)?;
        values.set_item(k, py.None())?;
        self.next.store(k + 1, Ordering::Relaxed);
        Ok(Some(value.unbind()))
    }

    /// Stops the map: running chunks stop after their current call, the
    /// others are cancelled; later `next` calls raise `StopIteration`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.finish(py)
    }
}

impl Drop for PyMapIter {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::SeqCst) {
            // Dropped with the GIL held (deallocation); cancelling runs the
            // futures' callbacks, whose errors have nowhere to go.
            Python::attach(|py| {
                let _ = self.finish(py);
            });
        }
    }
}
