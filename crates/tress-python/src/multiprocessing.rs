//! `tress.multiprocessing` natively: the shared-memory byte queue
//! ([`tress::ipc::ByteQueue`]) its queues are made of. Pickling, the
//! multiprocessing API and the hand-over to child processes are in
//! `python/tress/multiprocessing.py`; here, one native call per put or get
//! of already-pickled bytes.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use tress::ipc::{ByteQueue, Segment, SendError};
use tress::{GetError, Interrupt};

use crate::wait::Blocking;

pyo3::import_exception!(queue, Empty);
pyo3::import_exception!(queue, Full);

/// Registers the class on the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyShmQueue>()?;
    Ok(())
}

fn os_error(e: std::io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => PyOSError::new_err((code, e.to_string())),
        None => PyOSError::new_err(e.to_string()),
    }
}

/// `block`/`timeout` as multiprocessing's queues take them: a deadline, or
/// None to wait forever; a negative timeout counts as 0.
fn deadline(block: bool, timeout: Option<f64>) -> PyResult<Option<Instant>> {
    if !block {
        return Ok(Some(Instant::now()));
    }
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(PyValueError::new_err("Invalid value NaN (not a number)")),
        Some(t) if t <= 0.0 => Ok(Some(Instant::now())),
        Some(t) => Ok(std::time::Duration::try_from_secs_f64(t)
            .ok()
            .and_then(|d| Instant::now().checked_add(d))),
    }
}

fn send_error(e: SendError<PyErr>) -> PyErr {
    match e {
        SendError::Full => Full::new_err(()),
        SendError::TooLarge { .. } => PyValueError::new_err(e.to_string()),
        SendError::Failed(e) => e,
    }
}

/// A queue of byte messages in shared memory, usable from every process it
/// reaches (by `fork`, or by its descriptor: [`fileno`](Self::fileno) and
/// [`from_fd`](Self::from_fd)).
#[pyclass(name = "ShmQueue", module = "tress._tress", frozen)]
pub(crate) struct PyShmQueue {
    q: ByteQueue,
}

impl PyShmQueue {
    fn put_parts(
        &self,
        py: Python<'_>,
        parts: &Bound<'_, PyList>,
        until: Option<Instant>,
    ) -> PyResult<()> {
        let buffers = parts
            .iter()
            .map(|p| PyBuffer::<u8>::get(&p))
            .collect::<PyResult<Vec<_>>>()?;
        let mut slices: Vec<&[u8]> = Vec::with_capacity(buffers.len());
        for b in &buffers {
            if !b.is_c_contiguous() {
                return Err(PyValueError::new_err(
                    "message parts must be contiguous buffers",
                ));
            }
            // SAFETY: the buffer is C-contiguous, `len_bytes` long, and kept
            // alive (and exported, so not resized) by `buffers` until the
            // put returns; the GIL is held whenever the bytes are copied
            // (the put lets it go only while it sleeps, before copying).
            slices.push(unsafe {
                std::slice::from_raw_parts(b.buf_ptr() as *const u8, b.len_bytes())
            });
        }
        let mut interrupt = Blocking::interruptible(py);
        self.q
            .put_with(&slices, until, &mut interrupt)
            .map_err(send_error)
    }

    fn get_one<'py>(
        &self,
        py: Python<'py>,
        until: Option<Instant>,
        interrupt: &mut impl Interrupt<Error = PyErr>,
    ) -> Result<Bound<'py, PyBytes>, GetError<PyErr>> {
        // The copy into the new bytes object runs with the GIL held (the
        // get takes it back before reading).
        self.q.get_with(until, interrupt, |m| PyBytes::new(py, m))
    }
}

#[pymethods]
impl PyShmQueue {
    /// A new queue whose ring holds `capacity` bytes and at most
    /// `maxsize` messages (0: no bound but the bytes).
    #[new]
    #[pyo3(signature = (capacity, maxsize=0))]
    fn new(capacity: usize, maxsize: usize) -> PyResult<Self> {
        Ok(Self {
            q: ByteQueue::create(capacity, maxsize).map_err(os_error)?,
        })
    }

    /// The queue behind descriptor `fd` (which this object takes over).
    #[staticmethod]
    fn from_fd(fd: i32) -> PyResult<Self> {
        if fd < 0 {
            return Err(PyValueError::new_err("invalid file descriptor"));
        }
        // SAFETY: the caller hands over an open descriptor it owns (the
        // Python side detaches it from multiprocessing's DupFd).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let seg = Segment::from_fd(fd).map_err(os_error)?;
        Ok(Self {
            q: ByteQueue::open(seg).map_err(os_error)?,
        })
    }

    /// The descriptor of the shared memory (owned by this object).
    fn fileno(&self) -> i32 {
        self.q.segment().as_fd().as_raw_fd()
    }

    /// Puts one message, the concatenation of the buffers in `parts`.
    #[pyo3(signature = (parts, block=true, timeout=None))]
    fn put(
        &self,
        py: Python<'_>,
        parts: &Bound<'_, PyList>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.put_parts(py, parts, deadline(block, timeout)?)
    }

    /// Puts several messages (each a list of buffers), in order; all wait
    /// for room within the one timeout. Returns how many were put before a
    /// `Full` (raised only if none was).
    #[pyo3(signature = (messages, block=true, timeout=None))]
    fn put_many(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyList>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let until = deadline(block, timeout)?;
        let mut n = 0;
        for m in messages.iter() {
            let parts = m.cast_into::<PyList>()?;
            match self.put_parts(py, &parts, until) {
                Ok(()) => n += 1,
                Err(e) if n > 0 && e.is_instance_of::<Full>(py) => return Ok(n),
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Takes the oldest message (bytes); `queue.Empty` if none came in time.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let until = deadline(block, timeout)?;
        let mut interrupt = Blocking::interruptible(py);
        match self.get_one(py, until, &mut interrupt) {
            Ok(b) => Ok(b),
            Err(GetError::Failed(e)) => Err(e),
            Err(GetError::Empty | GetError::ShutDown) => Err(Empty::new_err(())),
        }
    }

    /// Takes up to `n` messages: waits (as `get`) for the first, then takes
    /// the others that are ready without waiting.
    #[pyo3(signature = (n, block=true, timeout=None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        if n == 0 {
            return Ok(out);
        }
        out.append(self.get(py, block, timeout)?)?;
        let mut interrupt = Blocking::interruptible(py);
        while out.len() < n {
            match self.get_one(py, Some(Instant::now()), &mut interrupt) {
                Ok(b) => out.append(b)?,
                Err(GetError::Failed(e)) => return Err(e),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// Messages ready now.
    fn qsize(&self) -> usize {
        self.q.len()
    }

    /// Whether no message is ready now.
    fn empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Whether a message of `size` bytes would have to wait for room now
    /// (or the bound in messages is reached).
    #[pyo3(signature = (size=0))]
    fn full(&self, size: usize) -> bool {
        let _ = size;
        let max = self.q.max_messages();
        max != 0 && self.q.len() >= max
    }

    /// The ring's size in bytes.
    #[getter]
    fn capacity(&self) -> usize {
        self.q.capacity()
    }

    /// The largest message in bytes.
    #[getter]
    fn max_message(&self) -> usize {
        self.q.max_message()
    }

    /// The bound in messages (0: none).
    #[getter]
    fn maxsize(&self) -> usize {
        self.q.max_messages()
    }

    /// Marks one message as processed (`JoinableQueue.task_done`).
    fn task_done(&self) -> PyResult<()> {
        self.q
            .task_done()
            .map_err(|_| PyValueError::new_err("task_done() called too many times"))
    }

    /// Waits until every message put has been marked done; False if
    /// `timeout` (seconds) passed first.
    #[pyo3(signature = (timeout=None))]
    fn join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let until = deadline(true, timeout)?;
        self.q.join_with(until, &mut Blocking::interruptible(py))
    }

    /// Messages put and not yet marked done.
    #[getter]
    fn unfinished_tasks(&self) -> usize {
        self.q.unfinished_tasks()
    }
}
