//! `tress.threading`: Lock, RLock, Condition, Semaphore, BoundedSemaphore,
//! Event and Barrier with the API, errors and edge cases of CPython 3.11's
//! `threading`.
//!
//! Each method converts its arguments, calls the core, converts the result.
//! Fast paths (an uncontended acquire, an event already set) run entirely
//! with the GIL held inside one native call; blocking goes through
//! [`Blocking`], which releases the GIL only while the thread sleeps.

use std::sync::OnceLock;
use std::time::Instant;

use pyo3::exceptions::{PyDeprecationWarning, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::errors;
use crate::wait::{Arg, Blocking, LockWait, lock_args, wait_deadline};

/// Registers the classes on the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLock>()?;
    m.add_class::<PyRLock>()?;
    m.add_class::<PyCondition>()?;
    m.add_class::<PySemaphore>()?;
    m.add_class::<PyBoundedSemaphore>()?;
    m.add_class::<PyEvent>()?;
    m.add_class::<PyBarrier>()?;
    Ok(())
}

/// Wakes the sleepers a release or set left pending, with the GIL let go of
/// for the system call, so a woken thread can take the GIL at once instead of
/// waking into a GIL this thread still holds.
#[inline]
fn wake_detached(py: Python<'_>, pending: Option<tress::PendingWake<'_>>) {
    if let Some(waiters) = pending {
        py.detach(|| waiters.wake());
    }
}

/// Binds `*args, **kwargs` to the parameter `names`, as Python would.
fn bind_args<'py, const N: usize>(
    fname: &str,
    names: [&str; N],
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
    if args.len() > N {
        return Err(PyTypeError::new_err(format!(
            "{fname}() takes at most {N} arguments ({} given)",
            args.len()
        )));
    }
    let mut out: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
    for (slot, a) in out.iter_mut().zip(args.iter()) {
        *slot = Some(a);
    }
    if let Some(kwargs) = kwargs {
        for (k, v) in kwargs.iter() {
            let key: String = k.extract()?;
            let Some(i) = names.iter().position(|n| *n == key) else {
                return Err(PyTypeError::new_err(format!(
                    "{fname}() got an unexpected keyword argument '{key}'"
                )));
            };
            if out[i].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{fname}() got multiple values for argument '{key}'"
                )));
            }
            out[i] = Some(v);
        }
    }
    Ok(out)
}

/// The constructor's arguments: strict for the class itself; for a Python
/// subclass, whose `__init__` may take other arguments, the defaults when
/// they do not fit (its `__init__` then passes the real ones to ours).
fn new_args<'py, const N: usize>(
    cls: &Bound<'py, PyType>,
    own: &Bound<'py, PyType>,
    names: [&str; N],
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
    let fname = own.qualname()?.to_string();
    match bind_args(&fname, names, args, kwargs) {
        Err(_) if !cls.is(own) => Ok(std::array::from_fn(|_| None)),
        r => r,
    }
}

/// A subclass's `__init__` asked for a state other than the one built.
fn init_mismatch(slf: &Bound<'_, PyAny>) -> PyErr {
    let name = slf
        .get_type()
        .qualname()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    PyTypeError::new_err(format!(
        "{name}: tress builds its primitives when they are created, so \
         __init__ cannot change the arguments given to the constructor; \
         pass them to {name}(...) itself"
    ))
}

/// `TypeError: cannot pickle 'tress.X' object`, as the stdlib's locks say.
pub(crate) fn no_pickle(slf: &Bound<'_, PyAny>) -> PyErr {
    let name = slf
        .get_type()
        .qualname()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    PyTypeError::new_err(format!("cannot pickle 'tress.{name}' object"))
}

/// `<module.QualName at 0x…: state>`, the stdlib's repr for its Python-level
/// primitives (subclasses show their own name).
fn state_repr(slf: &Bound<'_, PyAny>, state: &str) -> PyResult<String> {
    let ty = slf.get_type();
    Ok(format!(
        "<{}.{} at {:#x}: {state}>",
        ty.module()?,
        ty.qualname()?,
        slf.as_ptr() as usize
    ))
}

fn deprecated(py: Python<'_>, message: &str) -> PyResult<()> {
    let category = py.get_type::<PyDeprecationWarning>();
    let message = std::ffi::CString::new(message).expect("no NUL in message");
    PyErr::warn(py, &category, &message, 2)
}

/// Takes a [`tress::Lock`] as `acquire(blocking, timeout)` asks.
#[inline]
fn acquire_lock(py: Python<'_>, lock: &tress::Lock, wait: LockWait) -> PyResult<bool> {
    match wait {
        LockWait::NoWait => Ok(lock.try_acquire()),
        LockWait::Forever => lock.acquire_with(None, &mut Blocking::interruptible(py)),
        LockWait::Until(deadline) => {
            lock.acquire_with(Some(deadline), &mut Blocking::interruptible(py))
        }
    }
}

/// Takes a [`tress::RLock`] as `acquire(blocking, timeout)` asks.
#[inline]
fn acquire_rlock(py: Python<'_>, lock: &tress::RLock, wait: LockWait) -> PyResult<bool> {
    let until: Option<Instant> = match wait {
        LockWait::NoWait => return lock.try_acquire().map_err(errors::count_overflow),
        LockWait::Forever => None,
        LockWait::Until(deadline) => Some(deadline),
    };
    lock.acquire_with(until, &mut Blocking::interruptible(py))
        .map_err(|e| e.unwrap_or_else(errors::count_overflow))
}

// ---------------------------------------------------------------- Lock

/// A primitive lock, drop-in for `threading.Lock`: any thread may release it.
#[pyclass(name = "Lock", module = "tress", frozen, weakref)]
pub(crate) struct PyLock {
    /// The core lock.
    pub(crate) inner: tress::Lock,
    /// Wakes of condition waiters, deferred to this lock's next release.
    wakes: tress::WakeList,
}

impl PyLock {
    fn create() -> Self {
        Self {
            inner: tress::Lock::new(),
            wakes: tress::WakeList::new(),
        }
    }

    /// Releases the lock, then wakes the condition waiters notified while
    /// it was held (every release goes through here, or through a condition
    /// wait, which wakes them once it lets go of the GIL).
    #[inline]
    fn unlock(&self, py: Python<'_>) -> PyResult<()> {
        let pending = self.inner.release_pending().map_err(errors::not_locked)?;
        self.wakes.flush();
        wake_detached(py, pending);
        Ok(())
    }
}

#[pymethods]
impl PyLock {
    #[new]
    fn new() -> Self {
        Self::create()
    }

    /// Acquire the lock, blocking or non-blocking, with an optional timeout.
    #[pyo3(signature = (blocking=Arg::Missing, timeout=Arg::Missing))]
    #[inline]
    fn acquire(&self, py: Python<'_>, blocking: Arg<'_>, timeout: Arg<'_>) -> PyResult<bool> {
        if blocking.get().is_none() && timeout.get().is_none() {
            if self.inner.try_acquire() {
                return Ok(true);
            }
            return acquire_lock(py, &self.inner, LockWait::Forever);
        }
        acquire_lock(py, &self.inner, lock_args(blocking.get(), timeout.get())?)
    }

    /// Deprecated alias of `acquire`.
    #[pyo3(signature = (blocking=Arg::Missing, timeout=Arg::Missing))]
    fn acquire_lock(&self, py: Python<'_>, blocking: Arg<'_>, timeout: Arg<'_>) -> PyResult<bool> {
        self.acquire(py, blocking, timeout)
    }

    #[inline]
    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        if self.inner.try_acquire() {
            return Ok(true);
        }
        acquire_lock(py, &self.inner, LockWait::Forever)
    }

    /// Release the lock; any thread may. RuntimeError if it is not locked.
    #[inline]
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.unlock(py)
    }

    /// Deprecated alias of `release`.
    fn release_lock(&self, py: Python<'_>) -> PyResult<()> {
        self.unlock(py)
    }

    #[pyo3(signature = (_exc_type=None, _exc_value=None, _traceback=None))]
    #[inline]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.unlock(py)
    }

    /// Whether the lock is held.
    fn locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Deprecated alias of `locked`.
    fn locked_lock(&self) -> bool {
        self.locked()
    }

    /// Reset to unlocked in a child after fork (used by `threading`).
    fn _at_fork_reinit(&self) {
        self.inner.reset_after_fork();
        self.wakes.flush();
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let state = if slf.get().inner.is_locked() {
            "locked"
        } else {
            "unlocked"
        };
        format!(
            "<{state} tress.Lock object at {:#x}>",
            slf.as_ptr() as usize
        )
    }

    fn __reduce_ex__(slf: &Bound<'_, Self>, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(no_pickle(slf.as_any()))
    }
}

// ---------------------------------------------------------------- RLock

/// A reentrant lock, drop-in for `threading.RLock`: only its owner releases it.
#[pyclass(name = "RLock", module = "tress", frozen, weakref)]
pub(crate) struct PyRLock {
    /// The core lock.
    pub(crate) inner: tress::RLock,
    /// Wakes of condition waiters, deferred to this lock's release.
    wakes: tress::WakeList,
}

impl PyRLock {
    fn create() -> Self {
        Self {
            inner: tress::RLock::new(),
            wakes: tress::WakeList::new(),
        }
    }

    /// Releases one level; once the lock is free, wakes the condition
    /// waiters notified while it was held.
    #[inline]
    fn unlock(&self, py: Python<'_>) -> PyResult<()> {
        let pending = self.inner.release_pending().map_err(errors::not_owned)?;
        if !self.inner.is_owned() {
            self.wakes.flush();
        }
        wake_detached(py, pending);
        Ok(())
    }

    /// Releases every level, then wakes deferred waiters.
    fn unlock_save(&self) -> PyResult<tress::RLockState> {
        let saved = self.inner.release_save().map_err(errors::not_owned)?;
        self.wakes.flush();
        Ok(saved)
    }
}

fn saved_rlock(state: &Bound<'_, PyAny>) -> PyResult<tress::RLockState> {
    let tuple = state.cast::<PyTuple>().map_err(|_| {
        PyTypeError::new_err(format!(
            "_acquire_restore() argument 1 must be tuple, not {}",
            state
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    if tuple.len() != 2 {
        return Err(PyTypeError::new_err(format!(
            "_acquire_restore() argument 1 must be sequence of length 2, not {}",
            tuple.len()
        )));
    }
    let (count, owner): (usize, usize) = tuple.extract()?;
    Ok(tress::RLockState { count, owner })
}

#[pymethods]
impl PyRLock {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        Self::create()
    }

    /// Acquire the lock (again, if this thread holds it).
    #[pyo3(signature = (blocking=Arg::Missing, timeout=Arg::Missing))]
    #[inline]
    fn acquire(&self, py: Python<'_>, blocking: Arg<'_>, timeout: Arg<'_>) -> PyResult<bool> {
        let wait = if blocking.get().is_none() && timeout.get().is_none() {
            LockWait::Forever
        } else {
            lock_args(blocking.get(), timeout.get())?
        };
        if let LockWait::Forever = wait
            && self.inner.try_acquire().map_err(errors::count_overflow)?
        {
            return Ok(true);
        }
        acquire_rlock(py, &self.inner, wait)
    }

    #[inline]
    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        if self.inner.try_acquire().map_err(errors::count_overflow)? {
            return Ok(true);
        }
        acquire_rlock(py, &self.inner, LockWait::Forever)
    }

    /// Release one level. RuntimeError unless the calling thread owns it.
    #[inline]
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.unlock(py)
    }

    #[pyo3(signature = (_exc_type=None, _exc_value=None, _traceback=None))]
    #[inline]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.unlock(py)
    }

    fn _is_owned(&self) -> bool {
        self.inner.is_owned()
    }

    fn _recursion_count(&self) -> usize {
        self.inner.recursion_count()
    }

    fn _release_save(&self) -> PyResult<(usize, usize)> {
        let s = self.unlock_save()?;
        Ok((s.count, s.owner))
    }

    fn _acquire_restore(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let saved = saved_rlock(state)?;
        self.inner
            .acquire_restore_with(saved, &mut Blocking::uninterruptible(py))
    }

    fn _at_fork_reinit(&self) {
        self.inner.reset_after_fork();
        self.wakes.flush();
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let inner = &slf.get().inner;
        let count = inner.count();
        let state = if count > 0 { "locked" } else { "unlocked" };
        format!(
            "<{state} tress.RLock object owner={} count={count} at {:#x}>",
            inner.owner(),
            slf.as_ptr() as usize
        )
    }

    fn __reduce_ex__(slf: &Bound<'_, Self>, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(no_pickle(slf.as_any()))
    }
}

// ---------------------------------------------------------------- Condition

/// A lock that is not tress's: driven through the stdlib's protocol.
struct ForeignLock {
    acquire: Py<PyAny>,
    release: Py<PyAny>,
    release_save: Option<Py<PyAny>>,
    acquire_restore: Option<Py<PyAny>>,
    is_owned: Option<Py<PyAny>>,
}

/// The lock under a condition.
enum CondLock {
    Lock(Py<PyLock>),
    RLock(Py<PyRLock>),
    Foreign(ForeignLock),
}

/// What a condition's `_release_save` returned, for `_acquire_restore`.
enum Saved {
    Lock,
    RLock(tress::RLockState),
    Foreign(Py<PyAny>),
}

/// A condition variable, drop-in for `threading.Condition`: over a tress
/// Lock or RLock natively, over any other lock through its methods.
#[pyclass(name = "Condition", module = "tress", frozen, subclass, weakref)]
pub(crate) struct PyCondition {
    /// The lock; set by `__new__`, or for a Python subclass by `__init__`
    /// (which may take other arguments than the constructor), or on first
    /// use.
    cell: OnceLock<CondState>,
    /// The waiting threads.
    queue: tress::WaitQueue,
}

/// A condition's lock.
struct CondState {
    /// The lock object, as passed (or the default RLock).
    lock_obj: Py<PyAny>,
    /// How to drive it.
    lock: CondLock,
}

impl CondState {
    fn new(py: Python<'_>, lock: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let lock_obj = match lock {
            Some(l) if !l.is_none() => l.clone(),
            _ => Bound::new(py, PyRLock::create())?.into_any(),
        };
        let lock = if let Ok(l) = lock_obj.cast_exact::<PyLock>() {
            CondLock::Lock(l.clone().unbind())
        } else if let Ok(l) = lock_obj.cast_exact::<PyRLock>() {
            CondLock::RLock(l.clone().unbind())
        } else {
            CondLock::Foreign(ForeignLock {
                acquire: lock_obj.getattr("acquire")?.unbind(),
                release: lock_obj.getattr("release")?.unbind(),
                release_save: optional_attr(&lock_obj, "_release_save")?,
                acquire_restore: optional_attr(&lock_obj, "_acquire_restore")?,
                is_owned: optional_attr(&lock_obj, "_is_owned")?,
            })
        };
        Ok(Self {
            lock_obj: lock_obj.unbind(),
            lock,
        })
    }
}

fn optional_attr(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<Py<PyAny>>> {
    match obj.getattr(name) {
        Ok(a) => Ok(Some(a.unbind())),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(obj.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

impl PyCondition {
    /// A condition over a new RLock, as `threading.Condition()`: what a
    /// future's `_condition` is (`tress.futures`).
    pub(crate) fn with_rlock(py: Python<'_>) -> PyResult<Self> {
        Ok(Self {
            cell: OnceLock::from(CondState::new(py, None)?),
            queue: tress::WaitQueue::new(),
        })
    }

    /// `with cond:` from Rust: takes the lock (interruptible, the GIL let go
    /// while it waits).
    pub(crate) fn lock_native(&self, py: Python<'_>) -> PyResult<()> {
        self.__enter__(py).map(drop)
    }

    /// Lets go of the lock taken by [`lock_native`](Self::lock_native).
    pub(crate) fn unlock_native(&self, py: Python<'_>) -> PyResult<()> {
        self.release(py)
    }

    /// `notify_all()` from Rust, the lock held.
    pub(crate) fn notify_all_native(&self, py: Python<'_>) -> PyResult<()> {
        self.notify_all(py)
    }

    /// `wait()` from Rust, the lock held: until notified or `until`; the
    /// lock is held again on return, whatever the outcome.
    pub(crate) fn wait_native(&self, py: Python<'_>, until: Option<Instant>) -> PyResult<bool> {
        self.wait_until(py, until)
    }

    /// The lock, made (a new RLock) if no constructor set it.
    #[inline]
    fn st(&self, py: Python<'_>) -> &CondState {
        self.cell
            .get_or_init(|| CondState::new(py, None).expect("creating a tress RLock cannot fail"))
    }

    fn is_owned(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.st(py).lock {
            CondLock::Lock(l) => Ok(l.get().inner.is_locked()),
            CondLock::RLock(l) => Ok(l.get().inner.is_owned()),
            CondLock::Foreign(f) => match &f.is_owned {
                Some(is_owned) => is_owned.bind(py).call0()?.is_truthy(),
                None => {
                    // The stdlib's fallback: a lock we can take is not ours.
                    if f.acquire.bind(py).call1((false,))?.is_truthy()? {
                        f.release.bind(py).call0()?;
                        Ok(false)
                    } else {
                        Ok(true)
                    }
                }
            },
        }
    }

    fn release_save(&self, py: Python<'_>) -> PyResult<Saved> {
        match &self.st(py).lock {
            CondLock::Lock(l) => {
                l.get().unlock(py)?;
                Ok(Saved::Lock)
            }
            CondLock::RLock(l) => l.get().unlock_save().map(Saved::RLock),
            CondLock::Foreign(f) => match &f.release_save {
                Some(rs) => Ok(Saved::Foreign(rs.bind(py).call0()?.unbind())),
                None => {
                    f.release.bind(py).call0()?;
                    Ok(Saved::Foreign(py.None()))
                }
            },
        }
    }

    fn acquire_restore(&self, py: Python<'_>, saved: Saved) -> PyResult<()> {
        match (&self.st(py).lock, saved) {
            (CondLock::Lock(l), _) => l
                .get()
                .inner
                .acquire_with(None, &mut Blocking::uninterruptible(py))
                .map(drop),
            (CondLock::RLock(l), Saved::RLock(s)) => l
                .get()
                .inner
                .acquire_restore_with(s, &mut Blocking::uninterruptible(py)),
            (CondLock::Foreign(f), Saved::Foreign(s)) => {
                match &f.acquire_restore {
                    Some(ar) => ar.bind(py).call1((s,))?,
                    None => f.acquire.bind(py).call0()?,
                };
                Ok(())
            }
            _ => Err(PyTypeError::new_err("saved state of another lock")),
        }
    }

    fn saved_from_py(&self, state: &Bound<'_, PyAny>) -> PyResult<Saved> {
        Ok(match &self.st(state.py()).lock {
            CondLock::Lock(_) => Saved::Lock,
            CondLock::RLock(_) => Saved::RLock(saved_rlock(state)?),
            CondLock::Foreign(_) => Saved::Foreign(state.clone().unbind()),
        })
    }

    fn saved_to_py(py: Python<'_>, saved: Saved) -> PyResult<Py<PyAny>> {
        Ok(match saved {
            Saved::Lock => py.None(),
            Saved::RLock(s) => (s.count, s.owner).into_pyobject(py)?.into_any().unbind(),
            Saved::Foreign(s) => s,
        })
    }

    /// The body of `wait`: the caller's timeout already parsed.
    fn wait_inner(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot wait on un-acquired lock"));
        }
        let until = wait_deadline(timeout)?;
        self.wait_until(py, until)
    }

    /// Releases the lock, waits until notified or `until`, retakes the lock.
    fn wait_until(&self, py: Python<'_>, until: Option<Instant>) -> PyResult<bool> {
        let ticket = self.queue.enqueue();
        // A native lock is released without waking the waiters this thread
        // notified: they are woken once it has let go of the GIL as well
        // (right before it sleeps), so they wake to a free lock and GIL.
        let (saved, wakes) = match &self.st(py).lock {
            CondLock::Lock(l) => {
                let l = l.get();
                l.inner.release().map_err(errors::not_locked)?;
                (Saved::Lock, Some(&l.wakes))
            }
            CondLock::RLock(l) => {
                let l = l.get();
                let s = l.inner.release_save().map_err(errors::not_owned)?;
                (Saved::RLock(s), Some(&l.wakes))
            }
            CondLock::Foreign(_) => (self.release_save(py)?, None),
        };
        let woke = ticket.wait_with(until, &mut Blocking::interruptible(py).waking(wakes));
        if let Some(wakes) = wakes {
            // In case the wait never slept.
            wakes.flush();
        }
        self.acquire_restore(py, saved)?;
        woke
    }
}

/// How many waiters `notify(n)` wakes: as `threading.Condition`'s loop
/// `while waiters and n > 0: ...; n -= 1`, for any number `n`.
fn notify_count(n: &Bound<'_, PyAny>) -> PyResult<usize> {
    if let Ok(i) = n.extract::<i64>() {
        return Ok(usize::try_from(i.max(0)).unwrap_or(usize::MAX));
    }
    if !n.gt(0)? {
        return Ok(0);
    }
    if let Ok(f) = n.extract::<f64>()
        && f.is_finite()
    {
        return Ok(f.ceil().min(usize::MAX as f64) as usize);
    }
    Ok(usize::MAX)
}

#[pymethods]
impl PyCondition {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let py = cls.py();
        let own = py.get_type::<Self>();
        let [lock] = new_args(cls, &own, ["lock"], args, kwargs)?;
        let cell = OnceLock::new();
        if cls.is(&own) {
            let _ = cell.set(CondState::new(py, lock.as_ref())?);
        }
        Ok(Self {
            cell,
            queue: tress::WaitQueue::new(),
        })
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let [lock] = bind_args("Condition", ["lock"], args, kwargs)?;
        let this = slf.get();
        if this.cell.get().is_none() {
            let _ = this.cell.set(CondState::new(py, lock.as_ref())?);
            return Ok(());
        }
        match lock {
            Some(l) if !l.is_none() && !l.is(this.st(py).lock_obj.bind(py)) => {
                Err(init_mismatch(slf.as_any()))
            }
            _ => Ok(()),
        }
    }

    /// The underlying lock.
    #[getter]
    fn _lock(&self, py: Python<'_>) -> Py<PyAny> {
        self.st(py).lock_obj.clone_ref(py)
    }

    /// Acquire the underlying lock (its `acquire` signature).
    #[pyo3(signature = (*args, **kwargs))]
    fn acquire(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let native = |wait: LockWait| -> PyResult<Py<PyAny>> {
            let got = match &self.st(py).lock {
                CondLock::Lock(l) => acquire_lock(py, &l.get().inner, wait)?,
                CondLock::RLock(l) => acquire_rlock(py, &l.get().inner, wait)?,
                CondLock::Foreign(_) => unreachable!(),
            };
            Ok(got.into_pyobject(py)?.to_owned().into_any().unbind())
        };
        match &self.st(py).lock {
            CondLock::Foreign(f) => Ok(f.acquire.bind(py).call(args, kwargs)?.unbind()),
            _ => {
                let [blocking, timeout] =
                    bind_args("acquire", ["blocking", "timeout"], args, kwargs)?;
                native(lock_args(blocking.as_ref(), timeout.as_ref())?)
            }
        }
    }

    /// Release the underlying lock.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        match &self.st(py).lock {
            CondLock::Lock(l) => l.get().unlock(py),
            CondLock::RLock(l) => l.get().unlock(py),
            CondLock::Foreign(f) => f.release.bind(py).call0().map(drop),
        }
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.st(py).lock {
            CondLock::Lock(l) => {
                let inner = &l.get().inner;
                let got = inner.try_acquire() || acquire_lock(py, inner, LockWait::Forever)?;
                Ok(got.into_pyobject(py)?.to_owned().into_any().unbind())
            }
            CondLock::RLock(l) => {
                let inner = &l.get().inner;
                let got = inner.try_acquire().map_err(errors::count_overflow)?
                    || acquire_rlock(py, inner, LockWait::Forever)?;
                Ok(got.into_pyobject(py)?.to_owned().into_any().unbind())
            }
            CondLock::Foreign(_) => Ok(self
                .st(py)
                .lock_obj
                .bind(py)
                .call_method0("__enter__")?
                .unbind()),
        }
    }

    #[pyo3(signature = (exc_type=None, exc_value=None, traceback=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc_value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match &self.st(py).lock {
            CondLock::Foreign(_) => Ok(self
                .st(py)
                .lock_obj
                .bind(py)
                .call_method1("__exit__", (exc_type, exc_value, traceback))?
                .unbind()),
            _ => {
                self.release(py)?;
                Ok(py.None())
            }
        }
    }

    fn _is_owned(&self, py: Python<'_>) -> PyResult<bool> {
        self.is_owned(py)
    }

    fn _release_save(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let saved = self.release_save(py)?;
        Self::saved_to_py(py, saved)
    }

    fn _acquire_restore(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let saved = self.saved_from_py(state)?;
        self.acquire_restore(py, saved)
    }

    /// Wait until notified or until the timeout (seconds) passes; the lock is
    /// released meanwhile and held again on return. Returns False on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        self.wait_inner(py, timeout)
    }

    /// Wait until `predicate()` is true, for at most `timeout` seconds in
    /// all; returns the predicate's last value.
    #[pyo3(signature = (predicate, timeout=None))]
    fn wait_for(
        &self,
        py: Python<'_>,
        predicate: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        // As threading.Condition.wait_for: the first wait gets the whole
        // timeout, later ones what is left; a spent timeout ends the loop.
        let timeout = timeout.filter(|t| !t.is_none());
        let mut until: Option<Option<Instant>> = None;
        let mut result = predicate.call0()?;
        while !result.is_truthy()? {
            let deadline = match until {
                Some(d) => {
                    if d.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    d
                }
                None => {
                    if !self.is_owned(py)? {
                        return Err(PyRuntimeError::new_err("cannot wait on un-acquired lock"));
                    }
                    let d = wait_deadline(timeout)?;
                    until = Some(d);
                    d
                }
            };
            if !self.is_owned(py)? {
                return Err(PyRuntimeError::new_err("cannot wait on un-acquired lock"));
            }
            self.wait_until(py, deadline)?;
            result = predicate.call0()?;
        }
        Ok(result.unbind())
    }

    /// Wake up at most `n` threads waiting on this condition.
    #[pyo3(signature = (n=None))]
    fn notify(&self, py: Python<'_>, n: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot notify on un-acquired lock"));
        }
        let n = match n {
            None => 1,
            Some(n) => notify_count(n)?,
        };
        if n > 0 {
            // Waiters of a tress lock are woken when it is released, so they
            // do not wake into the lock (and GIL) this thread still holds.
            match &self.st(py).lock {
                CondLock::Lock(l) => {
                    let l = l.get();
                    self.queue
                        .notify_deferred(n, &l.wakes, || l.inner.is_locked());
                }
                CondLock::RLock(l) => {
                    let l = l.get();
                    self.queue
                        .notify_deferred(n, &l.wakes, || l.inner.is_locked());
                }
                CondLock::Foreign(_) => {
                    self.queue.notify(n);
                }
            }
        }
        Ok(())
    }

    /// Wake up all threads waiting on this condition.
    fn notify_all(&self, py: Python<'_>) -> PyResult<()> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot notify on un-acquired lock"));
        }
        match &self.st(py).lock {
            CondLock::Lock(l) => {
                let l = l.get();
                self.queue
                    .notify_all_deferred(&l.wakes, || l.inner.is_locked());
            }
            CondLock::RLock(l) => {
                let l = l.get();
                self.queue
                    .notify_all_deferred(&l.wakes, || l.inner.is_locked());
            }
            CondLock::Foreign(_) => {
                self.queue.notify_all();
            }
        }
        Ok(())
    }

    /// Deprecated alias of `notify_all`.
    #[allow(non_snake_case)]
    fn notifyAll(&self, py: Python<'_>) -> PyResult<()> {
        deprecated(py, "notifyAll() is deprecated, use notify_all() instead")?;
        self.notify_all(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<Condition({}, {})>",
            self.st(py).lock_obj.bind(py).repr()?,
            self.queue.len()
        ))
    }

    fn __reduce_ex__(slf: &Bound<'_, Self>, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(no_pickle(slf.as_any()))
    }
}

// ---------------------------------------------------------------- Semaphore

/// The core semaphore behind a `Semaphore` or a `BoundedSemaphore`.
enum Sem {
    Plain(tress::Semaphore),
    Bounded(tress::BoundedSemaphore),
}

/// A counting semaphore, drop-in for `threading.Semaphore`.
#[pyclass(name = "Semaphore", module = "tress", frozen, subclass, weakref)]
pub(crate) struct PySemaphore {
    /// The semaphore and the value it was created with; set by `__new__`,
    /// or for a Python subclass by `__init__` (which may take other
    /// arguments than the constructor), or on first use.
    cell: OnceLock<(Sem, usize)>,
    /// Whether this is a `BoundedSemaphore`.
    bounded: bool,
}

fn initial_value(value: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
    match value {
        None => Ok(1),
        Some(v) => errors::count_arg(v, "semaphore initial value must be >= 0"),
    }
}

impl PySemaphore {
    fn build(bounded: bool, v: usize) -> (Sem, usize) {
        let sem = if bounded {
            Sem::Bounded(tress::BoundedSemaphore::new(v))
        } else {
            Sem::Plain(tress::Semaphore::new(v))
        };
        (sem, v)
    }

    fn created(bounded: bool, cls: &Bound<'_, PyType>, own: &Bound<'_, PyType>, v: usize) -> Self {
        let cell = OnceLock::new();
        if cls.is(own) {
            let _ = cell.set(Self::build(bounded, v));
        }
        Self { cell, bounded }
    }

    #[inline]
    fn sem(&self) -> &Sem {
        &self.cell.get_or_init(|| Self::build(self.bounded, 1)).0
    }

    #[inline]
    fn try_acquire(&self) -> bool {
        match self.sem() {
            Sem::Plain(s) => s.try_acquire(),
            Sem::Bounded(s) => s.try_acquire(),
        }
    }

    fn acquire_until(&self, py: Python<'_>, until: Option<Instant>) -> PyResult<bool> {
        let mut blocking = Blocking::interruptible(py);
        match self.sem() {
            Sem::Plain(s) => s.acquire_with(until, &mut blocking),
            Sem::Bounded(s) => s.acquire_with(until, &mut blocking),
        }
    }

    fn value(&self) -> usize {
        match self.sem() {
            Sem::Plain(s) => s.value(),
            Sem::Bounded(s) => s.value(),
        }
    }
}

#[pymethods]
impl PySemaphore {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let own = cls.py().get_type::<Self>();
        let [value] = new_args(cls, &own, ["value"], args, kwargs)?;
        let v = initial_value(value.as_ref())?;
        Ok(Self::created(false, cls, &own, v))
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let [value] = bind_args("Semaphore", ["value"], args, kwargs)?;
        let v = initial_value(value.as_ref())?;
        let this = slf.get();
        let (_, initial) = this.cell.get_or_init(|| Self::build(this.bounded, v));
        if *initial != v {
            return Err(init_mismatch(slf.as_any()));
        }
        Ok(())
    }

    /// Take a permit, waiting (up to `timeout` seconds) while there is none.
    #[pyo3(signature = (blocking=Arg::Missing, timeout=None))]
    #[inline]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Arg<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        // `threading.Semaphore` tests `not blocking`: any object, None too.
        let blocking = match blocking.get() {
            None => true,
            Some(b) => b.is_truthy()?,
        };
        let timeout = timeout.filter(|t| !t.is_none());
        if !blocking && timeout.is_some() {
            return Err(PyValueError::new_err(
                "can't specify timeout for non-blocking acquire",
            ));
        }
        if self.try_acquire() {
            return Ok(true);
        }
        if !blocking {
            return Ok(false);
        }
        let until = wait_deadline(timeout)?;
        self.acquire_until(py, until)
    }

    #[inline]
    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        if self.try_acquire() {
            return Ok(true);
        }
        self.acquire_until(py, None)
    }

    /// Give back `n` permits, waking up to `n` waiting threads.
    #[pyo3(signature = (n=None))]
    #[inline]
    fn release(&self, py: Python<'_>, n: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let n = match n {
            None => 1,
            Some(n) => match n.extract::<i64>() {
                Ok(v) if v >= 1 => v.unsigned_abs() as usize,
                Ok(_) => return Err(PyValueError::new_err("n must be one or more")),
                Err(e) => {
                    if n.lt(1)? {
                        return Err(PyValueError::new_err("n must be one or more"));
                    }
                    if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(n.py()) {
                        return Err(errors::semaphore_overflow(tress::CountOverflow));
                    }
                    return Err(e);
                }
            },
        };
        let pending = match self.sem() {
            Sem::Plain(s) => s.release_pending(n).map_err(errors::semaphore_overflow)?,
            Sem::Bounded(s) => s.release_pending(n).map_err(errors::too_many_releases)?,
        };
        wake_detached(py, pending);
        Ok(())
    }

    #[pyo3(signature = (_exc_type=None, _exc_value=None, _traceback=None))]
    #[inline]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.release(py, None)
    }

    /// The permits available (read-only; the stdlib's attribute).
    #[getter]
    fn _value(&self) -> usize {
        self.value()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let state = match slf.get().sem() {
            Sem::Plain(s) => format!("value={}", s.value()),
            Sem::Bounded(s) => format!("value={}/{}", s.value(), s.bound()),
        };
        state_repr(slf.as_any(), &state)
    }

    fn __reduce_ex__(slf: &Bound<'_, Self>, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(no_pickle(slf.as_any()))
    }
}

/// A semaphore that cannot be released past its initial value, drop-in for
/// `threading.BoundedSemaphore` (and, like it, a `Semaphore` subclass).
#[pyclass(name = "BoundedSemaphore", module = "tress", frozen, subclass, extends = PySemaphore)]
pub(crate) struct PyBoundedSemaphore;

#[pymethods]
impl PyBoundedSemaphore {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let own = cls.py().get_type::<Self>();
        let [value] = new_args(cls, &own, ["value"], args, kwargs)?;
        let v = initial_value(value.as_ref())?;
        Ok(PyClassInitializer::from(PySemaphore::created(true, cls, &own, v)).add_subclass(Self))
    }

    /// The initial value, the most permits there can be.
    #[getter]
    fn _initial_value(slf: &Bound<'_, Self>) -> usize {
        match slf.as_super().get().sem() {
            Sem::Bounded(s) => s.bound(),
            Sem::Plain(s) => s.value(),
        }
    }
}

// ---------------------------------------------------------------- Event

/// A flag threads wait for, drop-in for `threading.Event`.
#[pyclass(name = "Event", module = "tress", frozen, subclass, weakref)]
pub(crate) struct PyEvent {
    inner: tress::Event,
}

#[pymethods]
impl PyEvent {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        new_args(cls, &cls.py().get_type::<Self>(), [], args, kwargs)?;
        Ok(Self {
            inner: tress::Event::new(),
        })
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __init__(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        bind_args("Event", [], args, kwargs).map(drop)
    }

    /// Whether the flag is set.
    #[inline]
    fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    /// Deprecated alias of `is_set`.
    #[allow(non_snake_case)]
    fn isSet(&self, py: Python<'_>) -> PyResult<bool> {
        deprecated(py, "isSet() is deprecated, use is_set() instead")?;
        Ok(self.is_set())
    }

    /// Set the flag and wake every waiting thread.
    #[inline]
    fn set(&self, py: Python<'_>) {
        wake_detached(py, self.inner.set_pending());
    }

    /// Clear the flag.
    #[inline]
    fn clear(&self) {
        self.inner.clear();
    }

    /// Wait until the flag is set or `timeout` seconds pass; returns the flag
    /// (True also when it was set and cleared again before this thread woke).
    #[pyo3(signature = (timeout=None))]
    #[inline]
    fn wait(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        if self.inner.is_set() {
            return Ok(true);
        }
        let until = wait_deadline(timeout)?;
        self.inner
            .wait_with(until, &mut Blocking::interruptible(py))
    }

    /// Nothing to reset: an event holds no lock (kept for `threading`'s API).
    fn _at_fork_reinit(&self) {}

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let state = if slf.get().inner.is_set() {
            "set"
        } else {
            "unset"
        };
        state_repr(slf.as_any(), state)
    }

    fn __reduce_ex__(slf: &Bound<'_, Self>, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(no_pickle(slf.as_any()))
    }
}

// ---------------------------------------------------------------- Barrier

/// A rendezvous of `parties` threads, drop-in for `threading.Barrier`.
#[pyclass(name = "Barrier", module = "tress", frozen, subclass, weakref)]
pub(crate) struct PyBarrier {
    /// Set by `__new__`, or for a Python subclass by `__init__` (which may
    /// take other arguments than the constructor).
    cell: OnceLock<BarrierState>,
}

struct BarrierState {
    inner: tress::Barrier,
    /// Called by the last thread to arrive, before the others are released.
    action: Option<Py<PyAny>>,
    /// The default timeout of `wait`, in seconds (None: no timeout).
    timeout: Option<Py<PyAny>>,
}

impl BarrierState {
    fn new(
        parties: &Bound<'_, PyAny>,
        action: Option<Bound<'_, PyAny>>,
        timeout: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let parties = errors::count_arg(parties, "parties must be >= 1")?;
        if parties == 0 {
            return Err(PyValueError::new_err("parties must be >= 1"));
        }
        Ok(Self {
            inner: tress::Barrier::new(parties),
            action: action.filter(|a| !a.is_none()).map(Bound::unbind),
            timeout: timeout.filter(|t| !t.is_none()).map(Bound::unbind),
        })
    }
}

impl PyBarrier {
    /// The barrier; one that no constructor set up is an error.
    #[inline]
    fn st(&self) -> PyResult<&BarrierState> {
        self.cell
            .get()
            .ok_or_else(|| PyTypeError::new_err("Barrier.__init__() was not called with 'parties'"))
    }
}

#[pymethods]
impl PyBarrier {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        cls: &Bound<'_, PyType>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let own = cls.py().get_type::<Self>();
        let names = ["parties", "action", "timeout"];
        let [parties, action, timeout] = new_args(cls, &own, names, args, kwargs)?;
        let cell = OnceLock::new();
        match parties {
            Some(p) if cls.is(&own) => {
                let _ = cell.set(BarrierState::new(&p, action, timeout)?);
            }
            Some(_) => {}
            None if cls.is(&own) => {
                return Err(PyTypeError::new_err(
                    "Barrier() missing 1 required positional argument: 'parties'",
                ));
            }
            None => {}
        }
        Ok(Self { cell })
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let names = ["parties", "action", "timeout"];
        let [parties, action, timeout] = bind_args("Barrier", names, args, kwargs)?;
        let this = slf.get();
        let Some(parties) = parties else {
            return Err(PyTypeError::new_err(
                "Barrier.__init__() missing 1 required positional argument: 'parties'",
            ));
        };
        match this.cell.get() {
            None => {
                let _ = this.cell.set(BarrierState::new(&parties, action, timeout)?);
                Ok(())
            }
            Some(st) if parties.extract::<usize>().ok() == Some(st.inner.parties()) => Ok(()),
            Some(_) => Err(init_mismatch(slf.as_any())),
        }
    }

    /// Wait for the other parties; returns this thread's index in
    /// `range(parties)`. Raises `threading.BrokenBarrierError` when the
    /// barrier is or gets broken.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let st = self.st()?;
        let default = st.timeout.as_ref().map(|t| t.bind(py));
        let timeout = timeout.filter(|t| !t.is_none()).or(default);
        // As CPython, the timeout is looked at only by a thread that waits.
        let until = || wait_deadline(timeout);
        let action = st
            .action
            .as_ref()
            .map(|a| move || a.bind(py).call0().map(drop));
        st.inner
            .wait_with_action_lazy(until, &mut Blocking::interruptible(py), action)
            .map_err(errors::barrier)
    }

    /// Return the barrier to its empty state; waiting threads get
    /// BrokenBarrierError.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        let inner = &self.st()?.inner;
        // May wait for an action running (with the GIL) in another thread.
        py.detach(|| inner.reset());
        Ok(())
    }

    /// Break the barrier: waiting and future `wait` calls raise
    /// BrokenBarrierError until `reset`.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        let inner = &self.st()?.inner;
        py.detach(|| inner.abort());
        Ok(())
    }

    /// The number of threads needed to trip the barrier.
    #[getter]
    fn parties(&self) -> PyResult<usize> {
        Ok(self.st()?.inner.parties())
    }

    /// The number of threads waiting now.
    #[getter]
    fn n_waiting(&self) -> PyResult<usize> {
        Ok(self.st()?.inner.n_waiting())
    }

    /// Whether the barrier is broken.
    #[getter]
    fn broken(&self) -> PyResult<bool> {
        Ok(self.st()?.inner.is_broken())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let b = &slf.get().st()?.inner;
        if b.is_broken() {
            return state_repr(slf.as_any(), "broken");
        }
        state_repr(
            slf.as_any(),
            &format!("waiters={}/{}", b.n_waiting(), b.parties()),
        )
    }

    fn __reduce_ex__(slf: &Bound<'_, Self>, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(no_pickle(slf.as_any()))
    }
}
