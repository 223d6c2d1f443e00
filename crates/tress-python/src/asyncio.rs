//! The native half of `tress.asyncio`'s loop (`python/tress/asyncio.py`):
//! its ready queue and `Handle`s (what `call_soon` makes, run by
//! `LoopCore.run_once` without a Python frame per callback), its timers
//! (`tress::event_loop::Timers`: O(1) cancellation that lets go of the
//! handle at once, compaction) and its inbox for other threads
//! (`tress::event_loop::Inbox`: the loop's eventfd is written only while
//! the loop is parked in its selector).
//!
//! Nothing here runs Python code under the core's lock: handles taken out
//! of the timers or the inbox are dropped, appended or called after it is
//! let go of (a handle's finalizer may come back to the loop).

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit, intern};
use tress::event_loop::{Events, Inbox, TimerId, Timers};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLoopCore>()?;
    m.add_class::<PyHandle>()?;
    m.add_class::<PyTimerHandle>()?;
    m.add_class::<PyReadyQueue>()?;
    Ok(())
}

/// `contextvars.copy_context()`.
#[cfg(not(feature = "abi3"))]
fn copy_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: the thread is attached; PyContext_CopyCurrent returns a new
    // reference, or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyContext_CopyCurrent()) }
}

/// `contextvars.copy_context()`.
#[cfg(feature = "abi3")]
fn copy_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static COPY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    COPY.import(py, "contextvars", "copy_context")?.call0()
}

/// `context.run(callback, *args)`: what `Context.run` does (enter, call,
/// exit), without building the argument tuple of `run` itself.
#[cfg(not(feature = "abi3"))]
fn run_in(
    context: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    let py = context.py();
    // SAFETY: the thread is attached and `context` is a live object;
    // PyContext_Enter fails (with an exception set) if it is not a
    // Context or is entered already.
    if unsafe { pyo3::ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let outcome = callback.call1(args);
    // SAFETY: as above; this exits the context entered just before.
    if unsafe { pyo3::ffi::PyContext_Exit(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    outcome.map(drop)
}

/// `context.run(callback, *args)`.
#[cfg(feature = "abi3")]
fn run_in(
    context: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    let py = context.py();
    let mut full = Vec::with_capacity(args.len() + 1);
    full.push(callback.clone());
    full.extend(args.iter());
    context
        .call_method1(intern!(py, "run"), PyTuple::new(py, full)?)
        .map(drop)
}

/// `asyncio.format_helpers._format_callback_source(callback, args)`.
fn format_callback(
    py: Python<'_>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<String> {
    static FORMAT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    FORMAT
        .import(py, "asyncio.format_helpers", "_format_callback_source")?
        .call1((callback, args))?
        .extract()
}

/// What a handle runs: a callback with its arguments, in a context, for a
/// loop; asyncio's `Handle` state.
struct Callback {
    /// The callback and its arguments; `None` once cancelled.
    call: tress::Mutex<Option<(Py<PyAny>, Py<PyTuple>)>>,
    context: Py<PyAny>,
    event_loop: Py<PyAny>,
    cancelled: AtomicBool,
}

impl Callback {
    fn new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        event_loop: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Callback> {
        let context = match context {
            Some(c) if !c.is_none(py) => c,
            _ => copy_context(py)?.unbind(),
        };
        Ok(Callback {
            call: tress::Mutex::new(Some((callback, args))),
            context,
            event_loop,
            cancelled: AtomicBool::new(false),
        })
    }

    fn call(&self, py: Python<'_>) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        self.call
            .lock()
            .as_ref()
            .map(|(c, a)| (c.clone_ref(py), a.clone_ref(py)))
    }

    /// Runs the callback in its context; an exception other than
    /// `SystemExit` and `KeyboardInterrupt` goes to the loop's exception
    /// handler with `handle` (those two propagate, as asyncio's).
    fn run(&self, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = handle.py();
        let Some((callback, args)) = self.call(py) else {
            return Ok(());
        };
        let callback = callback.bind(py);
        let args = args.bind(py);
        let outcome = run_in(self.context.bind(py), callback, args);
        let Err(e) = outcome else {
            return Ok(());
        };
        if e.is_instance_of::<PySystemExit>(py) || e.is_instance_of::<PyKeyboardInterrupt>(py) {
            return Err(e);
        }
        let message = format!(
            "Exception in callback {}",
            format_callback(py, callback, args)?
        );
        let context = PyDict::new(py);
        context.set_item("message", message)?;
        context.set_item("exception", e.into_value(py))?;
        context.set_item("handle", handle)?;
        self.event_loop
            .bind(py)
            .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    }

    /// Whether this call cancelled it (its callback and arguments are let
    /// go of now).
    fn cancel(&self) -> bool {
        if self.cancelled.swap(true, AtomicOrdering::AcqRel) {
            return false;
        }
        let call = self.call.lock().take();
        drop(call);
        true
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(AtomicOrdering::Acquire)
    }

    /// asyncio's `_repr_info` after the class name: ` cancelled` and the
    /// callback.
    fn describe(&self, py: Python<'_>, info: &mut String) -> PyResult<()> {
        if self.cancelled() {
            info.push_str(" cancelled");
        }
        if let Some((c, a)) = self.call(py) {
            info.push(' ');
            info.push_str(&format_callback(py, c.bind(py), a.bind(py))?);
        }
        Ok(())
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.context)?;
        visit.call(&self.event_loop)?;
        if let Some(call) = self.call.try_lock() {
            if let Some((c, a)) = call.as_ref() {
                visit.call(c)?;
                visit.call(a)?;
            }
        }
        Ok(())
    }

    fn clear(&self) {
        let call = self.call.lock().take();
        drop(call);
    }
}

/// A callback with its arguments and context, as `call_soon` schedules it:
/// asyncio's `Handle` (the same methods and the same failure: an exception
/// goes to the loop's exception handler with the message `Exception in
/// callback ...`), made and run without Python code.
#[pyclass(name = "Handle", module = "tress.asyncio", frozen, weakref, subclass)]
pub(crate) struct PyHandle {
    cb: Callback,
}

#[pymethods]
impl PyHandle {
    /// Cancels the call (it will not run); its callback and arguments are
    /// let go of now.
    fn cancel(&self) {
        self.cb.cancel();
    }

    /// Whether `cancel` was called.
    fn cancelled(&self) -> bool {
        self.cb.cancelled()
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.cb.cancelled()
    }

    /// The context the callback runs in.
    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.cb.context.clone_ref(py)
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.cb.context.clone_ref(py)
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.cb.event_loop.clone_ref(py)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.cb.call(py).map(|(c, _)| c)
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.cb.call(py).map(|(_, a)| a)
    }

    /// Runs the callback now (what the loop does with a ready handle).
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().cb.run(slf.as_any())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut info = String::from("Handle");
        self.cb.describe(py, &mut info)?;
        Ok(format!("<{info}>"))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.cb.traverse(&visit)
    }

    fn __clear__(&self) {
        self.cb.clear();
    }
}

/// A callback scheduled for a loop time, as `call_at` and `call_later`
/// schedule it: asyncio's `TimerHandle` (`when()`, ordering by deadline,
/// `cancel()` that takes it out of the loop's timers at once).
#[pyclass(name = "TimerHandle", module = "tress.asyncio", frozen, extends = PyHandle)]
pub(crate) struct PyTimerHandle {
    when: f64,
    /// `when` as given (an int stays an int in `when()` and the repr).
    when_obj: Py<PyAny>,
    /// Its id in the core's timers.
    id: std::sync::atomic::AtomicU64,
    /// In the core's timers (not fired, not cancelled).
    scheduled: AtomicBool,
    core: Py<PyLoopCore>,
}

#[pymethods]
impl PyTimerHandle {
    /// The loop time it is scheduled for.
    fn when(&self, py: Python<'_>) -> Py<PyAny> {
        self.when_obj.clone_ref(py)
    }

    #[getter]
    fn _when(&self, py: Python<'_>) -> Py<PyAny> {
        self.when_obj.clone_ref(py)
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(AtomicOrdering::Acquire)
    }

    /// Cancels the call: out of the loop's timers now, its callback let go
    /// of.
    fn cancel(slf: &Bound<'_, Self>) {
        let me = slf.get();
        if slf.as_super().get().cb.cancel() && me.scheduled.swap(false, AtomicOrdering::AcqRel) {
            let id = me.id.load(AtomicOrdering::Acquire);
            me.core.get().cancel(id);
        }
    }

    fn __hash__(&self) -> u64 {
        // asyncio: hash(self._when)
        self.when.to_bits()
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: pyo3::basic::CompareOp,
    ) -> Py<PyAny> {
        let py = other.py();
        let Ok(other) = other.cast::<PyTimerHandle>() else {
            return py.NotImplemented();
        };
        let (a, b) = (slf.get().when, other.get().when);
        use pyo3::basic::CompareOp::*;
        let result = match op {
            Lt => a < b,
            Gt => a > b,
            Le => a < b || Self::same(slf, other),
            Ge => a > b || Self::same(slf, other),
            Eq => Self::same(slf, other),
            Ne => !Self::same(slf, other),
        };
        pyo3::types::PyBool::new(py, result)
            .to_owned()
            .into_any()
            .unbind()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let cb = &slf.as_super().get().cb;
        let mut info = String::from("TimerHandle");
        if cb.cancelled() {
            info.push_str(" cancelled");
        }
        info.push_str(&format!(" when={}", slf.get().when_obj.bind(py).str()?));
        let mut rest = String::new();
        if let Some((c, a)) = cb.call(py) {
            rest.push(' ');
            rest.push_str(&format_callback(py, c.bind(py), a.bind(py))?);
        }
        Ok(format!("<{info}{rest}>"))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.when_obj)?;
        visit.call(&self.core)
    }
}

impl PyTimerHandle {
    /// asyncio's `TimerHandle.__eq__`: same deadline, callback, arguments
    /// and cancellation.
    fn same(a: &Bound<'_, Self>, b: &Bound<'_, Self>) -> bool {
        let py = a.py();
        if a.is(b) {
            return true;
        }
        let (ca, cb) = (&a.as_super().get().cb, &b.as_super().get().cb);
        if a.get().when != b.get().when || ca.cancelled() != cb.cancelled() {
            return false;
        }
        match (ca.call(py), cb.call(py)) {
            (None, None) => true,
            (Some((c1, a1)), Some((c2, a2))) => {
                c1.bind(py).eq(c2.bind(py)).unwrap_or(false)
                    && a1.bind(py).eq(a2.bind(py)).unwrap_or(false)
            }
            _ => false,
        }
    }
}

/// The loop's ready queue (asyncio's `loop._ready` deque): native handles
/// and any object with `_run()` and `_cancelled` (asyncio's own handles,
/// which its selector and signal code append).
#[pyclass(name = "ReadyQueue", module = "tress._tress", frozen)]
pub(crate) struct PyReadyQueue {
    items: tress::Mutex<VecDeque<Py<PyAny>>>,
}

impl PyReadyQueue {
    fn push(&self, item: Py<PyAny>) {
        self.items.lock().push_back(item);
    }

    fn pop(&self) -> Option<Py<PyAny>> {
        self.items.lock().pop_front()
    }

    fn len(&self) -> usize {
        self.items.lock().len()
    }
}

#[pymethods]
impl PyReadyQueue {
    #[new]
    fn new() -> Self {
        PyReadyQueue {
            items: tress::Mutex::new(VecDeque::new()),
        }
    }

    fn append(&self, item: Py<PyAny>) {
        self.push(item);
    }

    fn extend(&self, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut taken = Vec::new();
        for item in items.try_iter()? {
            taken.push(item?.unbind());
        }
        self.items.lock().extend(taken);
        Ok(())
    }

    fn popleft(&self) -> PyResult<Py<PyAny>> {
        self.pop()
            .ok_or_else(|| pyo3::exceptions::PyIndexError::new_err("pop from an empty deque"))
    }

    fn clear(&self) {
        let items = std::mem::take(&mut *self.items.lock());
        drop(items);
    }

    fn __len__(&self) -> usize {
        self.len()
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let items: Vec<Py<PyAny>> = self.items.lock().iter().map(|i| i.clone_ref(py)).collect();
        Ok(PyList::new(py, items)?.try_iter()?.into_any().unbind())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(items) = self.items.try_lock() {
            for i in items.iter() {
                visit.call(i)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.clear();
    }
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
    ready: Py<PyReadyQueue>,
    /// The `tress.asyncio.EventLoop` this is the core of (`bind`).
    event_loop: std::sync::OnceLock<Py<PyAny>>,
    closed: AtomicBool,
    /// `loop.time()` is `time.monotonic()` (`set_native_clock`).
    native_clock: AtomicBool,
    /// The epoll descriptor of the loop's `selectors.EpollSelector` and its
    /// `_fd_to_key` map (`use_epoll`): then `run_once` waits on it and
    /// processes its events natively.
    epoll: tress::Mutex<Option<Epoll>>,
    /// Room for one poll's events.
    events: tress::Mutex<Events>,
    /// When the selector was last polled (`monotonic_ns`).
    last_poll: std::sync::atomic::AtomicI64,
    /// The thread running `run_forever` (`current_thread`), 0 if none.
    thread: std::sync::atomic::AtomicU64,
    /// The loop's `_stopping` and `_debug` (the loop's attributes are
    /// properties over these).
    stopping: AtomicBool,
    debug: AtomicBool,
}

/// The epoll descriptor of a `selectors.EpollSelector`, the selector (kept
/// alive: it owns the descriptor) and its `_fd_to_key` map.
type Epoll = (RawFd, Py<PyAny>, Py<PyDict>);

/// While callbacks are ready, the selector is polled (without blocking)
/// at most once per this many nanoseconds, and on the last iteration of a
/// run: a loop running a chain of callbacks pays one system call per
/// stretch, not one per callback, and a descriptor that becomes ready
/// waits at most this long to be seen.
const POLL_GAP_NS: i64 = 50_000;

/// This thread, as a non-zero number (`pthread_self`, which is also what
/// `threading.get_ident()` returns).
fn current_thread() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    (unsafe { libc::pthread_self() }) as u64
}

/// `CLOCK_MONOTONIC` in nanoseconds (what `time.monotonic()` reads).
fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: one day.
const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

impl PyLoopCore {
    fn timers(&self) -> tress::MutexGuard<'_, Timers<Py<PyAny>, When>> {
        self.timers.lock()
    }

    fn event_loop<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyAny>> {
        match self.event_loop.get() {
            Some(l) => Ok(l.bind(py)),
            None => Err(PyRuntimeError::new_err("LoopCore is not bound to a loop")),
        }
    }

    fn check_open(&self) -> PyResult<()> {
        if self.closed.load(AtomicOrdering::Acquire) {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    /// What a handle of this (open) loop runs.
    fn callback(
        &self,
        py: Python<'_>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Callback> {
        self.check_open()?;
        let event_loop = self.event_loop(py)?.clone().unbind();
        Callback::new(
            py,
            callback.unbind(),
            args.unbind(),
            event_loop,
            context.map(Bound::unbind),
        )
    }

    fn handle<'py>(
        &self,
        py: Python<'py>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyHandle>> {
        let cb = self.callback(py, callback, args, context)?;
        Bound::new(py, PyHandle { cb })
    }

    /// The loop's clock: `time.monotonic()` (what `loop.time()` returns
    /// unless a subclass changed it; then `native_clock` is off).
    fn now(&self, lp: &Bound<'_, PyAny>) -> PyResult<f64> {
        if self.native_clock.load(AtomicOrdering::Relaxed) {
            // as Python's time.monotonic(): nanoseconds, then one division
            return Ok(monotonic_ns() as f64 / 1e9);
        }
        lp.call_method0(intern!(lp.py(), "time"))?.extract()
    }

    /// A native `TimerHandle` for loop time `at`, scheduled.
    fn timer<'py>(
        &self,
        slf: &Bound<'py, Self>,
        at: f64,
        when: Py<PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTimerHandle>> {
        let py = slf.py();
        let cb = self.callback(py, callback, args, context)?;
        let handle = Bound::new(
            py,
            pyo3::PyClassInitializer::from(PyHandle { cb }).add_subclass(PyTimerHandle {
                when: at,
                when_obj: when,
                id: std::sync::atomic::AtomicU64::new(0),
                scheduled: AtomicBool::new(true),
                core: slf.clone().unbind(),
            }),
        )?;
        let id = self
            .timers()
            .insert(When(at), handle.clone().into_any().unbind());
        handle.get().id.store(id.to_bits(), AtomicOrdering::Release);
        Ok(handle)
    }

    /// Moves the due timers' handles to the ready queue.
    fn expire_into_ready(&self, py: Python<'_>, now: f64) -> PyResult<()> {
        let due = self.take_due(py, now)?;
        self.ready.get().items.lock().extend(due);
        Ok(())
    }

    /// Takes every timer due at loop time `now` out (deadline <= now:
    /// never early), earliest first, each marked no longer scheduled (a
    /// native `TimerHandle`, or asyncio's, made in debug mode).
    fn take_due(&self, py: Python<'_>, now: f64) -> PyResult<Vec<Py<PyAny>>> {
        let mut due = Vec::new();
        self.timers().expire(When(now), |_, h| due.push(h));
        let scheduled = intern!(py, "_scheduled");
        for h in &due {
            let h = h.bind(py);
            match h.cast::<PyTimerHandle>() {
                Ok(t) => t.get().scheduled.store(false, AtomicOrdering::Release),
                Err(_) => h.setattr(scheduled, false)?,
            }
        }
        Ok(due)
    }

    /// One wait on the selector's epoll descriptor (parked if it blocks;
    /// the GIL let go of meanwhile; a signal ends it, and its Python
    /// handler runs here, so Ctrl-C raises), then its events processed as
    /// asyncio's `_process_events` does: a ready reader or writer handle is
    /// made ready, a cancelled one removed. With `may_skip` (callbacks are
    /// ready, the loop is not stopping) no poll is made if the last one is
    /// less than [`POLL_GAP_NS`] old.
    fn poll_epoll(
        &self,
        py: Python<'_>,
        lp: &Bound<'_, PyAny>,
        fd: RawFd,
        map: &Bound<'_, PyDict>,
        timeout: Option<f64>,
        may_skip: bool,
    ) -> PyResult<()> {
        if may_skip && monotonic_ns() - self.last_poll.load(AtomicOrdering::Relaxed) < POLL_GAP_NS {
            return py.check_signals();
        }
        let mut ready_fds: Vec<(RawFd, u32)> = Vec::new();
        {
            let Some(mut events) = self.events.try_lock() else {
                return Err(PyRuntimeError::new_err(
                    "the loop is already polling in another thread",
                ));
            };
            // SAFETY: `fd` is the epoll descriptor of the loop's selector,
            // which the loop keeps open until `close`, which also takes it
            // out of this core (`close`) before it is closed.
            let epoll = unsafe { BorrowedFd::borrow_raw(fd) };
            let polled = if timeout == Some(0.0) {
                tress::event_loop::wait(epoll, &mut events, Some(Duration::ZERO))
            } else if self.inbox.park() {
                let wait = timeout.map(|t| Duration::from_secs_f64(t.max(0.0)));
                let polled = py.detach(|| tress::event_loop::wait(epoll, &mut events, wait));
                self.inbox.unpark();
                polled
            } else {
                tress::event_loop::wait(epoll, &mut events, Some(Duration::ZERO))
            };
            polled?;
            self.last_poll
                .store(monotonic_ns(), AtomicOrdering::Relaxed);
            for ev in events.iter() {
                // Python's select.epoll stores the descriptor in the low
                // 32 bits of the event's data.
                let mask = u32::from(ev.readable) | (u32::from(ev.writable) << 1);
                ready_fds.push((ev.token as u32 as RawFd, mask));
            }
        }
        py.check_signals()?;
        let ready = self.ready.get();
        for (fd, mask) in ready_fds {
            let Some(key) = map.get_item(fd)? else {
                continue;
            };
            let Ok(key) = key.cast::<PyTuple>() else {
                continue;
            };
            let key_events: u32 = key.get_item(2)?.extract()?;
            let mask = mask & key_events;
            let data = key.get_item(3)?;
            let Ok(pair) = data.cast::<PyTuple>() else {
                continue;
            };
            if pair.len() != 2 {
                continue;
            }
            for (bit, index, remove) in [
                (1, 0, intern!(py, "_remove_reader")),
                (2, 1, intern!(py, "_remove_writer")),
            ] {
                if mask & bit == 0 {
                    continue;
                }
                let handle = pair.get_item(index)?;
                if handle.is_none() {
                    continue;
                }
                if handle.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
                    lp.call_method1(remove, (key.get_item(0)?,))?;
                } else {
                    ready.push(handle.unbind());
                }
            }
        }
        Ok(())
    }

    /// Runs one ready item: a native handle, or anything with `_run()` and
    /// `_cancelled`.
    fn run_item(item: Bound<'_, PyAny>) -> PyResult<()> {
        let py = item.py();
        if let Ok(h) = item.cast::<PyHandle>() {
            let cb = &h.get().cb;
            if cb.cancelled() {
                return Ok(());
            }
            return cb.run(&item);
        }
        if item.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
            return Ok(());
        }
        item.call_method0(intern!(py, "_run"))?;
        Ok(())
    }
}

#[pymethods]
impl PyLoopCore {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(PyLoopCore {
            timers: tress::Mutex::new(Timers::new()),
            inbox: Inbox::new()?,
            ready: Py::new(py, PyReadyQueue::new())?,
            event_loop: std::sync::OnceLock::new(),
            closed: AtomicBool::new(false),
            native_clock: AtomicBool::new(false),
            epoll: tress::Mutex::new(None),
            events: tress::Mutex::new(Events::with_capacity(1024)),
            last_poll: std::sync::atomic::AtomicI64::new(0),
            thread: std::sync::atomic::AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            debug: AtomicBool::new(false),
        })
    }

    /// Lets `run_once` wait on the epoll descriptor `fd` of `selector` (a
    /// `selectors.EpollSelector`) itself and look its events up in
    /// `fd_to_key` (the selector's own map), instead of calling
    /// `selector.select` and the loop's `_process_events`.
    fn use_epoll(&self, fd: RawFd, selector: Py<PyAny>, fd_to_key: Py<PyDict>) {
        let old = self.epoll.lock().replace((fd, selector, fd_to_key));
        drop(old);
    }

    /// The loop's `_stopping`.
    #[getter]
    fn get_stopping(&self) -> bool {
        self.stopping.load(AtomicOrdering::Acquire)
    }

    #[setter]
    fn set_stopping(&self, on: bool) {
        self.stopping.store(on, AtomicOrdering::Release);
    }

    /// The loop's `_debug`.
    #[getter]
    fn get_debug(&self) -> bool {
        self.debug.load(AtomicOrdering::Acquire)
    }

    #[setter]
    fn set_debug(&self, on: bool) {
        self.debug.store(on, AtomicOrdering::Release);
    }

    /// Binds the core to its loop (once): the loop its handles report
    /// exceptions to and whose selector `run_once` polls.
    fn bind(&self, event_loop: Py<PyAny>) -> PyResult<()> {
        self.event_loop
            .set(event_loop)
            .map_err(|_| PyRuntimeError::new_err("LoopCore is already bound"))
    }

    /// The ready queue (the loop's `_ready`).
    #[getter]
    fn ready(&self, py: Python<'_>) -> Py<PyReadyQueue> {
        self.ready.clone_ref(py)
    }

    /// Marks the loop closed: `call_soon` raises from now on (and the
    /// selector, closed with the loop, is no longer waited on).
    fn close(&self) {
        self.closed.store(true, AtomicOrdering::Release);
        let old = self.epoll.lock().take();
        drop(old);
    }

    /// Runs iterations until the loop's `_stopping` is set (the body of
    /// `run_forever`; its set-up and clean-up are the loop's). An iteration
    /// in debug mode is the loop's own `_run_once`.
    fn run_forever(&self, py: Python<'_>) -> PyResult<()> {
        let lp = self.event_loop(py)?.clone();
        struct Running<'a>(&'a std::sync::atomic::AtomicU64);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.store(0, AtomicOrdering::Release);
            }
        }
        self.thread.store(current_thread(), AtomicOrdering::Release);
        let _running = Running(&self.thread);
        loop {
            if self.debug.load(AtomicOrdering::Acquire) {
                lp.call_method0(intern!(py, "_run_once"))?;
            } else {
                self.run_once(py)?;
            }
            if self.stopping.load(AtomicOrdering::Acquire) {
                return Ok(());
            }
        }
    }

    /// The loop's `call_soon` (not in debug mode): a native `Handle` at the
    /// end of the ready queue.
    #[pyo3(signature = (callback, *args, context=None))]
    fn call_soon<'py>(
        &self,
        py: Python<'py>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyHandle>> {
        let handle = self.handle(py, callback, args, context)?;
        self.ready.get().push(handle.clone().into_any().unbind());
        Ok(handle)
    }

    /// The loop's `create_task` (not in debug mode) when no task factory is
    /// set: asyncio's `Task(coro, loop=, name=, context=)`, made without a
    /// Python frame; with a task factory, asyncio's own method.
    #[pyo3(signature = (coro, *, name=None, context=None))]
    fn create_task<'py>(
        &self,
        py: Python<'py>,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        static TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        static BASE_CREATE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        self.check_open()?;
        let lp = self.event_loop(py)?;
        let kwargs = PyDict::new(py);
        if lp.getattr(intern!(py, "_task_factory"))?.is_none() {
            kwargs.set_item(intern!(py, "loop"), lp)?;
            kwargs.set_item(intern!(py, "name"), name)?;
            kwargs.set_item(intern!(py, "context"), context)?;
            return TASK
                .import(py, "asyncio.tasks", "Task")?
                .call((coro,), Some(&kwargs));
        }
        kwargs.set_item(intern!(py, "name"), name)?;
        kwargs.set_item(intern!(py, "context"), context)?;
        let base = BASE_CREATE.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import("asyncio.base_events")?
                .getattr("BaseEventLoop")?
                .getattr("create_task")?
                .unbind())
        })?;
        base.bind(py).call((lp, coro), Some(&kwargs))
    }

    /// A native `Handle` for `callback(*args)`, not scheduled (the loop's
    /// reader and writer callbacks, which its selector holds).
    #[pyo3(signature = (callback, *args))]
    fn make_handle<'py>(
        &self,
        py: Python<'py>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyHandle>> {
        self.handle(py, callback, args, None)
    }

    /// The loop's `call_soon_threadsafe` (not in debug mode): from another
    /// thread while the loop runs, through the inbox (the loop is woken
    /// only if parked); on the loop's thread, as `call_soon`.
    #[pyo3(signature = (callback, *args, context=None))]
    fn call_soon_threadsafe<'py>(
        &self,
        py: Python<'py>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyHandle>> {
        let handle = self.handle(py, callback, args, context)?;
        let item = handle.clone().into_any().unbind();
        match self.thread.load(AtomicOrdering::Acquire) {
            0 => {
                // not running natively: the loop may be starting on another
                // thread right now (or runs asyncio's Python iterations)
                self.ready.get().push(item);
                self.inbox.nudge();
            }
            t if t == current_thread() => self.ready.get().push(item),
            _ => self.inbox.send(item),
        }
        Ok(handle)
    }

    /// One iteration of the loop (not in debug mode): poll the selector
    /// (blocking only when nothing is ready and the loop is not stopping,
    /// parked meanwhile), process its events, make what other threads sent
    /// and the due timers ready, then run what is ready at that point.
    fn run_once(&self, py: Python<'_>) -> PyResult<()> {
        let lp = self.event_loop(py)?;
        let ready = self.ready.get();
        let stopping = self.stopping.load(AtomicOrdering::Acquire);
        let timeout = if stopping || ready.len() > 0 {
            Some(0.0)
        } else {
            match self.next_when() {
                None => None,
                Some(when) => Some((when - self.now(lp)?).clamp(0.0, MAXIMUM_SELECT_TIMEOUT)),
            }
        };
        let epoll = self
            .epoll
            .lock()
            .as_ref()
            .map(|(fd, _, map)| (*fd, map.clone_ref(py)));
        match epoll {
            Some((fd, map)) => {
                let may_skip = timeout == Some(0.0) && !stopping;
                self.poll_epoll(py, lp, fd, map.bind(py), timeout, may_skip)?
            }
            None => {
                let selector = lp.getattr(intern!(py, "_selector"))?;
                let select = intern!(py, "select");
                let events = if timeout == Some(0.0) {
                    selector.call_method1(select, (0,))?
                } else if self.inbox.park() {
                    let events = selector.call_method1(select, (timeout,));
                    self.inbox.unpark();
                    events?
                } else {
                    selector.call_method1(select, (0,))?
                };
                lp.call_method1(intern!(py, "_process_events"), (events,))?;
            }
        }
        if self.inbox.is_pending() {
            let mut sent = Vec::new();
            self.inbox.take(&mut sent);
            ready.items.lock().extend(sent);
        }
        if !self.timers().is_empty() {
            let now = self.now(lp)?;
            self.expire_into_ready(py, now)?;
        }
        for _ in 0..ready.len() {
            let Some(item) = ready.pop() else {
                break;
            };
            Self::run_item(item.into_bound(py))?;
        }
        Ok(())
    }

    /// Schedules `handle` (asyncio's `TimerHandle`, debug mode) for loop
    /// time `when`; its id.
    fn schedule(&self, when: f64, handle: Py<PyAny>) -> u64 {
        self.timers().insert(When(when), handle).to_bits()
    }

    /// Whether the loop's `time()` is `time.monotonic()` (then the core
    /// reads the clock itself).
    fn set_native_clock(&self, on: bool) {
        self.native_clock.store(on, AtomicOrdering::Relaxed);
    }

    /// The loop's `call_at` (not in debug mode): a native `TimerHandle` in
    /// the core's timers.
    #[pyo3(signature = (when, callback, *args, context=None))]
    fn call_at<'py>(
        slf: &Bound<'py, Self>,
        when: &Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTimerHandle>> {
        if when.is_none() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "when cannot be None",
            ));
        }
        let at: f64 = when.extract()?;
        slf.get()
            .timer(slf, at, when.clone().unbind(), callback, args, context)
    }

    /// The loop's `call_later` (not in debug mode).
    #[pyo3(signature = (delay, callback, *args, context=None))]
    fn call_later<'py>(
        slf: &Bound<'py, Self>,
        delay: &Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTimerHandle>> {
        let py = slf.py();
        if delay.is_none() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "delay must not be None",
            ));
        }
        let me = slf.get();
        let lp = me.event_loop(py)?;
        let delay: f64 = delay.extract()?;
        let at = me.now(lp)? + delay;
        let when = pyo3::types::PyFloat::new(py, at).into_any().unbind();
        me.timer(slf, at, when, callback, args, context)
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
        let mut due = self.take_due(py, now)?;
        let n = due.len();
        if n == 0 {
            return Ok(0);
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
        visit.call(&self.ready)?;
        if let Some(l) = self.event_loop.get() {
            visit.call(l)?;
        }
        if let Some(epoll) = self.epoll.try_lock() {
            if let Some((_, selector, map)) = epoll.as_ref() {
                visit.call(selector)?;
                visit.call(map)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.clear();
    }
}
