//! `tress.queue`: `Queue`, `LifoQueue`, `PriorityQueue` and `SimpleQueue`
//! over [`tress::queue`], with the semantics of CPython 3.11's `queue`
//! module (and 3.13's `Queue.shutdown`).
//!
//! The plain classes run every operation in one native call: a put into a
//! queue with room and a get from one with items take the core's lock and
//! return, with the GIL held throughout; only a call that has to wait lets
//! go of the GIL (in [`Blocking`]'s `before_sleep`). Wakes are made with the
//! GIL held: the woken thread then waits for the GIL while its waker goes on
//! putting or getting, which batches a producer and a consumer instead of
//! making them take turns item by item.
//!
//! A `PriorityQueue` compares items with Python's `<` while holding the
//! core's lock. `__lt__` may let go of the GIL, so every wait for that lock
//! goes through [`Blocking`] too (it releases the GIL before sleeping): no
//! thread ever waits for the lock while holding the GIL its holder needs. A
//! comparison that calls back into the same queue would wait for itself; the
//! core's lock is never taken twice by one thread, so this is reported as a
//! `RuntimeError` instead of a hang.
//!
//! A Python subclass that overrides `_init`, `_qsize`, `_put` or `_get` gets
//! the stdlib's algorithm, run by `tress._queue_hooks` with a tress `Lock`
//! and `Condition`s, calling its hooks; its inherited `_init`/`_put`/`_get`/
//! `_qsize` then keep the items in `self.queue` as the stdlib's do, so a
//! hook may call `Queue._put(self, item)` or rely on the inherited `_qsize`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use pyo3::exceptions::{PyAttributeError, PyIndexError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyTuple, PyType};
use tress::queue::{Fifo, Lifo, Order, Priority};
use tress::{GetError, PutError};

use crate::threading::no_pickle;
use crate::wait::{Arg, Blocking, Round, deadline_ns, seconds_to_ns, wait_deadline};

pyo3::import_exception!(queue, Empty);
pyo3::import_exception!(queue, Full);

/// Registers the classes with the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyQueue>()?;
    m.add_class::<PyLifoQueue>()?;
    m.add_class::<PyPriorityQueue>()?;
    m.add_class::<PySimpleQueue>()?;
    Ok(())
}

/// `tress.queue.ShutDown` (the stdlib's where it has one).
fn shut_down(py: Python<'_>) -> PyErr {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match CLASS.import(py, "tress.queue", "ShutDown") {
        Ok(class) => PyErr::from_type(class.clone(), ()),
        Err(e) => e,
    }
}

/// The Python half of the subclass-hook path, `tress._queue_hooks.<name>`.
fn hook<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module =
        MODULE.get_or_try_init(py, || py.import("tress._queue_hooks").map(Bound::unbind))?;
    module.bind(py).getattr(name)
}

type Item = Py<PyAny>;

/// Python's `a < b`, for the priority order.
type PyLess = Box<dyn FnMut(&Item, &Item) -> PyResult<bool> + Send>;

type PyPriority = Priority<Item, PyLess>;

/// The priority order: Python's `<`, with `comparing` set to the calling
/// thread while the comparison's Python code runs. It runs with the GIL
/// held: the core calls it from the thread of a binding call, which holds
/// the GIL whenever it holds the core's lock.
fn py_priority(comparing: Arc<AtomicUsize>) -> PyPriority {
    Priority::by(Box::new(move |a: &Item, b: &Item| {
        // SAFETY: the GIL is held (see above); both pointers are live
        // objects owned by the queue.
        if let Some(less) = unsafe { native_less(a.as_ptr(), b.as_ptr()) } {
            return Ok(less);
        }
        comparing.store(tress::current_thread_id(), Ordering::Relaxed);
        // SAFETY: as above. This is what `heapq` calls.
        let r = unsafe { ffi::PyObject_RichCompareBool(a.as_ptr(), b.as_ptr(), ffi::Py_LT) };
        comparing.store(0, Ordering::Relaxed);
        match r {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Python::attach(PyErr::fetch)),
        }
    }))
}

/// `a < b` computed without running any Python code, when that cannot be
/// told apart from Python's `<`: both exact `int`s within 64 bits, both
/// exact `float`s (not NaN), or exact tuples whose first elements are such
/// and differ (a tuple compares its first unequal elements; the common
/// `(priority, item)` entry). `None`: ask Python.
///
/// # Safety
/// The GIL is held and both pointers are live objects.
unsafe fn native_less(a: *mut ffi::PyObject, b: *mut ffi::PyObject) -> Option<bool> {
    // SAFETY: the caller's contract.
    unsafe {
        if let Some(ord) = scalar_order(a, b) {
            return Some(ord.is_lt());
        }
        if ffi::PyTuple_CheckExact(a) != 0
            && ffi::PyTuple_CheckExact(b) != 0
            && tuple_len(a) > 0
            && tuple_len(b) > 0
        {
            let (x, y) = (tuple_first(a), tuple_first(b));
            if let Some(ord) = scalar_order(x, y) {
                if ord.is_ne() {
                    return Some(ord.is_lt());
                }
            }
        }
        None
    }
}

/// The order of two exact 64-bit `int`s or two exact non-NaN `float`s.
///
/// # Safety
/// As [`native_less`].
unsafe fn scalar_order(a: *mut ffi::PyObject, b: *mut ffi::PyObject) -> Option<std::cmp::Ordering> {
    // SAFETY: the caller's contract; the type checks come first.
    unsafe {
        if ffi::PyLong_CheckExact(a) != 0 && ffi::PyLong_CheckExact(b) != 0 {
            let mut overflow = 0;
            let x = ffi::PyLong_AsLongLongAndOverflow(a, &mut overflow);
            if overflow != 0 {
                return None;
            }
            let y = ffi::PyLong_AsLongLongAndOverflow(b, &mut overflow);
            if overflow != 0 {
                return None;
            }
            return Some(x.cmp(&y));
        }
        if ffi::PyFloat_CheckExact(a) != 0 && ffi::PyFloat_CheckExact(b) != 0 {
            return float_value(a).partial_cmp(&float_value(b));
        }
        None
    }
}

// The C API's macros for exact tuples and floats; their functions in the
// stable ABI (feature `abi3`), which has no macros reading the objects.
// SAFETY (all three): the GIL is held and `o` is a live object of the type.

#[cfg(not(feature = "abi3"))]
unsafe fn tuple_len(o: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: see above.
    unsafe { ffi::PyTuple_GET_SIZE(o) }
}

#[cfg(not(feature = "abi3"))]
unsafe fn tuple_first(o: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: see above; the tuple is not empty.
    unsafe { ffi::PyTuple_GET_ITEM(o, 0) }
}

#[cfg(not(feature = "abi3"))]
unsafe fn float_value(o: *mut ffi::PyObject) -> f64 {
    // SAFETY: see above.
    unsafe { ffi::PyFloat_AS_DOUBLE(o) }
}

#[cfg(feature = "abi3")]
unsafe fn tuple_len(o: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: see above.
    unsafe { ffi::PyTuple_Size(o) }
}

#[cfg(feature = "abi3")]
unsafe fn tuple_first(o: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: see above; the tuple is not empty (a borrowed reference).
    unsafe { ffi::PyTuple_GetItem(o, 0) }
}

#[cfg(feature = "abi3")]
unsafe fn float_value(o: *mut ffi::PyObject) -> f64 {
    // SAFETY: see above (an exact float: no error possible).
    unsafe { ffi::PyFloat_AsDouble(o) }
}

/// The core queue, in the order of the Python class instantiated.
enum Core {
    Fifo(tress::Queue<Item, Fifo<Item>>),
    Lifo(tress::Queue<Item, Lifo<Item>>),
    /// With the thread running a comparison (Python code) under the
    /// core's lock, or 0: a call from that thread into the queue would wait
    /// for itself.
    Priority(tress::Queue<Item, PyPriority>, Arc<AtomicUsize>),
}

/// Runs `$body` with `$q` bound to the core queue, whatever its order.
macro_rules! with_core {
    ($core:expr, $q:ident => $body:expr) => {
        match $core {
            Core::Fifo($q) => $body,
            Core::Lifo($q) => $body,
            Core::Priority($q, _) => $body,
        }
    };
}

/// The hooks whose override switches a subclass to the hook path.
const HOOKS: [&str; 4] = ["_init", "_qsize", "_put", "_get"];

/// `maxsize` as the core counts it: 0 for unbounded. Python compares the
/// attribute with `>` and `>=`, so a float bound `m > 0` acts as
/// `ceil(m)` and NaN or infinity as no bound.
fn core_maxsize(value: &Bound<'_, PyAny>) -> PyResult<usize> {
    if let Ok(f) = value.cast::<PyFloat>() {
        let m = f.value();
        return Ok(if m.is_finite() && m > 0.0 {
            m.ceil().min(usize::MAX as f64) as usize
        } else {
            0
        });
    }
    match value.extract::<i128>() {
        Ok(m) if m <= 0 => Ok(0),
        Ok(m) => Ok(usize::try_from(m).unwrap_or(usize::MAX)),
        Err(_) if value.is_instance_of::<PyInt>() => Ok(usize::MAX),
        Err(_) => Err(PyTypeError::new_err(format!(
            "maxsize must be a number, not '{}'",
            value.get_type().qualname()?
        ))),
    }
}

/// Python's `timeout < 0`, as `Queue.put`/`get` test it (any comparable
/// object; a fast path for floats and ints).
fn timeout_is_negative(timeout: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(f) = timeout.cast::<PyFloat>() {
        return Ok(f.value() < 0.0);
    }
    if let Ok(i) = timeout.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(v < 0);
        }
    }
    timeout.lt(0)
}

fn negative_timeout() -> PyErr {
    PyValueError::new_err("'timeout' must be a non-negative number")
}

/// The core's result of a put, as Python sees it.
#[inline]
fn put_result(py: Python<'_>, r: Result<(), PutError<Item, PyErr>>) -> PyResult<()> {
    match r {
        Ok(()) => Ok(()),
        Err(PutError::Full(_)) => Err(Full::new_err(())),
        Err(PutError::ShutDown(_)) => Err(shut_down(py)),
        Err(PutError::Failed(_, e)) => Err(e),
    }
}

/// The core's result of a get, as Python sees it.
#[inline]
fn get_result(py: Python<'_>, r: Result<Item, GetError<PyErr>>) -> PyResult<Item> {
    match r {
        Ok(item) => Ok(item),
        Err(GetError::Empty) => Err(Empty::new_err(())),
        Err(GetError::ShutDown) => Err(shut_down(py)),
        Err(GetError::Failed(e)) => Err(e),
    }
}

/// `queue.Queue`, `LifoQueue` and `PriorityQueue` (the latter two are
/// subclasses that pick the order).
#[pyclass(
    name = "Queue",
    module = "tress.queue",
    subclass,
    frozen,
    weakref,
    dict
)]
pub(crate) struct PyQueue {
    core: Core,
    /// `maxsize` as the user set it (the core holds it as a count).
    maxsize: tress::Mutex<Py<PyAny>>,
    /// Whether the class overrides a hook (see the module docs).
    hooked: bool,
}

impl PyQueue {
    fn build(cls: &Bound<'_, PyType>, core: Core) -> PyResult<Self> {
        let py = cls.py();
        let base = py.get_type::<PyQueue>();
        let mut hooked = false;
        for name in HOOKS {
            if !cls.getattr(name)?.is(&base.getattr(name)?) {
                hooked = true;
            }
        }
        Ok(Self {
            core,
            maxsize: tress::Mutex::new(0i32.into_pyobject(py)?.into_any().unbind()),
            hooked,
        })
    }

    /// The interrupt of a call: on the main thread, Ctrl-C abandons a wait.
    /// A priority queue refuses a call made from inside one of its own
    /// comparisons, which would wait for itself.
    #[inline]
    fn blocking<'py>(&self, py: Python<'py>) -> PyResult<Blocking<'py, 'static>> {
        if let Core::Priority(_, comparing) = &self.core {
            let owner = comparing.load(Ordering::Relaxed);
            if owner != 0 && owner == tress::current_thread_id() {
                return Err(PyRuntimeError::new_err(
                    "PriorityQueue used from inside a comparison of its own items",
                ));
            }
        }
        Ok(Blocking::interruptible(py))
    }

    fn put_native(
        &self,
        py: Python<'_>,
        item: Item,
        block: bool,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut intr = self.blocking(py)?;
        if with_core!(&self.core, q => q.is_shutdown()) {
            // Before the timeout is looked at, as in Python 3.13.
            return Err(shut_down(py));
        }
        if !block {
            let r = with_core!(&self.core, q => q.try_put_with(item, &mut intr));
            return put_result(py, r);
        }
        let Some(timeout) = timeout else {
            let r = with_core!(&self.core, q => q.put_with(item, None, &mut intr));
            return put_result(py, r);
        };
        let bounded = with_core!(&self.core, q => q.maxsize()) > 0;
        if bounded && timeout_is_negative(timeout)? {
            return Err(negative_timeout());
        }
        let item = match with_core!(&self.core, q => q.try_put_with(item, &mut intr)) {
            Err(PutError::Full(item)) => item,
            r => return put_result(py, r),
        };
        let deadline = wait_deadline(Some(timeout))?;
        let r = with_core!(&self.core, q => q.put_with(item, deadline, &mut intr));
        put_result(py, r)
    }

    fn get_native(
        &self,
        py: Python<'_>,
        block: bool,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Item> {
        let mut intr = self.blocking(py)?;
        if with_core!(&self.core, q => q.is_shutdown() && q.is_empty()) {
            // Before the timeout is looked at, as in Python 3.13.
            return Err(shut_down(py));
        }
        if !block {
            let r = with_core!(&self.core, q => q.try_get_with(&mut intr));
            return get_result(py, r);
        }
        let Some(timeout) = timeout else {
            let r = with_core!(&self.core, q => q.get_with(None, &mut intr));
            return get_result(py, r);
        };
        if timeout_is_negative(timeout)? {
            return Err(negative_timeout());
        }
        match with_core!(&self.core, q => q.try_get_with(&mut intr)) {
            Err(GetError::Empty) => {}
            r => return get_result(py, r),
        }
        let deadline = wait_deadline(Some(timeout))?;
        let r = with_core!(&self.core, q => q.get_with(deadline, &mut intr));
        get_result(py, r)
    }

    /// The order's name for the hook path's storage.
    fn kind(&self) -> &'static str {
        match self.core {
            Core::Fifo(_) => "fifo",
            Core::Lifo(_) => "lifo",
            Core::Priority(..) => "priority",
        }
    }

    /// Whether `block` asks to block (Python truthiness; absent is true).
    #[inline]
    fn truthy(block: &Arg<'_>) -> PyResult<bool> {
        match block.get() {
            None => Ok(true),
            Some(b) => b.is_truthy(),
        }
    }
}

#[pymethods]
impl PyQueue {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Self::build(cls, Core::Fifo(tress::Queue::new()))
    }

    #[pyo3(signature = (maxsize=Arg::Missing))]
    fn __init__(slf: &Bound<'_, Self>, maxsize: Arg<'_>) -> PyResult<()> {
        let py = slf.py();
        let maxsize = match maxsize.get() {
            Some(m) => m.clone(),
            None => 0i32.into_pyobject(py)?.into_any(),
        };
        Self::set_maxsize(slf, &maxsize)?;
        if slf.get().hooked {
            hook(py, "init")?.call1((slf, maxsize))?;
        }
        Ok(())
    }

    /// Put an item into the queue. With `block` true (the default) wait up
    /// to `timeout` seconds (forever if None) for a free slot, else raise
    /// `Full`; with `block` false raise `Full` at once if there is none.
    #[pyo3(signature = (item, block=Arg::Missing, timeout=None))]
    fn put(
        slf: &Bound<'_, Self>,
        item: Bound<'_, PyAny>,
        block: Arg<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let this = slf.get();
        if this.hooked {
            let block = block_object(slf.py(), &block);
            hook(slf.py(), "put")?.call1((slf, item, block, timeout))?;
            return Ok(());
        }
        this.put_native(slf.py(), item.unbind(), Self::truthy(&block)?, timeout)
    }

    /// Put an item without blocking (`put(item, False)`).
    fn put_nowait(slf: &Bound<'_, Self>, item: Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        if this.hooked {
            hook(slf.py(), "put")?.call1((slf, item, false, slf.py().None()))?;
            return Ok(());
        }
        this.put_native(slf.py(), item.unbind(), false, None)
    }

    /// Remove and return an item. With `block` true (the default) wait up
    /// to `timeout` seconds (forever if None) for one, else raise `Empty`;
    /// with `block` false raise `Empty` at once if there is none.
    #[pyo3(signature = (block=Arg::Missing, timeout=None))]
    fn get(
        slf: &Bound<'_, Self>,
        block: Arg<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Item> {
        let this = slf.get();
        if this.hooked {
            let block = block_object(slf.py(), &block);
            return Ok(hook(slf.py(), "get")?
                .call1((slf, block, timeout))?
                .unbind());
        }
        this.get_native(slf.py(), Self::truthy(&block)?, timeout)
    }

    /// Remove and return an item without blocking (`get(False)`).
    fn get_nowait(slf: &Bound<'_, Self>) -> PyResult<Item> {
        let this = slf.get();
        if this.hooked {
            return Ok(hook(slf.py(), "get")?
                .call1((slf, false, slf.py().None()))?
                .unbind());
        }
        this.get_native(slf.py(), false, None)
    }

    /// The approximate size of the queue.
    fn qsize(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        if this.hooked {
            return Ok(hook(slf.py(), "qsize")?.call1((slf,))?.unbind());
        }
        let n = with_core!(&this.core, q => q.len());
        Ok(n.into_pyobject(slf.py())?.into_any().unbind())
    }

    /// Whether the queue is empty (not reliable once returned).
    fn empty(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let this = slf.get();
        if this.hooked {
            return hook(slf.py(), "empty")?.call1((slf,))?.is_truthy();
        }
        Ok(with_core!(&this.core, q => q.is_empty()))
    }

    /// Whether the queue is full (not reliable once returned).
    fn full(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let this = slf.get();
        if this.hooked {
            return hook(slf.py(), "full")?.call1((slf,))?.is_truthy();
        }
        Ok(with_core!(&this.core, q => q.is_full()))
    }

    /// Indicate that a formerly enqueued task is complete. Raises
    /// `ValueError` if called more times than there were items placed.
    fn task_done(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.hooked {
            hook(slf.py(), "task_done")?.call1((slf,))?;
            return Ok(());
        }
        let mut intr = this.blocking(slf.py())?;
        match with_core!(&this.core, q => q.task_done_pending(&mut intr))? {
            Ok(wakes) => {
                // A joiner woken with the GIL let go of can run at once;
                // this thread is typically about to wait for the next item.
                if !wakes.is_empty() {
                    slf.py().detach(|| wakes.wake());
                }
                Ok(())
            }
            Err(tress::TooManyTaskDone) => {
                Err(PyValueError::new_err("task_done() called too many times"))
            }
        }
    }

    /// Block until every item put has been gotten and marked done.
    fn join(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.hooked {
            hook(slf.py(), "join")?.call1((slf,))?;
            return Ok(());
        }
        let mut intr = this.blocking(slf.py())?;
        with_core!(&this.core, q => q.join_with(None, &mut intr))?;
        Ok(())
    }

    /// Shut the queue down (Python 3.13): `put` raises `ShutDown`; `get`
    /// drains what is left, then raises `ShutDown`. With `immediate`, the
    /// items left are dropped (each counted done) and `get` raises at once.
    /// Blocked callers wake up.
    #[pyo3(signature = (immediate=Arg::Missing))]
    fn shutdown(slf: &Bound<'_, Self>, immediate: Arg<'_>) -> PyResult<()> {
        let this = slf.get();
        let immediate = match immediate.get() {
            None => false,
            Some(b) => b.is_truthy()?,
        };
        if this.hooked {
            hook(slf.py(), "shutdown")?.call1((slf, immediate))?;
            return Ok(());
        }
        let mut intr = this.blocking(slf.py())?;
        let removed = with_core!(&this.core, q => q.shutdown_with(immediate, &mut intr))?;
        // Dropped here, with no lock held: a `__del__` may run.
        drop(removed);
        Ok(())
    }

    /// Whether `shutdown()` was called.
    #[getter]
    fn is_shutdown(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let this = slf.get();
        if this.hooked {
            return slf.getattr("_is_shutdown")?.is_truthy();
        }
        Ok(with_core!(&this.core, q => q.is_shutdown()))
    }

    /// The bound set at creation (0 or less: none); may be changed.
    #[getter]
    fn get_maxsize(&self, py: Python<'_>) -> Py<PyAny> {
        self.maxsize.lock().clone_ref(py)
    }

    #[setter]
    fn set_maxsize(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        let count = core_maxsize(value)?;
        let mut intr = this.blocking(slf.py())?;
        with_core!(&this.core, q => q.set_maxsize_with(count, &mut intr))?;
        let old = std::mem::replace(&mut *this.maxsize.lock(), value.clone().unbind());
        drop(old);
        Ok(())
    }

    /// Items put and not yet marked done.
    #[getter]
    fn get_unfinished_tasks(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        if this.hooked {
            return Ok(slf
                .getattr("__dict__")?
                .get_item("unfinished_tasks")?
                .unbind());
        }
        let n = with_core!(&this.core, q => q.unfinished_tasks());
        Ok(n.into_pyobject(slf.py())?.into_any().unbind())
    }

    #[setter]
    fn set_unfinished_tasks(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        if !slf.get().hooked {
            return Err(PyAttributeError::new_err(
                "unfinished_tasks is read-only: it counts put() and task_done() calls",
            ));
        }
        slf.getattr("__dict__")?.set_item("unfinished_tasks", value)
    }

    /// Initialise the storage (a hook for subclasses; the native storage
    /// needs nothing).
    /// Initialise the storage (a hook for subclasses). The plain classes'
    /// native storage needs nothing; on the hook path (see the module docs)
    /// this makes `self.queue` as the stdlib does.
    fn _init(slf: &Bound<'_, Self>, _maxsize: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        if this.hooked {
            hook(slf.py(), "base_init")?.call1((slf, this.kind()))?;
        }
        Ok(())
    }

    /// The number of stored items (a hook for subclasses).
    fn _qsize(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        if this.hooked {
            return Ok(hook(slf.py(), "base_qsize")?.call1((slf,))?.unbind());
        }
        let n = with_core!(&this.core, q => q.len());
        Ok(n.into_pyobject(slf.py())?.into_any().unbind())
    }

    /// Store an item, with no locking, counting or waking (a hook for
    /// subclasses).
    fn _put(slf: &Bound<'_, Self>, item: Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        if this.hooked {
            hook(slf.py(), "base_put")?.call1((slf, this.kind(), item))?;
            return Ok(());
        }
        let mut intr = this.blocking(slf.py())?;
        let item = item.unbind();
        with_core!(&this.core, q => q.store_with(item, &mut intr)).map_err(|(_, e)| e)
    }

    /// Take the next stored item, with no locking or waking (a hook for
    /// subclasses); `IndexError` when there is none, like the stdlib's.
    fn _get(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        if this.hooked {
            return Ok(hook(slf.py(), "base_get")?
                .call1((slf, this.kind()))?
                .unbind());
        }
        let mut intr = this.blocking(slf.py())?;
        match with_core!(&this.core, q => q.take_with(&mut intr))? {
            Some(item) => Ok(item),
            None => Err(PyIndexError::new_err(match this.core {
                Core::Fifo(_) => "pop from an empty deque",
                Core::Lifo(_) => "pop from empty list",
                Core::Priority(..) => "index out of range",
            })),
        }
    }

    #[classmethod]
    fn __class_getitem__(cls: &Bound<'_, PyType>, item: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        generic_alias(cls, item)
    }

    fn __reduce_ex__(slf: &Bound<'_, Self>, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(no_pickle(slf.as_any()))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(m) = self.maxsize.try_lock() {
            visit.call(&*m)?;
        }
        let mut result = Ok(());
        with_core!(&self.core, q => q.try_inspect(|items| {
            items.for_each(&mut |item| {
                if result.is_ok() {
                    result = visit.call(item);
                }
            });
        }));
        result
    }

    fn __clear__(&self) {
        let removed =
            with_core!(&self.core, q => q.shutdown_with(true, &mut tress::Uninterruptible));
        drop(removed);
    }
}

/// `block` for the hook path: as given, `True` when absent.
fn block_object<'py>(py: Python<'py>, block: &Arg<'py>) -> Bound<'py, PyAny> {
    block
        .get()
        .cloned()
        .unwrap_or_else(|| PyBool::new(py, true).to_owned().into_any())
}

/// `types.GenericAlias(cls, item)`, the stdlib queues' `__class_getitem__`.
fn generic_alias(cls: &Bound<'_, PyType>, item: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = cls.py();
    static ALIAS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let alias = ALIAS.import(py, "types", "GenericAlias")?;
    Ok(alias.call1((cls, item))?.unbind())
}

/// `queue.LifoQueue`: the most recently put item comes out first.
#[pyclass(name = "LifoQueue", module = "tress.queue", extends = PyQueue, subclass, frozen)]
pub(crate) struct PyLifoQueue;

#[pymethods]
impl PyLifoQueue {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let core = Core::Lifo(tress::Queue::with_order(Lifo::default(), 0));
        Ok(PyClassInitializer::from(PyQueue::build(cls, core)?).add_subclass(Self))
    }
}

/// `queue.PriorityQueue`: the smallest item (by `<`) comes out first.
#[pyclass(name = "PriorityQueue", module = "tress.queue", extends = PyQueue, subclass, frozen)]
pub(crate) struct PyPriorityQueue;

#[pymethods]
impl PyPriorityQueue {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let comparing = Arc::new(AtomicUsize::new(0));
        let order = py_priority(Arc::clone(&comparing));
        let core = Core::Priority(tress::Queue::with_order(order, 0), comparing);
        Ok(PyClassInitializer::from(PyQueue::build(cls, core)?).add_subclass(Self))
    }
}

/// `queue.SimpleQueue`: an unbounded FIFO with no task tracking; `put`
/// never blocks and is reentrant.
#[pyclass(
    name = "SimpleQueue",
    module = "tress.queue",
    subclass,
    frozen,
    weakref
)]
pub(crate) struct PySimpleQueue {
    inner: tress::SimpleQueue<Item>,
}

#[pymethods]
impl PySimpleQueue {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let own = cls.py().get_type::<PySimpleQueue>();
        let plain_init = cls.getattr("__init__")?.is(&own.getattr("__init__")?);
        if plain_init && (!args.is_empty() || kwargs.is_some_and(|k| !k.is_empty())) {
            return Err(PyTypeError::new_err("SimpleQueue() takes no arguments"));
        }
        Ok(Self {
            inner: tress::SimpleQueue::new(),
        })
    }

    /// Put the item on the queue. `block` and `timeout` are accepted for
    /// compatibility with `Queue.put` and ignored: this never blocks.
    #[pyo3(signature = (item, block=Arg::Missing, timeout=None))]
    #[inline]
    fn put(
        &self,
        item: Bound<'_, PyAny>,
        block: Arg<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let _ = (block, timeout);
        self.inner.put(item.unbind());
        Ok(())
    }

    /// Put an item without blocking (the same as `put`).
    #[inline]
    fn put_nowait(&self, item: Bound<'_, PyAny>) {
        self.inner.put(item.unbind());
    }

    /// Remove and return an item, waiting up to `timeout` seconds (forever
    /// if None) for one when `block` is true; raise `Empty` otherwise.
    #[pyo3(signature = (block=Arg::Missing, timeout=None))]
    #[inline]
    fn get(
        &self,
        py: Python<'_>,
        block: Arg<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Item> {
        let block = PyQueue::truthy(&block)?;
        let deadline = match timeout {
            Some(t) if block => {
                let ns = seconds_to_ns(t, Round::Ceiling)?;
                if ns < 0 {
                    return Err(negative_timeout());
                }
                Some(deadline_ns(ns)?)
            }
            _ => None,
        };
        if let Some(item) = self.inner.try_get() {
            return Ok(item);
        }
        if !block {
            return Err(Empty::new_err(()));
        }
        self.wait_get(py, deadline)
    }

    /// Remove and return an item without blocking (`get(False)`).
    #[inline]
    fn get_nowait(&self) -> PyResult<Item> {
        self.inner.try_get().ok_or_else(|| Empty::new_err(()))
    }

    /// Whether the queue is empty (not reliable once returned).
    fn empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The approximate size of the queue.
    fn qsize(&self) -> usize {
        self.inner.len()
    }

    #[classmethod]
    fn __class_getitem__(cls: &Bound<'_, PyType>, item: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        generic_alias(cls, item)
    }

    fn __reduce_ex__(slf: &Bound<'_, Self>, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(no_pickle(slf.as_any()))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.inner
            .try_inspect(|items| items.iter().try_for_each(|item| visit.call(item)))
            .unwrap_or(Ok(()))
    }

    fn __clear__(&self) {
        let mut removed = Vec::new();
        while let Some(item) = self.inner.try_get() {
            removed.push(item);
        }
        drop(removed);
    }
}

impl PySimpleQueue {
    #[cold]
    fn wait_get(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<Item> {
        match self
            .inner
            .get_with(deadline, &mut Blocking::interruptible(py))?
        {
            Ok(item) => Ok(item),
            Err(_) => Err(Empty::new_err(())),
        }
    }
}
