//! `tress.threading`: Lock, RLock, Condition, Semaphore, BoundedSemaphore,
//! Event and Barrier with the API, errors and edge cases of CPython 3.11's
//! `threading`.
//!
//! Each method converts its arguments, calls the core, converts the result.
//! Fast paths (an uncontended acquire, an event already set) run entirely
//! with the GIL held inside one native call; blocking goes through
//! [`Blocking`], which releases the GIL only while the thread sleeps.

use std::time::Instant;

use pyo3::exceptions::{PyDeprecationWarning, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors;
use crate::wait::{Blocking, LockWait, deadline, lock_args, py_timeout};

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

/// `TypeError: cannot pickle 'tress.X' object`, as the stdlib's locks say.
fn no_pickle(slf: &Bound<'_, PyAny>) -> PyErr {
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
        LockWait::For(seconds) => {
            if lock.try_acquire() {
                return Ok(true);
            }
            lock.acquire_with(deadline(seconds)?, &mut Blocking::interruptible(py))
        }
    }
}

/// Takes a [`tress::RLock`] as `acquire(blocking, timeout)` asks.
#[inline]
fn acquire_rlock(py: Python<'_>, lock: &tress::RLock, wait: LockWait) -> PyResult<bool> {
    let until: Option<Instant> = match wait {
        LockWait::NoWait => return lock.try_acquire().map_err(errors::count_overflow),
        LockWait::Forever => None,
        LockWait::For(seconds) => {
            if lock.try_acquire().map_err(errors::count_overflow)? {
                return Ok(true);
            }
            deadline(seconds)?
        }
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
}

#[pymethods]
impl PyLock {
    #[new]
    fn new() -> Self {
        Self {
            inner: tress::Lock::new(),
        }
    }

    /// Acquire the lock, blocking or non-blocking, with an optional timeout.
    #[pyo3(signature = (blocking=None, timeout=None))]
    #[inline]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if blocking.is_none() && timeout.is_none() {
            if self.inner.try_acquire() {
                return Ok(true);
            }
            return acquire_lock(py, &self.inner, LockWait::Forever);
        }
        acquire_lock(py, &self.inner, lock_args(blocking, timeout)?)
    }

    /// Deprecated alias of `acquire`.
    #[pyo3(signature = (blocking=None, timeout=None))]
    fn acquire_lock(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
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
    fn release(&self) -> PyResult<()> {
        self.inner.release().map_err(errors::not_locked)
    }

    /// Deprecated alias of `release`.
    fn release_lock(&self) -> PyResult<()> {
        self.release()
    }

    #[pyo3(signature = (_exc_type=None, _exc_value=None, _traceback=None))]
    #[inline]
    fn __exit__(
        &self,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.release()
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
}

fn saved_rlock(state: &Bound<'_, PyAny>) -> PyResult<tress::RLockState> {
    let (count, owner): (usize, usize) = state.extract()?;
    Ok(tress::RLockState { count, owner })
}

#[pymethods]
impl PyRLock {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        Self {
            inner: tress::RLock::new(),
        }
    }

    /// Acquire the lock (again, if this thread holds it).
    #[pyo3(signature = (blocking=None, timeout=None))]
    #[inline]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let wait = if blocking.is_none() && timeout.is_none() {
            LockWait::Forever
        } else {
            lock_args(blocking, timeout)?
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
    fn release(&self) -> PyResult<()> {
        self.inner.release().map_err(errors::not_owned)
    }

    #[pyo3(signature = (_exc_type=None, _exc_value=None, _traceback=None))]
    #[inline]
    fn __exit__(
        &self,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.release()
    }

    fn _is_owned(&self) -> bool {
        self.inner.is_owned()
    }

    fn _recursion_count(&self) -> usize {
        self.inner.recursion_count()
    }

    fn _release_save(&self) -> PyResult<(usize, usize)> {
        let s = self.inner.release_save().map_err(errors::not_owned)?;
        Ok((s.count, s.owner))
    }

    fn _acquire_restore(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let saved = saved_rlock(state)?;
        self.inner
            .acquire_restore_with(saved, &mut Blocking::uninterruptible(py))
    }

    fn _at_fork_reinit(&self) {
        self.inner.reset_after_fork();
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
    /// The lock object, as passed (or the default RLock).
    lock_obj: Py<PyAny>,
    /// How to drive it.
    lock: CondLock,
    /// The waiting threads.
    queue: tress::WaitQueue,
}

fn optional_attr(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<Py<PyAny>>> {
    match obj.getattr(name) {
        Ok(a) => Ok(Some(a.unbind())),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(obj.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

impl PyCondition {
    fn is_owned(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.lock {
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
        match &self.lock {
            CondLock::Lock(l) => {
                l.get().inner.release().map_err(errors::not_locked)?;
                Ok(Saved::Lock)
            }
            CondLock::RLock(l) => l
                .get()
                .inner
                .release_save()
                .map(Saved::RLock)
                .map_err(errors::not_owned),
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
        match (&self.lock, saved) {
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
        Ok(match &self.lock {
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
    fn wait_inner(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot wait on un-acquired lock"));
        }
        let until = match timeout {
            None => None,
            Some(t) => Some(deadline(t)?.unwrap_or_else(far_future)),
        };
        let ticket = self.queue.enqueue();
        let saved = self.release_save(py)?;
        let woke = ticket.wait_with(until, &mut Blocking::interruptible(py));
        self.acquire_restore(py, saved)?;
        woke
    }
}

/// A deadline for a timeout too long for `Instant` yet under TIMEOUT_MAX.
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(u64::from(u32::MAX))
}

#[pymethods]
impl PyCondition {
    #[new]
    #[pyo3(signature = (lock=None))]
    fn new(py: Python<'_>, lock: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let lock_obj = match lock {
            Some(l) if !l.is_none() => l.clone(),
            _ => Bound::new(
                py,
                PyRLock {
                    inner: tress::RLock::new(),
                },
            )?
            .into_any(),
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
            queue: tress::WaitQueue::new(),
        })
    }

    /// The underlying lock.
    #[getter]
    fn _lock(&self, py: Python<'_>) -> Py<PyAny> {
        self.lock_obj.clone_ref(py)
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
            let got = match &self.lock {
                CondLock::Lock(l) => acquire_lock(py, &l.get().inner, wait)?,
                CondLock::RLock(l) => acquire_rlock(py, &l.get().inner, wait)?,
                CondLock::Foreign(_) => unreachable!(),
            };
            Ok(got.into_pyobject(py)?.to_owned().into_any().unbind())
        };
        match &self.lock {
            CondLock::Foreign(f) => Ok(f.acquire.bind(py).call(args, kwargs)?.unbind()),
            _ => {
                let get = |i: usize, name: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
                    if let Ok(a) = args.get_item(i) {
                        return Ok(Some(a));
                    }
                    match kwargs {
                        Some(k) => k.get_item(name),
                        None => Ok(None),
                    }
                };
                if args.len() > 2 {
                    return Err(PyTypeError::new_err("acquire() takes at most 2 arguments"));
                }
                let blocking = get(0, "blocking")?;
                let timeout = get(1, "timeout")?;
                native(lock_args(blocking.as_ref(), timeout.as_ref())?)
            }
        }
    }

    /// Release the underlying lock.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        match &self.lock {
            CondLock::Lock(l) => l.get().inner.release().map_err(errors::not_locked),
            CondLock::RLock(l) => l.get().inner.release().map_err(errors::not_owned),
            CondLock::Foreign(f) => f.release.bind(py).call0().map(drop),
        }
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.lock {
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
            CondLock::Foreign(_) => Ok(self.lock_obj.bind(py).call_method0("__enter__")?.unbind()),
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
        match &self.lock {
            CondLock::Foreign(_) => Ok(self
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
        let timeout = py_timeout(timeout)?;
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
        let mut waittime = py_timeout(timeout)?;
        let mut endtime: Option<Instant> = None;
        let mut result = predicate.call0()?;
        while !result.is_truthy()? {
            if let Some(w) = waittime {
                match endtime {
                    None => {
                        endtime = Some(deadline(w)?.unwrap_or_else(far_future));
                    }
                    Some(end) => {
                        let left = end.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        waittime = Some(left.as_secs_f64());
                    }
                }
            }
            self.wait_inner(py, waittime)?;
            result = predicate.call0()?;
        }
        Ok(result.unbind())
    }

    /// Wake up at most `n` threads waiting on this condition.
    #[pyo3(signature = (n=1))]
    fn notify(&self, py: Python<'_>, n: isize) -> PyResult<()> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot notify on un-acquired lock"));
        }
        if n > 0 {
            self.queue.notify(n.unsigned_abs());
        }
        Ok(())
    }

    /// Wake up all threads waiting on this condition.
    fn notify_all(&self, py: Python<'_>) -> PyResult<()> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot notify on un-acquired lock"));
        }
        self.queue.notify_all();
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
            self.lock_obj.bind(py).repr()?,
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
    inner: Sem,
}

impl PySemaphore {
    #[inline]
    fn try_acquire(&self) -> bool {
        match &self.inner {
            Sem::Plain(s) => s.try_acquire(),
            Sem::Bounded(s) => s.try_acquire(),
        }
    }

    fn acquire_until(&self, py: Python<'_>, until: Option<Instant>) -> PyResult<bool> {
        let mut blocking = Blocking::interruptible(py);
        match &self.inner {
            Sem::Plain(s) => s.acquire_with(until, &mut blocking),
            Sem::Bounded(s) => s.acquire_with(until, &mut blocking),
        }
    }

    fn value(&self) -> usize {
        match &self.inner {
            Sem::Plain(s) => s.value(),
            Sem::Bounded(s) => s.value(),
        }
    }
}

#[pymethods]
impl PySemaphore {
    #[new]
    #[pyo3(signature = (value=None))]
    fn new(value: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let v = match value {
            None => 1,
            Some(v) => errors::count_arg(v, "semaphore initial value must be >= 0")?,
        };
        Ok(Self {
            inner: Sem::Plain(tress::Semaphore::new(v)),
        })
    }

    /// Take a permit, waiting (up to `timeout` seconds) while there is none.
    #[pyo3(signature = (blocking=None, timeout=None))]
    #[inline]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let blocking = match blocking {
            None => true,
            Some(b) => b.is_truthy()?,
        };
        let timeout = py_timeout(timeout)?;
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
        let until = match timeout {
            None => None,
            Some(t) => Some(deadline(t)?.unwrap_or_else(far_future)),
        };
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
    #[pyo3(signature = (n=1))]
    #[inline]
    fn release(&self, n: isize) -> PyResult<()> {
        if n < 1 {
            return Err(PyValueError::new_err("n must be one or more"));
        }
        let n = n.unsigned_abs();
        match &self.inner {
            Sem::Plain(s) => s.release(n).map_err(errors::semaphore_overflow),
            Sem::Bounded(s) => s.release(n).map_err(errors::too_many_releases),
        }
    }

    #[pyo3(signature = (_exc_type=None, _exc_value=None, _traceback=None))]
    #[inline]
    fn __exit__(
        &self,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.release(1)
    }

    /// The permits available (read-only; the stdlib's attribute).
    #[getter]
    fn _value(&self) -> usize {
        self.value()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let state = match &slf.get().inner {
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
    #[pyo3(signature = (value=None))]
    fn new(value: Option<&Bound<'_, PyAny>>) -> PyResult<PyClassInitializer<Self>> {
        let v = match value {
            None => 1,
            Some(v) => errors::count_arg(v, "semaphore initial value must be >= 0")?,
        };
        Ok(PyClassInitializer::from(PySemaphore {
            inner: Sem::Bounded(tress::BoundedSemaphore::new(v)),
        })
        .add_subclass(Self))
    }

    /// The initial value, the most permits there can be.
    #[getter]
    fn _initial_value(slf: &Bound<'_, Self>) -> usize {
        match &slf.as_super().get().inner {
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
    fn new() -> Self {
        Self {
            inner: tress::Event::new(),
        }
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
    fn set(&self) {
        self.inner.set();
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
        let until = match py_timeout(timeout)? {
            None => None,
            Some(t) => Some(deadline(t)?.unwrap_or_else(far_future)),
        };
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
    inner: tress::Barrier,
    /// Called by the last thread to arrive, before the others are released.
    action: Option<Py<PyAny>>,
    /// The default timeout of `wait`, in seconds.
    timeout: Option<f64>,
}

#[pymethods]
impl PyBarrier {
    #[new]
    #[pyo3(signature = (parties, action=None, timeout=None))]
    fn new(
        parties: &Bound<'_, PyAny>,
        action: Option<Py<PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let parties = errors::count_arg(parties, "parties must be >= 1")?;
        if parties == 0 {
            return Err(PyValueError::new_err("parties must be >= 1"));
        }
        Ok(Self {
            inner: tress::Barrier::new(parties),
            action,
            timeout: py_timeout(timeout)?,
        })
    }

    /// Wait for the other parties; returns this thread's index in
    /// `range(parties)`. Raises `threading.BrokenBarrierError` when the
    /// barrier is or gets broken.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let timeout = match py_timeout(timeout)? {
            None => self.timeout,
            t => t,
        };
        let until = match timeout {
            None => None,
            Some(t) => Some(deadline(t)?.unwrap_or_else(far_future)),
        };
        let action = self
            .action
            .as_ref()
            .map(|a| move || a.bind(py).call0().map(drop));
        self.inner
            .wait_with_action(until, &mut Blocking::interruptible(py), action)
            .map_err(errors::barrier)
    }

    /// Return the barrier to its empty state; waiting threads get
    /// BrokenBarrierError.
    fn reset(&self, py: Python<'_>) {
        // May wait for an action running (with the GIL) in another thread.
        py.detach(|| self.inner.reset());
    }

    /// Break the barrier: waiting and future `wait` calls raise
    /// BrokenBarrierError until `reset`.
    fn abort(&self, py: Python<'_>) {
        py.detach(|| self.inner.abort());
    }

    /// The number of threads needed to trip the barrier.
    #[getter]
    fn parties(&self) -> usize {
        self.inner.parties()
    }

    /// The number of threads waiting now.
    #[getter]
    fn n_waiting(&self) -> usize {
        self.inner.n_waiting()
    }

    /// Whether the barrier is broken.
    #[getter]
    fn broken(&self) -> bool {
        self.inner.is_broken()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let b = &slf.get().inner;
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
