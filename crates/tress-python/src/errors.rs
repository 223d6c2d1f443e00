//! Every mapping from core errors to Python exceptions, in one place.

use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

pyo3::import_exception!(threading, BrokenBarrierError);

/// `Lock.release()` on an unlocked lock.
pub(crate) fn not_locked(_: tress::NotLocked) -> PyErr {
    PyRuntimeError::new_err("release unlocked lock")
}

/// Releasing or saving an `RLock` the caller does not own.
pub(crate) fn not_owned(_: tress::NotOwned) -> PyErr {
    PyRuntimeError::new_err("cannot release un-acquired lock")
}

/// A recursion count past a machine word.
pub(crate) fn count_overflow(_: tress::CountOverflow) -> PyErr {
    PyOverflowError::new_err("Internal lock count overflowed")
}

/// A semaphore count past a machine word.
pub(crate) fn semaphore_overflow(_: tress::CountOverflow) -> PyErr {
    PyOverflowError::new_err("semaphore value is too large")
}

/// `BoundedSemaphore.release()` past the initial value.
pub(crate) fn too_many_releases(_: tress::TooManyReleases) -> PyErr {
    PyValueError::new_err("Semaphore released too many times")
}

/// A failed barrier wait: broken, interrupted, or the action's own error.
pub(crate) fn barrier(e: tress::BarrierError<PyErr, PyErr>) -> PyErr {
    match e {
        tress::BarrierError::Broken => BrokenBarrierError::new_err(()),
        tress::BarrierError::Interrupted(e) | tress::BarrierError::Action(e) => e,
    }
}

/// A Python int that must fit a non-negative machine count.
pub(crate) fn count_arg(value: &Bound<'_, PyAny>, negative: &'static str) -> PyResult<usize> {
    let v: i128 = value.extract()?;
    if v < 0 {
        return Err(PyValueError::new_err(negative));
    }
    usize::try_from(v).map_err(|_| PyOverflowError::new_err("value is too large"))
}
