//! `tress.multiprocessing` natively: the shared-memory byte queue
//! ([`tress::ipc::ByteQueue`]) its queues are made of. Pickling, the
//! multiprocessing API and the hand-over to child processes are in
//! `python/tress/multiprocessing.py`; here, one native call per put or get
//! of already-pickled bytes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use tress::ipc::{ByteQueue, Fed, Feeder, Message, Segment, SendError, TaskTable};
use tress::{GetError, Interrupt};

use crate::wait::{Blocking, CFlag, Truthy};

pyo3::import_exception!(queue, Empty);
pyo3::import_exception!(queue, Full);

/// Registers the class on the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyShmQueue>()?;
    m.add_class::<PyShmSemLock>()?;
    m.add_class::<PyShmEvent>()?;
    m.add_class::<PyTaskTable>()?;
    Ok(())
}

/// A new `bytes` (`array`: `bytearray`) holding `len` bytes of message `m`
/// from `pos` on, with one copy (out of band: `pread` from the queue's
/// memory file straight into the object, nothing mapped).
fn fresh_from<'py>(
    py: Python<'py>,
    m: &Message<'_>,
    pos: usize,
    len: usize,
    array: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let n = pyo3::ffi::Py_ssize_t::try_from(len)
        .map_err(|_| pyo3::exceptions::PyMemoryError::new_err(()))?;
    // SAFETY: creating an object of `n` bytes not yet written (the C API's
    // documented use of a NULL source); its buffer is then filled below
    // before the object is seen by anything else.
    let obj = unsafe {
        let raw = if array {
            pyo3::ffi::PyByteArray_FromStringAndSize(std::ptr::null(), n)
        } else {
            pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), n)
        };
        Bound::from_owned_ptr_or_err(py, raw)?
    };
    // SAFETY: the object was just made, of exactly `len` bytes, and is
    // referenced only here: its buffer is writable and stays put until it
    // is filled.
    let ptr = unsafe {
        if array {
            pyo3::ffi::PyByteArray_AsString(obj.as_ptr())
        } else {
            pyo3::ffi::PyBytes_AsString(obj.as_ptr())
        }
    } as *mut u8;
    if len > 0 {
        // SAFETY: `ptr` is the object's buffer of `len` bytes (see above);
        // read_at fills all of it.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<MaybeUninit<u8>>(), len) };
        m.read_at(pos, buf).map_err(os_error)?;
    }
    Ok(obj)
}

fn os_error(e: std::io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => PyOSError::new_err((code, e.to_string())),
        None => PyOSError::new_err(e.to_string()),
    }
}

/// Takes over descriptor `fd`, handed over by the Python side (detached
/// from multiprocessing's `DupFd`): the one place a raw descriptor becomes
/// owned.
fn owned_fd(fd: i32) -> PyResult<OwnedFd> {
    if fd < 0 {
        return Err(PyValueError::new_err("invalid file descriptor"));
    }
    // SAFETY: the caller hands over an open descriptor it owns, and no one
    // else closes it after this.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The shared-memory segment behind descriptor `fd` (taken over).
fn segment_from_fd(fd: i32) -> PyResult<Segment> {
    Segment::from_fd(owned_fd(fd)?).map_err(os_error)
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
        SendError::Memory { errno, .. } => match errno {
            Some(code) => PyOSError::new_err((code, e.to_string())),
            None => PyOSError::new_err(e.to_string()),
        },
        SendError::Failed(e) => e,
    }
}

/// A queue of byte messages in shared memory, usable from every process it
/// reaches (by `fork`, or by its descriptor: [`fileno`](Self::fileno) and
/// [`from_fd`](Self::from_fd)).
#[pyclass(name = "ShmQueue", module = "tress._tress", frozen)]
pub(crate) struct PyShmQueue {
    q: Arc<ByteQueue>,
    /// This handle's feeder (multiprocessing's `Queue`): set by
    /// `use_feeder`, puts go through it and never wait for room in the
    /// ring. Without it (`SimpleQueue`, a pool's rings) a put waits.
    feeder: std::sync::OnceLock<Feeder>,
    /// The error of an object that `get_objs` took after others and could
    /// not unpickle: raised by this object's next get, so the others are
    /// returned first and nothing is lost.
    pending: std::sync::Mutex<Option<PyErr>>,
}

impl Drop for PyShmQueue {
    /// The last of this process's Python handles on the queue gone: what
    /// its feeder kept is still put while the process lives, but its exit
    /// does not wait for it (nothing here can read it back, and another
    /// process may never: waiting could hang the exit for good).
    fn drop(&mut self) {
        if let Some(f) = self.feeder.get() {
            f.cancel();
        }
    }
}

impl PyShmQueue {
    fn wrap(q: ByteQueue) -> Self {
        Self {
            q: Arc::new(q),
            feeder: std::sync::OnceLock::new(),
            pending: std::sync::Mutex::new(None),
        }
    }

    /// Puts one message, through the feeder if this handle has one; the
    /// first message a feeder keeps in this process has the Python side
    /// flush the feeders at exit (`_feeder_started`).
    fn put_slices(
        &self,
        py: Python<'_>,
        parts: &[&[u8]],
        until: Option<Instant>,
        interrupt: &mut Blocking<'_, '_>,
    ) -> Result<(), SendError<PyErr>> {
        let Some(feeder) = self.feeder.get() else {
            return self.q.put_with(parts, until, interrupt);
        };
        if feeder.put(parts, until, interrupt)? == Fed::Started {
            let hook = py
                .import("tress.multiprocessing")
                .and_then(|m| m.getattr("_feeder_started"))
                .and_then(|f| f.call0());
            hook.map_err(SendError::Failed)?;
        }
        Ok(())
    }

    fn take_pending(&self) -> PyResult<()> {
        match self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The buffers of a message's parts, exported (so they cannot be
    /// resized) for as long as the result lives.
    fn exported(parts: &Bound<'_, PyList>) -> PyResult<Vec<PyBuffer<u8>>> {
        parts
            .iter()
            .map(|p| {
                let b = PyBuffer::<u8>::get(&p)?;
                if b.is_c_contiguous() {
                    Ok(b)
                } else {
                    Err(PyValueError::new_err(
                        "message parts must be contiguous buffers",
                    ))
                }
            })
            .collect()
    }

    /// The bytes of exported buffers.
    fn slices(buffers: &[PyBuffer<u8>]) -> Vec<&[u8]> {
        buffers
            .iter()
            // SAFETY: each buffer is C-contiguous (checked by `exported`),
            // `len_bytes` long, and kept alive (and exported, so not
            // resized) by `buffers`, which outlives the slices; the GIL is
            // held whenever the bytes are copied (a put lets it go only
            // while it sleeps, before copying).
            .map(|b| unsafe { std::slice::from_raw_parts(b.buf_ptr() as *const u8, b.len_bytes()) })
            .collect()
    }

    fn put_parts(
        &self,
        py: Python<'_>,
        parts: &Bound<'_, PyList>,
        until: Option<Instant>,
    ) -> PyResult<()> {
        let buffers = Self::exported(parts)?;
        let mut interrupt = Blocking::interruptible(py);
        self.put_slices(py, &Self::slices(&buffers), until, &mut interrupt)
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
        self.q
            .get_message_with(until, interrupt, |m| Self::bytes_of(py, &m))?
            .map_err(GetError::Failed)
    }

    /// Message `m` as a new `bytes` object (one copy).
    fn bytes_of<'py>(py: Python<'py>, m: &Message<'_>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(fresh_from(py, m, 0, m.len(), false)?.cast_into::<PyBytes>()?)
    }

    /// The object in message `m`: out of band, a `bytes`, a `bytearray`
    /// or the out-of-band buffers of a framed pickle are copied once,
    /// straight from the queue's memory file into the objects returned
    /// (nothing mapped); the rest as [`decode`](Self::decode), in place.
    fn decode_message<'py>(py: Python<'py>, m: &Message<'_>) -> PyResult<Bound<'py, PyAny>> {
        if !m.is_out_of_band() || m.is_empty() {
            return m.with_bytes(|b| Self::decode(py, b)).map_err(os_error)?;
        }
        let mut tag = [MaybeUninit::new(0u8)];
        m.read_at(0, &mut tag).map_err(os_error)?;
        // SAFETY: initialised above (and by read_at).
        match unsafe { tag[0].assume_init() } {
            TAG_BYTES => fresh_from(py, m, 1, m.len() - 1, false),
            TAG_BYTEARRAY => fresh_from(py, m, 1, m.len() - 1, true),
            TAG_FRAMED => Self::decode_framed_message(py, m),
            _ => m.with_bytes(|b| Self::decode(py, b)).map_err(os_error)?,
        }
    }

    /// [`decode_framed`](Self::decode_framed) of an out-of-band message:
    /// its buffers read straight into their `bytearray`s, its pickle into
    /// a `bytes`.
    fn decode_framed_message<'py>(py: Python<'py>, m: &Message<'_>) -> PyResult<Bound<'py, PyAny>> {
        let bad = || PyValueError::new_err("a truncated tress.multiprocessing message");
        let read = |at: usize, n: usize| -> PyResult<Vec<u8>> {
            let mut b = vec![MaybeUninit::new(0u8); n];
            m.read_at(at, &mut b).map_err(|_| bad())?;
            // SAFETY: every byte initialised (zeroes, then read_at).
            Ok(b.into_iter().map(|x| unsafe { x.assume_init() }).collect())
        };
        let head = read(1, 4)?;
        let count = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let words = count.checked_add(1).ok_or_else(bad)?;
        let table = read(5, words.checked_mul(8).ok_or_else(bad)?)?;
        let mut offset = 5 + 8 * words;
        let mut pieces = Vec::with_capacity(words);
        for w in table.chunks_exact(8) {
            let size = usize::try_from(u64::from_le_bytes(w.try_into().expect("8 bytes")))
                .map_err(|_| bad())?;
            let end = offset
                .checked_add(size)
                .filter(|&e| e <= m.len())
                .ok_or_else(bad)?;
            pieces.push((offset, size));
            offset = end;
        }
        let buffers = PyList::empty(py);
        for &(at, size) in &pieces[1..] {
            buffers.append(fresh_from(py, m, at, size, true)?)?;
        }
        let (at, size) = pieces[0];
        let stream = fresh_from(py, m, at, size, false)?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("buffers", buffers)?;
        pickling(py)?.loads.bind(py).call((&stream,), Some(&kwargs))
    }
}

/// What the object-level put and get call: `pickle.dumps`, `pickle.loads`,
/// and the Python side's helpers for framed messages.
struct Pickling {
    dumps: Py<PyAny>,
    loads: Py<PyAny>,
    frame: Py<PyAny>,
    dumps_fallback: Py<PyAny>,
    protocol: Py<PyAny>,
    tag_bytes: Py<PyBytes>,
    tag_bytearray: Py<PyBytes>,
}

fn pickling(py: Python<'_>) -> PyResult<&'static Pickling> {
    static P: pyo3::sync::PyOnceLock<Pickling> = pyo3::sync::PyOnceLock::new();
    P.get_or_try_init(py, || {
        let pickle = py.import("pickle")?;
        let m = py.import("tress.multiprocessing")?;
        Ok(Pickling {
            dumps: pickle.getattr("dumps")?.unbind(),
            loads: pickle.getattr("loads")?.unbind(),
            frame: m.getattr("_frame")?.unbind(),
            dumps_fallback: m.getattr("_dumps_fallback")?.unbind(),
            protocol: 5i32.into_pyobject(py)?.into_any().unbind(),
            tag_bytes: PyBytes::new(py, &[TAG_BYTES]).unbind(),
            tag_bytearray: PyBytes::new(py, &[TAG_BYTEARRAY]).unbind(),
        })
    })
}

/// A message's first byte says what follows: a plain pickle (its own
/// first byte, PROTO), a framed pickle with out-of-band buffers, or the
/// raw contents of a top-level `bytes` or `bytearray` (no pickling at all).
const TAG_PICKLE: u8 = 0x80;
const TAG_FRAMED: u8 = b'F';
const TAG_BYTES: u8 = b'B';
const TAG_BYTEARRAY: u8 = b'A';

impl PyShmQueue {
    /// The message parts for `obj` (pickled here, in the caller of put).
    fn encode<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let p = pickling(py)?;
        if obj.is_exact_instance_of::<PyBytes>() {
            return PyList::new(py, [p.tag_bytes.bind(py).as_any(), obj]);
        }
        if obj.is_exact_instance_of::<pyo3::types::PyByteArray>() {
            return PyList::new(py, [p.tag_bytearray.bind(py).as_any(), obj]);
        }
        let buffers = PyList::empty(py);
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("buffer_callback", buffers.getattr("append")?)?;
        match p
            .dumps
            .bind(py)
            .call((obj, p.protocol.bind(py)), Some(&kwargs))
        {
            Ok(data) if buffers.is_empty() => PyList::new(py, [data]),
            Ok(data) => Ok(p
                .frame
                .bind(py)
                .call1((data, buffers))?
                .cast_into::<PyList>()?),
            Err(e) => Ok(p
                .dumps_fallback
                .bind(py)
                .call1((obj, e.into_value(py)))?
                .cast_into::<PyList>()?),
        }
    }

    /// A read-only memoryview of `m`, released (and checked unexported) by
    /// the caller before `m` goes away.
    ///
    /// # Safety
    ///
    /// `m` must stay valid and unchanged until the view is released.
    unsafe fn view<'py>(py: Python<'py>, m: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: the caller keeps `m` valid until it releases the view; the
        // view is read-only.
        unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                pyo3::ffi::PyMemoryView_FromMemory(
                    m.as_ptr() as *mut std::ffi::c_char,
                    m.len() as pyo3::ffi::Py_ssize_t,
                    pyo3::ffi::PyBUF_READ,
                ),
            )
        }
    }

    /// A framed message (`_frame`): its out-of-band buffers are copied into
    /// their own `bytearray`s (writable, as multiprocessing's queues give
    /// them; that copy is what the result keeps), and the pickle is read in
    /// place: nothing made here refers to `m` once this returns.
    fn decode_framed<'py>(py: Python<'py>, m: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let bad = || PyValueError::new_err("a truncated tress.multiprocessing message");
        let word = |at: usize, n: usize| -> PyResult<u64> {
            let b = m.get(at..at + n).ok_or_else(bad)?;
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(b);
            Ok(u64::from_le_bytes(w))
        };
        let count = word(1, 4)? as usize;
        let mut offset = 5usize
            .checked_add(
                count
                    .checked_add(1)
                    .and_then(|c| c.checked_mul(8))
                    .ok_or_else(bad)?,
            )
            .ok_or_else(bad)?;
        let mut pieces = Vec::with_capacity(count + 1);
        for i in 0..=count {
            let size = usize::try_from(word(5 + 8 * i, 8)?).map_err(|_| bad())?;
            let end = offset.checked_add(size).ok_or_else(bad)?;
            pieces.push(m.get(offset..end).ok_or_else(bad)?);
            offset = end;
        }
        let buffers = PyList::empty(py);
        for piece in &pieces[1..] {
            buffers.append(pyo3::types::PyByteArray::new(py, piece))?;
        }
        // SAFETY: `pieces[0]` is part of `m`, valid and unchanged until the
        // read closure returns; the view is released below, before that,
        // and pickle.loads copies what it keeps of the stream itself (the
        // buffers it references are the bytearrays above).
        let view = unsafe { Self::view(py, pieces[0])? };
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("buffers", buffers)?;
        let obj = pickling(py)?.loads.bind(py).call((&view,), Some(&kwargs));
        view.call_method0("release")?;
        obj
    }

    /// The object in message `m` (read in place from the ring or the
    /// mapped out-of-band message where it can be: the plain pickle path
    /// copies nothing first). Nothing returned refers to `m`.
    fn decode<'py>(py: Python<'py>, m: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let p = pickling(py)?;
        match m.first() {
            Some(&TAG_PICKLE) => {
                // SAFETY: `m` stays valid and unchanged until the read
                // closure returns (the slot is claimed); the memoryview is
                // read-only and released below, before that; pickle.loads
                // copies what it keeps (a plain pickle has no out-of-band
                // buffers to keep references to).
                let view = unsafe { Self::view(py, m)? };
                let obj = p.loads.bind(py).call1((&view,));
                view.call_method0("release")?;
                obj
            }
            Some(&TAG_BYTES) => Ok(PyBytes::new(py, &m[1..]).into_any()),
            Some(&TAG_BYTEARRAY) => Ok(pyo3::types::PyByteArray::new(py, &m[1..]).into_any()),
            Some(&TAG_FRAMED) => Self::decode_framed(py, m),
            _ => Err(PyValueError::new_err("not a tress.multiprocessing message")),
        }
    }
}

#[pymethods]
impl PyShmQueue {
    /// Pickles `obj` here and puts it (see `tress.multiprocessing`).
    #[pyo3(signature = (obj, block=CFlag(true), timeout=None))]
    fn put_obj(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        block: CFlag,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let parts = Self::encode(py, obj)?;
        self.put_parts(py, &parts, deadline(block.0, timeout)?)
    }

    /// Takes the oldest message and unpickles it; an object that fails to
    /// unpickle raises here (the message is consumed, the queue intact).
    #[pyo3(signature = (block=Truthy(true), timeout=None))]
    fn get_obj<'py>(
        &self,
        py: Python<'py>,
        block: Truthy,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.take_pending()?;
        let until = deadline(block.0, timeout)?;
        let mut interrupt = Blocking::interruptible(py);
        match self
            .q
            .get_message_with(until, &mut interrupt, |m| Self::decode_message(py, &m))
        {
            Ok(obj) => obj,
            Err(GetError::Failed(e)) => Err(e),
            Err(GetError::Empty | GetError::ShutDown) => Err(Empty::new_err(())),
        }
    }

    /// Pickles every object of `objs` first (one that cannot be pickled
    /// puts none), then puts them in order; how many were put (see
    /// `put_many`).
    #[pyo3(signature = (objs, block=CFlag(true), timeout=None))]
    fn put_objs(
        &self,
        py: Python<'_>,
        objs: &Bound<'_, PyAny>,
        block: CFlag,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let messages = PyList::empty(py);
        for obj in objs.try_iter()? {
            messages.append(Self::encode(py, &obj?)?)?;
        }
        self.put_many(py, &messages, block, timeout)
    }

    /// Up to `n` objects: waits for the first as `get_obj`, then takes
    /// those ready without waiting.
    #[pyo3(signature = (n, block=Truthy(true), timeout=None))]
    fn get_objs<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        block: Truthy,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        if n == 0 {
            return Ok(out);
        }
        out.append(self.get_obj(py, block, timeout)?)?;
        let mut interrupt = Blocking::interruptible(py);
        while out.len() < n {
            match self
                .q
                .get_message_with(Some(Instant::now()), &mut interrupt, |m| {
                    Self::decode_message(py, &m)
                }) {
                Ok(Ok(obj)) => out.append(obj)?,
                Ok(Err(e)) => {
                    // raised by the next get; these are returned now (the
                    // slot was empty: `get_obj` above took what it held)
                    let old = self
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .replace(e);
                    drop(old);
                    break;
                }
                Err(GetError::Failed(e)) => return Err(e),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// A new queue whose ring holds `capacity` bytes and at most
    /// `maxsize` messages (0: no bound but the bytes).
    #[new]
    #[pyo3(signature = (capacity, maxsize=0))]
    fn new(py: Python<'_>, capacity: usize, maxsize: usize) -> PyResult<Self> {
        // Reserving the pages takes a while for a large ring: other threads
        // run meanwhile.
        let q = py.detach(|| ByteQueue::create(capacity, maxsize));
        Ok(Self::wrap(q.map_err(os_error)?))
    }

    /// The queue behind descriptor `fd` (which this object takes over).
    #[staticmethod]
    fn from_fd(fd: i32) -> PyResult<Self> {
        Ok(Self::wrap(
            ByteQueue::open_fd(owned_fd(fd)?).map_err(os_error)?,
        ))
    }

    /// Test hook (not an API): from now on, a put of an out-of-band message
    /// in this process writes one byte to `fd` once part of the message is
    /// written, then stops there until the process is killed.
    #[staticmethod]
    fn _stall_large_puts(fd: i32) {
        tress::ipc::TEST_STALL_LARGE_PUT.store(fd, std::sync::atomic::Ordering::Relaxed);
    }

    /// Test hook (not an API): takes the queue's internal lock and stops
    /// this process (`SIGSTOP`) holding it.
    fn _stop_holding_lock(&self) {
        self.q.test_hold_lock();
        // SAFETY: raising a signal in this process; no memory is touched.
        unsafe { libc::raise(libc::SIGSTOP) };
    }

    /// The descriptor of the shared memory (owned by this object).
    fn fileno(&self) -> i32 {
        self.q.segment().as_fd().as_raw_fd()
    }

    /// Puts one message, the concatenation of the buffers in `parts`.
    #[pyo3(signature = (parts, block=CFlag(true), timeout=None))]
    fn put(
        &self,
        py: Python<'_>,
        parts: &Bound<'_, PyList>,
        block: CFlag,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.put_parts(py, parts, deadline(block.0, timeout)?)
    }

    /// Puts several messages (each a list of buffers), in order; all wait
    /// for room within the one timeout. Returns how many were put before a
    /// `Full` (raised only if none was).
    #[pyo3(signature = (messages, block=CFlag(true), timeout=None))]
    fn put_many(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyList>,
        block: CFlag,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let until = deadline(block.0, timeout)?;
        let buffers = messages
            .iter()
            .map(|m| Self::exported(m.cast::<PyList>()?))
            .collect::<PyResult<Vec<_>>>()?;
        let slices: Vec<Vec<&[u8]>> = buffers.iter().map(|b| Self::slices(b)).collect();
        let messages: Vec<&[&[u8]]> = slices.iter().map(Vec::as_slice).collect();
        let mut interrupt = Blocking::interruptible(py);
        if self.feeder.get().is_none() {
            return self
                .q
                .put_many_with(&messages, until, &mut interrupt)
                .map_err(send_error);
        }
        for parts in &messages {
            if let Err(e) = ByteQueue::check_size(parts) {
                return Err(send_error(e));
            }
        }
        for (n, parts) in messages.iter().enumerate() {
            match self.put_slices(py, parts, until, &mut interrupt) {
                Ok(()) => {}
                Err(SendError::Full) if n > 0 => return Ok(n),
                Err(e) => return Err(send_error(e)),
            }
        }
        Ok(messages.len())
    }

    /// From now on this handle's puts go through a feeder: they never wait
    /// for room in the ring, only for the bound in messages
    /// (multiprocessing's `Queue`; see `tress::ipc::Feeder`).
    fn use_feeder(&self) {
        self.feeder.get_or_init(|| Feeder::new(Arc::clone(&self.q)));
    }

    /// Waits until what this process kept for the queue is in its ring
    /// (multiprocessing's `join_thread`); False if `timeout` passed first.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        match self.feeder.get() {
            Some(f) => f.flush(deadline(true, timeout)?, &mut Blocking::interruptible(py)),
            None => Ok(true),
        }
    }

    /// The process's exit no longer waits for what this handle kept
    /// (multiprocessing's `cancel_join_thread`).
    fn cancel_flush(&self) {
        if let Some(f) = self.feeder.get() {
            f.cancel();
        }
    }

    /// Whether this process put a message through this handle's feeder
    /// (see `use_feeder`; False without one).
    #[getter]
    fn fed(&self) -> bool {
        self.feeder.get().is_some_and(Feeder::used)
    }

    /// Messages this process keeps for the queue, not yet in its ring.
    #[getter]
    fn kept(&self) -> usize {
        self.feeder.get().map_or(0, Feeder::kept)
    }

    /// Waits until every feeder of this process (but those cancelled) has
    /// put what it kept; False if `timeout` passed first.
    #[staticmethod]
    #[pyo3(signature = (timeout=None))]
    fn flush_all(py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        Feeder::flush_all(deadline(true, timeout)?, &mut Blocking::interruptible(py))
    }

    /// Takes the oldest message (bytes); `queue.Empty` if none came in time.
    #[pyo3(signature = (block=Truthy(true), timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: Truthy,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let until = deadline(block.0, timeout)?;
        let mut interrupt = Blocking::interruptible(py);
        match self.get_one(py, until, &mut interrupt) {
            Ok(b) => Ok(b),
            Err(GetError::Failed(e)) => Err(e),
            Err(GetError::Empty | GetError::ShutDown) => Err(Empty::new_err(())),
        }
    }

    /// Takes the oldest message (bytes), a process pool's task message
    /// (its first 8 bytes the task's number, little-endian), and records
    /// in `table` that `worker` runs that task before the message leaves
    /// the ring: a worker killed before the record leaves the message in
    /// the ring for another worker, one killed after it leaves the task in
    /// the table for the parent to fail. Shorter messages are recorded as
    /// nothing.
    #[pyo3(signature = (table, worker, block=Truthy(true), timeout=None))]
    fn get_task<'py>(
        &self,
        py: Python<'py>,
        table: &PyTaskTable,
        worker: usize,
        block: Truthy,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if worker >= table.t.len() {
            return Err(PyValueError::new_err(format!(
                "worker {worker} out of range (the table has {} rows)",
                table.t.len()
            )));
        }
        let until = deadline(block.0, timeout)?;
        let mut interrupt = Blocking::interruptible(py);
        let got = self.q.get_with(until, &mut interrupt, |m| {
            if let Some(n) = m.get(..8) {
                let task = u64::from_le_bytes(n.try_into().expect("8 bytes"));
                if task != 0 {
                    table.t.begin(worker, task);
                }
            }
            PyBytes::new(py, m)
        });
        match got {
            Ok(b) => {
                stop_after_claim_if_asked();
                Ok(b)
            }
            Err(GetError::Failed(e)) => Err(e),
            Err(GetError::Empty | GetError::ShutDown) => Err(Empty::new_err(())),
        }
    }

    /// Takes up to `n` messages: waits (as `get`) for the first, then takes
    /// the others that are ready without waiting.
    #[pyo3(signature = (n, block=Truthy(true), timeout=None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        block: Truthy,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        if n == 0 {
            return Ok(PyList::empty(py));
        }
        let until = deadline(block.0, timeout)?;
        let mut taken = Vec::new();
        let got = self
            .q
            .get_many_with(n, until, &mut Blocking::interruptible(py), |m| {
                taken.push(PyBytes::new(py, m))
            });
        match got {
            Ok(_) => {}
            Err(GetError::Failed(e)) => return Err(e),
            Err(GetError::Empty | GetError::ShutDown) => return Err(Empty::new_err(())),
        }
        PyList::new(py, taken)
    }

    /// Whether gets through this handle poll briefly before they sleep.
    fn set_polling(&self, on: bool) {
        self.q.set_polling(on);
    }

    /// The longest a get through this handle polls before it sleeps, in
    /// microseconds (default 20; 0: no polling; at most 1000).
    fn set_poll_limit(&self, micros: u32) {
        self.q.set_poll_limit(micros);
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

    /// Bytes of shared memory kept for reuse by the next large messages
    /// (the pages of consumed ones; bounded, see `ByteQueue`).
    #[getter]
    fn spare_bytes(&self) -> usize {
        self.q.spare_bytes()
    }

    /// Frees the memory kept for reuse (`spare_bytes`).
    fn trim(&self) {
        self.q.trim()
    }

    /// The ring's size in bytes.
    #[getter]
    fn capacity(&self) -> usize {
        self.q.capacity()
    }

    /// Bytes of shared memory the header and the ring hold now (the ring
    /// reserves its pages as it is first used).
    #[getter]
    fn ring_memory(&self) -> usize {
        self.q.ring_memory()
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

// ---------------------------------------------------------------- SemLock

/// `multiprocessing.synchronize`'s kinds.
const RECURSIVE_MUTEX: i32 = 0;
const SEMAPHORE: i32 = 1;

/// `_multiprocessing.SemLock`'s `SEM_VALUE_MAX` on Linux.
const SEM_VALUE_MAX: i64 = i32::MAX as i64;

enum Sem {
    Semaphore(tress::ipc::ShmSemaphore),
    RLock(tress::ipc::ShmRLock),
}

/// `_multiprocessing.SemLock` in shared memory: a semaphore (Lock,
/// Semaphore, BoundedSemaphore) or a recursive mutex (RLock), with its
/// per-process bookkeeping (`_count`, `_is_mine`) as the C type keeps it.
/// It lives in a cell of an arena shared with other primitives (one
/// descriptor for many locks), and pickles as the arena's descriptor and
/// the cell.
#[pyclass(name = "ShmSemLock", module = "tress._tress", frozen)]
pub(crate) struct PyShmSemLock {
    sem: Sem,
    kind: i32,
    maxvalue: i64,
    /// Acquisitions by this process not yet released (semaphore kind), and
    /// the thread that made the last one: `ISMINE` of the C type.
    count: std::sync::atomic::AtomicU64,
    last_tid: std::sync::atomic::AtomicU64,
}

/// `f` on descriptor `fd` of the Python side, borrowed for the call (the
/// caller keeps it open and closes it).
fn with_fd<T>(fd: i32, f: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<T>) -> PyResult<T> {
    if fd < 0 {
        return Err(PyValueError::new_err("invalid file descriptor"));
    }
    // SAFETY: the Python caller keeps `fd` open during this call; the
    // borrow does not outlive `f` (the core duplicates the descriptor to
    // keep the arena mapped).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    f(fd).map_err(os_error)
}

fn thread_ident() -> u64 {
    // SAFETY: no preconditions; cannot fail.
    unsafe { pyo3::ffi::PyThread_get_thread_ident() as u64 }
}

impl PyShmSemLock {
    /// The arena's descriptor and the cell.
    fn location(&self) -> (i32, u32) {
        let (fd, cell) = match &self.sem {
            Sem::Semaphore(s) => s.location(),
            Sem::RLock(l) => l.location(),
        };
        (fd.as_raw_fd(), cell)
    }

    fn from_sem(sem: Sem, kind: i32, maxvalue: i64) -> Self {
        Self {
            sem,
            kind,
            maxvalue,
            count: std::sync::atomic::AtomicU64::new(0),
            last_tid: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

#[pymethods]
impl PyShmSemLock {
    /// A new lock of `kind` (0: recursive mutex, 1: semaphore) holding
    /// `value`, never above `maxvalue`.
    #[new]
    fn new(kind: i32, value: i64, maxvalue: i64) -> PyResult<Self> {
        let sem = match kind {
            RECURSIVE_MUTEX => Sem::RLock(tress::ipc::ShmRLock::create().map_err(os_error)?),
            SEMAPHORE => {
                if !(0..=SEM_VALUE_MAX).contains(&value) {
                    // what sem_open says of such a value, as multiprocessing
                    // reports it
                    return Err(PyOSError::new_err((libc::EINVAL, "Invalid argument")));
                }
                let max = (maxvalue < SEM_VALUE_MAX).then_some(maxvalue.max(0) as u32);
                Sem::Semaphore(
                    tress::ipc::ShmSemaphore::create(value as u32, max).map_err(os_error)?,
                )
            }
            _ => return Err(PyValueError::new_err("unrecognized kind")),
        };
        Ok(Self::from_sem(sem, kind, maxvalue))
    }

    /// The lock at `cell` of the arena behind descriptor `fd` (borrowed: the
    /// caller closes it; mapped through a duplicate unless this process maps
    /// the arena already), of `kind`: takes over the reference the pickling
    /// process lent ([`_lend`](Self::_lend)).
    #[staticmethod]
    fn from_fd(fd: i32, cell: u32, kind: i32, maxvalue: i64) -> PyResult<Self> {
        let sem = match kind {
            RECURSIVE_MUTEX => Sem::RLock(with_fd(fd, |fd| tress::ipc::ShmRLock::adopt(fd, cell))?),
            _ => Sem::Semaphore(with_fd(fd, |fd| tress::ipc::ShmSemaphore::adopt(fd, cell))?),
        };
        Ok(Self::from_sem(sem, kind, maxvalue))
    }

    /// The descriptor of the arena the lock lives in (this process's, shared
    /// with the other primitives of the arena).
    fn fileno(&self) -> i32 {
        self.location().0
    }

    /// Counts a reference for a pickled copy on its way to another process
    /// (which takes it over in `from_fd`); the lock's cell in its arena.
    fn _lend(&self) -> u32 {
        match &self.sem {
            Sem::Semaphore(s) => s.lend(),
            Sem::RLock(l) => l.lend(),
        }
        self.location().1
    }

    #[getter]
    fn kind(&self) -> i32 {
        self.kind
    }

    #[getter]
    fn maxvalue(&self) -> i64 {
        self.maxvalue
    }

    /// Acquire the semaphore/lock: wait up to `timeout` seconds (forever if
    /// None) when `block`; whether it was acquired.
    #[pyo3(signature = (block=CFlag(true), timeout=None))]
    fn acquire(&self, py: Python<'_>, block: CFlag, timeout: Option<f64>) -> PyResult<bool> {
        let tid = thread_ident();
        match &self.sem {
            Sem::RLock(l) => {
                if l.try_acquire(tid) {
                    return Ok(true);
                }
                let until = deadline(block.0, timeout)?;
                l.acquire_with(tid, until, &mut Blocking::interruptible(py))
            }
            Sem::Semaphore(s) => {
                use std::sync::atomic::Ordering;
                let got = s.try_acquire() || {
                    let until = deadline(block.0, timeout)?;
                    s.acquire_with(until, &mut Blocking::interruptible(py))?
                };
                if got {
                    self.count.fetch_add(1, Ordering::Relaxed);
                    self.last_tid.store(tid, Ordering::Relaxed);
                }
                Ok(got)
            }
        }
    }

    /// Release the semaphore/lock.
    fn release(&self) -> PyResult<()> {
        match &self.sem {
            Sem::RLock(l) => l.release(thread_ident()).map_err(|_| {
                pyo3::exceptions::PyAssertionError::new_err(
                    "attempt to release recursive lock not owned by thread",
                )
            }),
            Sem::Semaphore(s) => {
                use std::sync::atomic::Ordering;
                s.release().map_err(|_| {
                    PyValueError::new_err("semaphore or lock released too many times")
                })?;
                let _ = self
                    .count
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1));
                Ok(())
            }
        }
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, CFlag(true), None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// Acquisitions by this thread (recursive mutex) or this process
    /// (semaphore) not yet released.
    fn _count(&self) -> u64 {
        match &self.sem {
            Sem::RLock(l) => u64::from(l.count(thread_ident())),
            Sem::Semaphore(_) => self.count.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Whether the calling thread holds it.
    fn _is_mine(&self) -> bool {
        use std::sync::atomic::Ordering;
        match &self.sem {
            Sem::RLock(l) => l.is_owned(thread_ident()),
            Sem::Semaphore(_) => {
                self.count.load(Ordering::Relaxed) > 0
                    && self.last_tid.load(Ordering::Relaxed) == thread_ident()
            }
        }
    }

    /// The semaphore's value (1 or 0 for the recursive mutex).
    fn _get_value(&self) -> u64 {
        match &self.sem {
            Sem::Semaphore(s) => u64::from(s.value()),
            Sem::RLock(l) => u64::from(l.count(thread_ident()) == 0),
        }
    }

    fn _is_zero(&self) -> bool {
        self._get_value() == 0
    }

    /// Forget this process's acquisitions (in a forked child).
    fn _after_fork(&self) {
        self.count.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------- Event

/// A cross-process event flag ([`tress::ipc::ShmEvent`]), in a cell of an
/// arena shared with other primitives.
#[pyclass(name = "ShmEvent", module = "tress._tress", frozen)]
pub(crate) struct PyShmEvent {
    ev: tress::ipc::ShmEvent,
}

#[pymethods]
impl PyShmEvent {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(Self {
            ev: tress::ipc::ShmEvent::create().map_err(os_error)?,
        })
    }

    /// The event at `cell` of the arena behind descriptor `fd` (borrowed, as
    /// [`PyShmSemLock::from_fd`]): takes over the reference the pickling
    /// process lent ([`_lend`](Self::_lend)).
    #[staticmethod]
    fn from_fd(fd: i32, cell: u32) -> PyResult<Self> {
        Ok(Self {
            ev: with_fd(fd, |fd| tress::ipc::ShmEvent::adopt(fd, cell))?,
        })
    }

    /// The descriptor of the arena the event lives in (this process's,
    /// shared with the other primitives of the arena).
    fn fileno(&self) -> i32 {
        self.ev.location().0.as_raw_fd()
    }

    /// Counts a reference for a pickled copy on its way to another process
    /// (which takes it over in `from_fd`); the event's cell in its arena.
    fn _lend(&self) -> u32 {
        self.ev.lend();
        self.ev.location().1
    }

    fn is_set(&self) -> bool {
        self.ev.is_set()
    }

    fn set(&self) {
        self.ev.set();
    }

    fn clear(&self) {
        self.ev.clear();
    }

    /// Wait until the flag is set, at most `timeout` seconds (forever if
    /// None); whether it is set.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.ev.is_set() {
            return Ok(true);
        }
        let until = deadline(true, timeout)?;
        self.ev.wait_with(until, &mut Blocking::interruptible(py))
    }
}

// ---------------------------------------------------------------- TaskTable

/// Test hook (not an API): when set, the next `ShmQueue.get_task` of this
/// process that takes a message stops the process (`SIGSTOP`) once the
/// message has left the ring and its task is in the table, before the call
/// returns to Python: a worker killed at the end of the claim,
/// deterministically (the test kills it while it is stopped). One stop per
/// setting.
static TEST_STOP_AFTER_CLAIM: AtomicBool = AtomicBool::new(false);

fn stop_after_claim_if_asked() {
    if TEST_STOP_AFTER_CLAIM.swap(false, Ordering::Relaxed) {
        #[cfg(unix)]
        // SAFETY: raise() takes no pointer; it only delivers a signal to
        // the calling thread (SIGSTOP stops the whole process).
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
}

/// Which task each worker of a process pool runs ([`tress::ipc::TaskTable`]).
#[pyclass(name = "TaskTable", module = "tress._tress", frozen)]
pub(crate) struct PyTaskTable {
    t: TaskTable,
}

impl PyTaskTable {
    fn check(&self, worker: usize) -> PyResult<()> {
        if worker < self.t.len() {
            Ok(())
        } else {
            Err(PyValueError::new_err(format!(
                "worker {worker} out of range (the table has {} rows)",
                self.t.len()
            )))
        }
    }
}

#[pymethods]
impl PyTaskTable {
    /// A table of `workers` rows, every one idle.
    #[new]
    fn new(workers: usize) -> PyResult<Self> {
        Ok(Self {
            t: TaskTable::create(workers).map_err(os_error)?,
        })
    }

    /// The table behind descriptor `fd` (taken over).
    #[staticmethod]
    fn from_fd(fd: i32) -> PyResult<Self> {
        let seg = segment_from_fd(fd)?;
        Ok(Self {
            t: TaskTable::open(seg).map_err(os_error)?,
        })
    }

    fn fileno(&self) -> i32 {
        self.t.segment().as_fd().as_raw_fd()
    }

    /// Test hook (not an API): the next `ShmQueue.get_task` in this process
    /// that takes a task stops the process (`SIGSTOP`) right after the claim
    /// and the record, before it returns.
    #[staticmethod]
    fn _test_stop_after_claim() {
        TEST_STOP_AFTER_CLAIM.store(true, Ordering::Relaxed);
    }

    fn __len__(&self) -> usize {
        self.t.len()
    }

    /// `worker` runs `task` (nonzero) from now on.
    fn begin(&self, worker: usize, task: u64) -> PyResult<()> {
        self.check(worker)?;
        if task == 0 {
            return Err(PyValueError::new_err("task numbers are nonzero"));
        }
        self.t.begin(worker, task);
        Ok(())
    }

    /// `worker` runs nothing any more.
    fn end(&self, worker: usize) -> PyResult<()> {
        self.check(worker)?;
        self.t.end(worker);
        Ok(())
    }

    /// The task `worker` runs (0: none).
    fn running(&self, worker: usize) -> PyResult<u64> {
        self.check(worker)?;
        Ok(self.t.running(worker).map_or(0, |(task, _)| task))
    }

    /// Seconds `worker` has run its task (None: it runs none).
    fn elapsed(&self, worker: usize) -> PyResult<Option<f64>> {
        self.check(worker)?;
        Ok(self.t.running(worker).map(|(_, d)| d.as_secs_f64()))
    }

    /// Clears the row of `worker` and returns the task it ran (0: none):
    /// whoever takes it owns its failure, once.
    fn take(&self, worker: usize) -> PyResult<u64> {
        self.check(worker)?;
        Ok(self.t.take(worker).unwrap_or(0))
    }
}
