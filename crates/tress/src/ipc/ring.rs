//! A multi-producer, multi-consumer queue of byte messages in a ring of
//! shared memory, safe against participants killed at any instruction.

use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Segment;
use crate::error::{GetError, TooManyTaskDone};
use crate::interrupt::{Interrupt, Parked, Uninterruptible, infallible};
use crate::sys;

/// Why a [`ByteQueue`] put did not happen; the queue is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError<E = std::convert::Infallible> {
    /// The queue stayed full (bytes or messages): a non-blocking put, or
    /// the deadline passed.
    Full,
    /// The message can never be put: `size` bytes, more than the memory
    /// file's offsets can address (`max`; no real message is).
    TooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The largest message this queue takes.
        max: usize,
    },
    /// The memory for a message put out of band (see [`ByteQueue`]) could
    /// not be reserved: the machine is short of memory (`ENOMEM`,
    /// `ENOSPC`) or a limit was reached (`EFBIG`). Nothing was put.
    Memory {
        /// The message's size in bytes.
        size: usize,
        /// The system's error number, if there was one.
        errno: Option<i32>,
        /// What the system said.
        reason: String,
    },
    /// The [`Interrupt`] abandoned the wait.
    Failed(E),
}

impl<E: std::fmt::Display> std::fmt::Display for SendError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full => f.write_str("the queue is full"),
            SendError::TooLarge { size, max } => write!(
                f,
                "a message of {size} bytes is too large for the queue's memory file \
                 (at most {max} bytes)"
            ),
            SendError::Memory { size, reason, .. } => write!(
                f,
                "cannot reserve {size} bytes of shared memory for a message \
                 (out of band, in the queue's anonymous memory file): {reason}"
            ),
            SendError::Failed(e) => write!(f, "put failed: {e}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for SendError<E> {}

const MAGIC: u64 = 0x7472_6573_735f_7131; // "tress_q1"
const HEADER: usize = 4096;
const SLOT: u64 = 16;
/// How often a waiter looks for participants that died in the middle of an
/// operation (and how long a lock holder may be dead before it is noticed).
const REAP_SLICE: Duration = Duration::from_millis(20);
/// The ring's bytes whose pages a new queue reserves; the rest as the ring
/// is first used.
const INITIAL_BACKED: u64 = 64 << 10;
/// How long a call that must not wait still waits for the lock (see
/// `lock_until`).
const LOCK_GRACE: Duration = Duration::from_millis(1);
/// The longest a get polls for a message before it sleeps (see `spin_on`).
const SPIN_MAX_US: u32 = 20;
/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine.
pub(super) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// The most [`ByteQueue::set_poll_limit`] allows.
const SPIN_LIMIT_US: u32 = 1000;
/// While polling does not pay, one get in this many polls anyway.
const SPIN_PROBE: u32 = 16;

// Slot states.
const WRITING: u32 = 1;
const READY: u32 = 2;
const READING: u32 = 3;
const FREE: u32 = 4;
const PAD: u32 = 5;
const DEAD: u32 = 6;
/// An out-of-band message read and being freed (its extent punched).
const RELEASING: u32 = 7;

/// In a slot's `len`: the slot holds a reference ([`Extent`]) to a message
/// out of band, not the message.
const OOB: u64 = 1 << 63;
/// The size of a reference in its slot.
const REF_LEN: u64 = std::mem::size_of::<Extent>() as u64;
/// The largest message: file offsets are `off_t`; half the range leaves
/// the bump allocator room for as many again.
const MAX_MESSAGE: u64 = 1 << 61;
/// The most bytes one `pwritev` writes (the kernel's own limit is just
/// under 2 GiB).
const WRITE_CHUNK: usize = 64 << 20;

/// The queue's header, at the start of the segment. Every field is an
/// atomic: other processes read and write them concurrently.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    /// Bytes of the ring (a multiple of 16).
    capacity: AtomicU64,
    /// The bound in messages, 0 for none.
    max_messages: AtomicU64,
    /// The oldest byte position not yet reclaimed.
    head: AtomicU64,
    /// The next byte position to reserve.
    tail: AtomicU64,
    /// Messages admitted and not yet claimed by a reader: in the ring
    /// (WRITING or READY) or admitted by a writer that has yet to place
    /// them (see [`ByteQueue::admit_with`]). What the bound counts, and
    /// [`ByteQueue::len`].
    queued: AtomicU64,
    /// Messages ready to be taken.
    ready: AtomicU64,
    /// Messages put and not yet marked done (`task_done`).
    unfinished: AtomicU64,
    /// 0, or the pid of the process holding the lock.
    lock: AtomicU32,
    lock_waiters: AtomicU32,
    /// Bumped when a message becomes ready (getters wait on it).
    put_seq: AtomicU32,
    getters: AtomicU32,
    /// Bumped when room is made (putters wait on it).
    get_seq: AtomicU32,
    putters: AtomicU32,
    /// Bumped when `unfinished` reaches 0 (joiners wait on it).
    join_seq: AtomicU32,
    joiners: AtomicU32,
    /// Slots in flight (WRITING, READING or RELEASING), under the lock:
    /// while there are none, no participant's death can change what a
    /// sleeper waits for, and sleepers sleep without looking (see `park`).
    flight: AtomicU32,
    /// The process whose threads sleep on the queue, `MIXED` once threads
    /// of several processes have, 0 before any (see `fly`).
    sleeper_pid: AtomicU32,
    /// Until when (CLOCK_MONOTONIC, ns) a sleeper is sure to look for dead
    /// participants (the end of its slice); a time, not a count, so the
    /// mark of a watcher killed asleep expires by itself.
    watched_until: AtomicU64,
    /// Until when (CLOCK_MONOTONIC, ns) a getter polls `put_seq`, 0 if
    /// none does (see `message_ready`). A time, not a count: the mark of
    /// a poller killed mid-poll expires by itself.
    poll_until: AtomicU64,
    /// Where the next out-of-band message goes in the memory file (a page
    /// boundary past the ring; only grows: offsets are never reused).
    next_extent: AtomicU64,
    /// Extents of consumed out-of-band messages kept for reuse (see
    /// [`ByteQueue`]), under the lock.
    spares: [Spare; SPARES],
    /// The stamp of the next spare kept (the oldest is given back first).
    spare_stamp: AtomicU64,
    /// Bumped when a bounded queue's `queued` falls (admitters wait on it).
    admit_seq: AtomicU32,
    admitters: AtomicU32,
    /// The ring's bytes (from its start) whose pages are reserved: it
    /// grows as the ring is first used (see `back`).
    backed: AtomicU64,
}

/// `sleeper_pid` once sleepers of two processes were seen.
const MIXED: u32 = u32::MAX;

/// Messages of at most this many bytes are copied into the ring in the
/// critical section that reserves their slot (a copy shorter than a trip
/// through the lock).
const SMALL_MESSAGE: usize = 1024;

/// How many extents a queue keeps for reuse at most.
const SPARES: usize = 4;
/// The bytes of the spare extents a queue keeps at most, if its ring is
/// smaller (see [`ByteQueue`]); one larger extent may be kept, alone.
const SPARE_BYTES: u64 = 64 << 20;

/// An extent kept for reuse: its offset and size in whole pages (0: an
/// empty entry), and when it was kept.
#[repr(C)]
struct Spare {
    off: AtomicU64,
    size: AtomicU64,
    stamp: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER);

/// A slot's header in the ring, followed by the message.
#[repr(C)]
struct SlotHeader {
    state: AtomicU32,
    /// The writer (WRITING) or reader (READING) process.
    pid: AtomicU32,
    /// The message's length in bytes (for PAD: the slot's whole size).
    len: AtomicU64,
}

/// Where an out-of-band message lives: its offset in the memory file (a
/// page boundary) and its length in bytes. The payload of its slot.
#[repr(C)]
struct Extent {
    off: AtomicU64,
    len: AtomicU64,
}

fn slot_size(len: u64) -> u64 {
    SLOT + (len & !OOB).div_ceil(SLOT) * SLOT
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// The bytes an extent of a `len`-byte message takes (whole pages).
fn extent_size(len: u64) -> u64 {
    let page = page_size();
    len.div_ceil(page) * page
}

/// Test hook (not an API): a descriptor, or -1. When set, a put of an
/// out-of-band message in this process writes one byte to it once the
/// first part of the message is written, then stops there for good (until
/// it is killed): a writer killed mid-copy, deterministically.
#[doc(hidden)]
pub static TEST_STALL_LARGE_PUT: AtomicI32 = AtomicI32::new(-1);

/// Test hook (not an API), as [`TEST_STALL_LARGE_PUT`] for a get of an
/// out-of-band message: it stops once the message is consumed and its
/// extent listed as a spare (holding the lock: the next holder settles
/// the slot in its recount) or its pages freed (RELEASING), before its
/// slot is freed.
#[doc(hidden)]
pub static TEST_STALL_LARGE_GET: AtomicI32 = AtomicI32::new(-1);

fn stall_if_asked(hook: &AtomicI32) {
    let fd = hook.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: writing one byte from a valid buffer; then only sleeps.
        unsafe {
            libc::write(fd, b"s".as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
    }
}

/// Writes the concatenation of `parts` at `off` in the file `fd`, in as few
/// `pwritev` calls as the kernel allows (it allocates the pages as it
/// fills them: written once, never zeroed first).
fn write_parts_at(fd: libc::c_int, parts: &[&[u8]], mut off: u64) -> io::Result<()> {
    let (mut idx, mut skip) = (0usize, 0usize);
    let mut first = true;
    loop {
        while idx < parts.len() && parts[idx].len() == skip {
            idx += 1;
            skip = 0;
        }
        if idx == parts.len() {
            return Ok(());
        }
        let mut iov: Vec<libc::iovec> = Vec::new();
        let mut total = 0usize;
        for (i, part) in parts[idx..].iter().enumerate() {
            let part = if i == 0 { &part[skip..] } else { part };
            let take = part.len().min(WRITE_CHUNK - total);
            if take > 0 {
                iov.push(libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: take,
                });
            }
            total += take;
            if total == WRITE_CHUNK || iov.len() == 512 {
                break;
            }
        }
        // SAFETY: every iovec points into a part, a live slice, for at most
        // its length; the kernel only reads them. `off` is in the file's
        // range (below MAX_MESSAGE * 2).
        let n = unsafe { libc::pwritev(fd, iov.as_ptr(), iov.len() as libc::c_int, off as i64) };
        let Some(n) = io_count(n, io::ErrorKind::WriteZero) else {
            continue; // interrupted by a signal
        };
        let mut n = n?;
        off += n as u64;
        while n > 0 {
            let rest = parts[idx].len() - skip;
            if n >= rest {
                n -= rest;
                idx += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
        if first {
            first = false;
            stall_if_asked(&TEST_STALL_LARGE_PUT);
        }
    }
}

/// Copies the concatenation of `parts` to the start of `m`, a mapping
/// (read-write) of an extent reserved by this process for them, whose
/// pages are there.
fn copy_parts_to(m: &Mapped, parts: &[&[u8]]) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    assert!(total <= m.len, "the message fits its extent");
    let mut dst = m.ptr.cast::<u8>();
    let mut first = true;
    for part in parts {
        for chunk in part.chunks(WRITE_CHUNK) {
            // SAFETY: `dst` stays within the mapping (`total` bytes from its
            // start, checked above), writable, and the extent is this
            // process's (its slot WRITING) until published; the parts do
            // not overlap it.
            unsafe {
                std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst, chunk.len());
                dst = dst.add(chunk.len());
            }
            if first {
                first = false;
                stall_if_asked(&TEST_STALL_LARGE_PUT);
            }
        }
    }
    Ok(())
}

/// From this size on, a read of an out-of-band message into the reader's
/// memory ([`Message::read_at`]) runs in two threads: most of its time is
/// the page faults of the fresh memory it fills (the result), which two
/// cores take in about half the time.
const PARALLEL_READ: usize = 8 << 20;

/// Runs `fill(part, at)` on the two halves of `buf` at once (`at`: where
/// the part starts in `buf`), one in a scoped thread, when `buf` is large
/// ([`PARALLEL_READ`]); else (or if no thread can be started) here.
fn fill_in_two(
    buf: &mut [MaybeUninit<u8>],
    fill: impl Fn(&mut [MaybeUninit<u8>], usize) -> io::Result<()> + Sync,
) -> io::Result<()> {
    if buf.len() < PARALLEL_READ {
        return fill(buf, 0);
    }
    // Split at a 2 MiB boundary of the buffer.
    let half = (buf.len() / 2).next_multiple_of(2 << 20).min(buf.len());
    let (first, second) = buf.split_at_mut(half);
    let second = Mutex::new(Some(second));
    let take = || second.lock().unwrap_or_else(|e| e.into_inner()).take();
    let fill = &fill;
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("tress-read".into())
            .spawn_scoped(s, || take().map_or(Ok(()), |b| fill(b, half)));
        let mine = fill(first, 0);
        let theirs = match other {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a reading thread panicked"))),
            // No thread: the second half here too.
            Err(_) => take().map_or(Ok(()), |b| fill(b, half)),
        };
        mine.and(theirs)
    })
}

/// What a read or write system call that returned `n` did: `None` if a
/// signal interrupted it (to be retried), else the count, or the error
/// (`none` for a count of 0: no progress is an error here).
fn io_count(n: isize, none: io::ErrorKind) -> Option<io::Result<usize>> {
    match n {
        n if n < 0 => {
            let e = io::Error::last_os_error();
            (e.kind() != io::ErrorKind::Interrupted).then_some(Err(e))
        }
        0 => Some(Err(io::Error::from(none))),
        n => Some(Ok(n as usize)),
    }
}

/// Fills `buf` from the file `fd` at `at` with `pread` (as many calls as
/// it takes).
fn pread_all(fd: libc::c_int, buf: &mut [MaybeUninit<u8>], at: u64) -> io::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let want = (buf.len() - done).min(WRITE_CHUNK);
        // SAFETY: the kernel writes at most `want` bytes into `buf[done..]`,
        // writable memory of the caller's; the range of the file is the
        // extent of a published message (written in full, and nobody
        // writes it until it is released, after its reader returns).
        let n = unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().add(done).cast(),
                want,
                (at + done as u64) as i64,
            )
        };
        let Some(n) = io_count(n, io::ErrorKind::UnexpectedEof) else {
            continue; // interrupted by a signal
        };
        done += n?;
    }
    Ok(())
}

/// Frees the pages of `len` bytes at `off` in `fd` (the file keeps its
/// size). Punching a hole twice, or where nothing was written, is
/// harmless.
fn punch(fd: libc::c_int, off: u64, len: u64) {
    if len == 0 {
        return;
    }
    loop {
        // SAFETY: a valid descriptor; the range is within `off_t`.
        let r = unsafe {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off as i64,
                extent_size(len) as i64,
            )
        };
        if r == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// A message taken by [`ByteQueue::get_message_with`], for the call of its
/// reader only: in the ring, or out of band in the queue's memory file.
pub struct Message<'a> {
    q: &'a ByteQueue,
    kind: Kind<'a>,
    /// Set when the message could not be read here: it goes back to the
    /// queue.
    back: &'a Cell<bool>,
}

enum Kind<'a> {
    Ring(&'a [u8]),
    OutOfBand {
        off: u64,
        len: u64,
    },
    /// A slot whose length or reference is impossible (a corrupt peer):
    /// reading it is an error; it is freed as any message read.
    Corrupt,
}

impl Message<'_> {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self.kind {
            Kind::Ring(m) => m.len(),
            Kind::OutOfBand { len, .. } => len as usize,
            Kind::Corrupt => 0,
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is out of band (larger than the ring; see [`ByteQueue`]).
    pub fn is_out_of_band(&self) -> bool {
        matches!(self.kind, Kind::OutOfBand { .. })
    }

    /// Copies its bytes from `pos` on into `buf` (all of `buf`, which then
    /// holds them): out of band with `pread`, from the memory file straight
    /// into `buf`, nothing mapped. An error if the message ends before.
    pub fn read_at(&self, pos: usize, buf: &mut [MaybeUninit<u8>]) -> io::Result<()> {
        if let Kind::Corrupt = self.kind {
            return Err(corrupt("a message's length"));
        }
        let end = pos.checked_add(buf.len()).filter(|&e| e <= self.len());
        if end.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "past the end of the message",
            ));
        }
        match self.kind {
            Kind::Ring(m) => {
                // SAFETY: `m[pos..]` holds `buf.len()` bytes (checked
                // above); `buf` is writable memory of its own, not in the
                // ring.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        m.as_ptr().add(pos),
                        buf.as_mut_ptr().cast::<u8>(),
                        buf.len(),
                    )
                };
                Ok(())
            }
            Kind::OutOfBand { off, len } => {
                let size = extent_size(len);
                if let Ok(Some(m)) = self.q.cached(off, size, size <= CACHED_READ_MAX) {
                    let src = m.ptr as usize + pos;
                    return fill_in_two(buf, |part, at| {
                        // SAFETY: the mapping (alive: `m` outlives the
                        // threads) holds the whole extent (`len` bytes or
                        // more; `pos + buf.len()` checked above), written
                        // in full before the message was published; `part`
                        // is the caller's own memory, `at` bytes into `buf`.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                (src + at) as *const u8,
                                part.as_mut_ptr().cast::<u8>(),
                                part.len(),
                            )
                        };
                        Ok(())
                    });
                }
                fill_in_two(buf, |part, at| {
                    pread_all(self.q.fd(), part, off + (pos + at) as u64)
                })
            }
            Kind::Corrupt => unreachable!("returned above"),
        }
    }

    /// Runs `f` on its bytes: in place in the ring, or out of band mapped
    /// read-only for the call (then unmapped). If it cannot be mapped (no
    /// address space), `f` is not run and the message goes back to the
    /// queue, for another reader.
    pub fn with_bytes<T>(&self, f: impl FnOnce(&[u8]) -> T) -> io::Result<T> {
        match self.kind {
            Kind::Ring(m) => Ok(f(m)),
            Kind::Corrupt => Err(corrupt("a message's length")),
            Kind::OutOfBand { off, len } => {
                let mapped = match Mapped::new(self.q.fd(), off, len) {
                    Ok(m) => m,
                    Err(e) => {
                        self.back.set(true);
                        return Err(e);
                    }
                };
                // SAFETY: the extent was written in full before the slot
                // was published READY (Release/Acquire, then the mapping
                // made after the claim), the mapping is `len` bytes or more,
                // and nobody writes or frees it until the message is
                // released, after its reader returned; the slice does not
                // outlive `mapped` (unmapped below, and on unwinding).
                let bytes =
                    unsafe { std::slice::from_raw_parts(mapped.ptr as *const u8, len as usize) };
                let r = f(bytes);
                drop(mapped);
                Ok(r)
            }
        }
    }
}

/// A put's deadline, read off the clock only if the put has to wait (a put
/// with room reads no clock).
struct Until {
    at: Option<Instant>,
    after: Option<Duration>,
}

impl Until {
    fn at(deadline: Option<Instant>) -> Until {
        Until {
            at: deadline,
            after: None,
        }
    }

    fn after(patience: Duration) -> Until {
        Until {
            at: None,
            after: Some(patience),
        }
    }

    fn get(&mut self) -> Option<Instant> {
        if let Some(d) = self.after.take() {
            self.at = Some(Instant::now().checked_add(d).unwrap_or_else(Instant::now));
        }
        self.at
    }
}

/// The error for shared memory that says something impossible: a peer
/// wrote what no participant writes.
fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the queue's shared memory is corrupt ({what}): a participant wrote into it"),
    )
}

/// A slot reserved by `reserve`: its position, the extent of an
/// out-of-band message (offset, length) and whether it is a spare one.
type Reserved = (u64, Option<(u64, u64)>, bool);

/// An extent of the memory file mapped (read-only, or read-write for this
/// process's cache of extents, see `ByteQueue::cached`), unmapped when
/// dropped.
#[derive(Debug)]
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
    off: u64,
}

// SAFETY: a mapping of shared memory is usable from any thread; what is
// read or written through it is governed by the slots' states.
unsafe impl Send for Mapped {}
// SAFETY: as above; `Mapped` itself is never changed after `new`.
unsafe impl Sync for Mapped {}

/// The most extents a handle keeps mapped (see `ByteQueue::cached`).
const CACHED_MAPS: usize = SPARES;
/// The largest extent a reader maps to keep rather than `pread` from: a
/// message larger than this costs the page faults of its result anyway,
/// and is read without mapping (the receiver then holds the result only).
const CACHED_READ_MAX: u64 = 64 << 20;

impl Mapped {
    fn new(fd: libc::c_int, off: u64, len: u64) -> io::Result<Mapped> {
        Mapped::map(fd, off, len, false)
    }

    fn map(fd: libc::c_int, off: u64, len: u64, writable: bool) -> io::Result<Mapped> {
        let size = usize::try_from(extent_size(len))
            .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: mapping pages of a file we hold a descriptor of, at a
        // page-aligned offset inside its size (the extent was written by
        // its put); the kernel picks the address. MAP_POPULATE maps every
        // page now, in one go, rather than fault by fault.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                prot,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                off as i64,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapped {
            ptr,
            len: size,
            off,
        })
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`; the slice
        // given to the reader does not outlive it (see `get_with`).
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// A multi-producer, multi-consumer queue of byte messages in shared
/// memory: any number of processes (and threads) put and get messages of
/// any size (no limit but the machine's memory; nothing to tune).
///
/// # Design
///
/// The ring is a run of slots, each a 16-byte header (state, owning
/// process, length) and the message. A short lock in shared memory (the
/// holder's pid in a futex word) covers only the bookkeeping: a put
/// reserves its slot (state WRITING) under the lock, copies the message
/// with the lock released, then publishes it (READY) — a message of up to
/// 1 KiB is copied and published in the reserving critical section, its
/// copy being shorter than a second trip through the lock; a get claims the
/// oldest READY slot (READING), copies it out with the lock released, then
/// frees it (FREE), and space is reclaimed in ring order. So copies of
/// large messages by several processes overlap, and messages come out in
/// the order their puts reserved them, except that a message still being
/// written does not hold back the ready ones behind it.
///
/// A message larger than the ring goes
/// **out of band**, in the same memory file past the ring's end, so every
/// participant already reaches it through the descriptor it holds (no
/// descriptor passing, nothing in `/dev/shm`). Its slot in the ring holds
/// only a reference (offset and length) to its extent (whole pages) and
/// counts as one message like any other.
///
/// Extents are **reused**: the pages of a consumed message are kept for
/// the next large ones (new pages cost their allocation, zeroing and
/// freeing by the kernel, ~1.3 GB/s, several times a copy). A short list
/// in the header, under the lock, holds the *spare* extents: at most 4,
/// of at most the larger of the ring's size and 64 MiB in all, or a single
/// larger one; a reader lists the extent of the message it consumed in the
/// critical section that frees its slot, the oldest spares punched
/// (`FALLOC_FL_PUNCH_HOLE`) to make room (all of them for an extent larger
/// than the bound, which is then kept alone). A writer takes,
/// with its slot, the smallest spare of at least its message's pages and
/// at most an eighth more (the rest is punched); else new pages from a
/// bump allocator in the header (page-aligned offsets, never reused: the
/// file is sparse and 2^62 bytes of offsets do not run out). So a queue
/// that carried large messages holds up to that bound of shared memory
/// (or one message's worth, if larger) until it is closed or
/// [`trim`](Self::trim)med
/// ([`spare_bytes`](Self::spare_bytes) counts it).
///
/// The put writes the reference into its reserved slot first, then the
/// message: into a spare, through this process's mapping of it (each
/// handle keeps its last 4 extents mapped, read-write: copying into
/// mapped pages runs at memory speed, `pwrite` into the file at a fifth of
/// it); into new pages, with `pwritev` (which allocates them as it fills
/// them: short of memory, the put fails with [`SendError::Memory`] naming
/// the size and the queue is unchanged). Then it publishes it. The get
/// hands the reader a [`Message`] ([`get_message_with`](Self::get_message_with)):
/// [`Message::read_at`] copies it straight into the reader's memory (from
/// the handle's mapping of the extent for one of 64 MiB or less, which it
/// keeps; else with `pread`, nothing mapped), in two threads from 8 MiB
/// on (most of that time is the page faults of the reader's fresh
/// memory); [`Message::with_bytes`] maps it for the call
/// ([`get_with`](Self::get_with) does). The file's size only grows (holes
/// take no memory), so a process that opens the queue
/// ([`open_fd`](Self::open_fd)) maps the header and the ring only.
///
/// # Participants that die
///
/// A process killed with `SIGKILL` at any point leaves the queue usable:
///
/// - killed **holding the lock** (a few dozen instructions of bookkeeping):
///   the next process that wants the lock sees its holder gone (within
///   20 ms), takes it over and recounts the ring; at worst
///   [`unfinished_tasks`](Self::unfinished_tasks) can stay one too high
///   (a `join` then waits for a task that never ends; use a timeout);
/// - killed **writing** a message: the slot is dropped (DEAD) by the next
///   waiter that looks (within 20 ms), and the pages an out-of-band
///   message had been given are freed; readers never see a part of it;
/// - killed **reading** a message: the message is made ready again and
///   delivered to another reader — what was fully put is delivered —
///   unless the reader had finished with it (an out-of-band message being
///   freed, RELEASING): then the reaper frees its pages and its slot, and
///   it is not delivered twice;
/// - killed between listing a spare extent and changing its slot (a
///   writer taking one, a reader giving one back; both under the lock):
///   the lock's next holder finds the extent both listed and referred to
///   by a WRITING or READING slot and settles it in its recount: the
///   writer's slot keeps it (unlisted; the reaper frees it as any dead
///   writer's), the reader's gave it up (the slot is freed, the message
///   not delivered again). Nothing leaks beyond the spares' bound, nothing
///   is delivered twice, and a listed spare is never written by two;
/// - killed while publishing a message (under the lock): as for any lock
///   holder, the next one recounts.
///
/// Liveness is judged by pid (`/proc/<pid>/stat`; a zombie counts as gone),
/// so the participants must share a pid namespace; a pid reused within the
/// 20 ms slice would be taken for its dead predecessor's, which delays the
/// recovery until that process exits.
///
/// # Examples
///
/// ```
/// use tress::ipc::ByteQueue;
///
/// let q = ByteQueue::create(1 << 16, 0).unwrap();
/// q.put(&[b"hello ", b"world"]).unwrap();
/// let got = q.get(|m| m.to_vec());
/// assert_eq!(got, b"hello world");
/// assert!(q.try_get(|m| m.len()).is_err());
///
/// // Larger than the ring: out of band, read in place, then freed.
/// let big = vec![7u8; 1 << 20];
/// q.put(&[&big]).unwrap();
/// assert_eq!(q.get(|m| (m.len(), m[12345])), (1 << 20, 7));
/// ```
#[derive(Debug)]
pub struct ByteQueue {
    seg: Segment,
    /// The ring's size in bytes (read once: see `cap`).
    cap: u64,
    /// How long this process's gets poll before sleeping, in microseconds:
    /// adaptive (see `spin_on`), and the gets since the last poll.
    spin_us: AtomicU32,
    spin_skipped: AtomicU32,
    /// The longest this process's gets poll, in microseconds (0: they do
    /// not; see [`set_polling`](Self::set_polling) and
    /// [`set_poll_limit`](Self::set_poll_limit)).
    spin_max: AtomicU32,
    /// The `poll_until` mark this handle's last successful poll set, until
    /// its get has claimed a message (then taken off; see `unmark`).
    my_mark: AtomicU64,
    /// Extents this process keeps mapped (see `cached`), the most
    /// recently used last.
    maps: Mutex<Vec<Arc<Mapped>>>,
}

impl ByteQueue {
    /// A new queue whose ring holds `capacity` bytes (rounded up to a
    /// multiple of 16; a message takes 16 bytes more than its length, one
    /// out of band 32 in all) and at most `max_messages` messages (0: no
    /// bound but the bytes).
    pub fn create(capacity: usize, max_messages: usize) -> io::Result<ByteQueue> {
        let cap = (capacity.max(64) as u64).div_ceil(SLOT) * SLOT;
        let len = usize::try_from(cap)
            .ok()
            .and_then(|c| c.checked_add(HEADER))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "capacity too large"))?;
        let backed = cap.min(INITIAL_BACKED);
        let seg = Segment::create_reserving(len, HEADER + backed as usize, "queue")?;
        let q = ByteQueue::handle(seg, cap);
        let h = q.header();
        h.capacity.store(cap, Ordering::Relaxed);
        h.backed.store(backed, Ordering::Relaxed);
        h.max_messages.store(max_messages as u64, Ordering::Relaxed);
        h.next_extent
            .store(extent_size(HEADER as u64 + cap), Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
        Ok(q)
    }

    /// A handle on the ring in `seg`, with this handle's own polling state.
    fn handle(seg: Segment, cap: u64) -> ByteQueue {
        ByteQueue {
            seg,
            cap,
            spin_us: AtomicU32::new(SPIN_MAX_US),
            spin_skipped: AtomicU32::new(0),
            spin_max: AtomicU32::new(SPIN_MAX_US),
            my_mark: AtomicU64::new(0),
            maps: Mutex::new(Vec::new()),
        }
    }

    /// The queue in `seg`, a segment made by [`create`](Self::create) (in
    /// this or another process; see [`segment`](Self::segment)).
    pub fn open(seg: Segment) -> io::Result<ByteQueue> {
        if seg.len() < HEADER + 64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a tress queue segment (too small)",
            ));
        }
        // SAFETY: the segment is at least HEADER bytes (checked above),
        // page-aligned; the header is all atomics.
        let h = unsafe { &*(seg.as_ptr() as *const Header) };
        let cap = h.capacity.load(Ordering::Relaxed);
        if h.magic.load(Ordering::Acquire) != MAGIC
            || cap % SLOT != 0
            || cap < 64
            || (cap as usize).saturating_add(HEADER) > seg.len()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a tress queue segment (bad header)",
            ));
        }
        Ok(ByteQueue::handle(seg, cap))
    }

    /// The queue in the memory file behind `fd` (made by
    /// [`create`](Self::create), inherited or received): maps its header
    /// and ring only, not the out-of-band messages past them (the file
    /// grows with those; see [`ByteQueue`]).
    pub fn open_fd(fd: OwnedFd) -> io::Result<ByteQueue> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::from(fd);
        let mut first = [0u8; 16];
        file.read_exact_at(&mut first, 0).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "not a tress queue segment (too small)",
            )
        })?;
        let cap = u64::from_ne_bytes(first[8..].try_into().expect("8 bytes"));
        let len = usize::try_from(cap)
            .ok()
            .and_then(|c| c.checked_add(HEADER))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a tress queue segment (bad header)",
                )
            })?;
        ByteQueue::open(Segment::from_fd_len(OwnedFd::from(file), len)?)
    }

    /// The shared memory the queue lives in (its descriptor reaches other
    /// processes). Its mapping is the header and the ring; the memory file
    /// is longer when out-of-band messages were put.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    fn header(&self) -> &Header {
        // SAFETY: the segment is at least HEADER bytes, page-aligned, and the
        // header is all atomics, which any bit pattern (zeroes at creation)
        // makes valid; it lives as long as `self.seg`.
        unsafe { &*(self.seg.as_ptr() as *const Header) }
    }

    /// The ring's size, as this handle read it once (a peer that changes
    /// the header's cannot make this process address past its mapping).
    fn cap(&self) -> u64 {
        self.cap
    }

    /// The ring's span of slots (head, tail), the lock held; an empty one
    /// if the header says something impossible (a corrupt peer), so every
    /// walk of the ring ends within `cap / 16` steps.
    fn span(&self) -> (u64, u64) {
        let h = self.header();
        let (head, tail) = (
            h.head.load(Ordering::Relaxed),
            h.tail.load(Ordering::Relaxed),
        );
        if tail < head || tail - head > self.cap() {
            (head, head)
        } else {
            (head, tail)
        }
    }

    /// The slot header at ring position `pos`.
    fn slot(&self, pos: u64) -> &SlotHeader {
        let off = ((pos % self.cap()) & !(SLOT - 1)) as usize;
        // SAFETY: `off` is a multiple of 16 below the ring's size and every
        // slot header fits before the ring's end (slots are multiples of 16
        // and the ring's size too); the fields are atomics.
        unsafe { &*(self.seg.as_ptr().add(HEADER + off) as *const SlotHeader) }
    }

    /// The message bytes of the slot at `pos`.
    fn payload(&self, pos: u64, len: u64) -> *mut u8 {
        let off = (pos % self.cap()) as usize + SLOT as usize;
        debug_assert!(off as u64 + len <= self.cap());
        // SAFETY: in bounds: a slot never wraps around the ring's end.
        unsafe { self.seg.as_ptr().add(HEADER + off) }
    }

    /// Whether this process's gets (through this handle) poll briefly
    /// before they sleep (the default). A reader that shares a small
    /// machine with busy threads of its own process should not: its poll
    /// takes a core from them (a process pool's result reader, whose
    /// process also runs the caller).
    pub fn set_polling(&self, on: bool) {
        self.set_poll_limit(if on { SPIN_MAX_US } else { 0 });
    }

    /// The longest a get through this handle polls before it sleeps, in
    /// microseconds (default 20; 0 turns polling off; at most 1000). A
    /// reader whose messages follow its own replies after a known delay
    /// (a worker of a pool, between a result and the next task of a
    /// caller waiting for it) polls across that delay instead of sleeping
    /// and being woken. The poll stays adaptive: where it does not pay, it
    /// shrinks.
    pub fn set_poll_limit(&self, micros: u32) {
        let micros = micros.min(SPIN_LIMIT_US);
        self.spin_max.store(micros, Ordering::Relaxed);
        self.spin_us.store(micros, Ordering::Relaxed);
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.cap() as usize
    }

    /// The bytes of shared memory the header and the ring hold now: the
    /// ring's pages are reserved as it is first used (see [`ByteQueue`]),
    /// up to [`capacity`](Self::capacity) and the header's page.
    pub fn ring_memory(&self) -> usize {
        HEADER + self.header().backed.load(Ordering::Relaxed) as usize
    }

    /// The largest message the queue takes, in bytes: no limit but memory
    /// (`usize::MAX`), as a message larger than the ring goes out of band.
    pub fn max_message(&self) -> usize {
        usize::MAX
    }

    /// Whether a message of `len` bytes goes out of band: when the ring
    /// can never hold it. Not sooner: out of band, a message costs a
    /// system call or two and, unless a spare extent of its size is there,
    /// the allocation and freeing of its pages (about 1.3 GB/s here, for
    /// any size from 1 MiB up), while a copy through the ring runs at
    /// memory speed (10-20 GB/s for 1-6 MiB messages in an 8 MiB ring,
    /// even one at a time), so a message the ring can hold waits for room
    /// there.
    fn out_of_band(&self, len: u64) -> bool {
        slot_size(len) > self.cap()
    }

    fn fd(&self) -> libc::c_int {
        use std::os::fd::AsFd;
        self.seg.as_fd().as_raw_fd()
    }

    /// Whether `size` bytes at `off` can be an extent: page-aligned, past
    /// the ring, within the memory file (mapping past its end would be a
    /// `SIGBUS` at the first touch).
    fn extent_sound(&self, off: u64, size: u64) -> bool {
        // SAFETY: an all-zero `stat` is a valid out-buffer for fstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the segment's descriptor (open while `self` lives) and a
        // valid out-pointer.
        if unsafe { libc::fstat(self.fd(), &mut st) } != 0 {
            return false;
        }
        // A page the file's end falls in is whole in a mapping.
        let file_end = (st.st_size as u64).next_multiple_of(page_size());
        off % page_size() == 0
            && off >= HEADER as u64 + self.cap()
            && off.checked_add(size).is_some_and(|end| end <= file_end)
    }

    /// The reference in the out-of-band slot at `pos`: offset and length.
    fn extent_at(&self, pos: u64) -> (u64, u64) {
        let p = self.payload(pos, REF_LEN) as *const Extent;
        // SAFETY: the slot's payload holds an `Extent` (16 bytes of atomics,
        // 16-aligned in the page-aligned ring), written by `reserve` before
        // the slot's state, which the caller read (Acquire).
        let e = unsafe { &*p };
        (e.off.load(Ordering::Relaxed), e.len.load(Ordering::Relaxed))
    }

    /// The bound in messages (0: none).
    pub fn max_messages(&self) -> usize {
        self.header().max_messages.load(Ordering::Relaxed) as usize
    }

    /// Messages put and not yet taken: ready, being written, or admitted
    /// and not yet placed (see [`admit_with`](Self::admit_with)).
    pub fn len(&self) -> usize {
        self.header().queued.load(Ordering::Relaxed) as usize
    }

    /// Whether no message is ready to be taken now.
    pub fn is_empty(&self) -> bool {
        self.header().ready.load(Ordering::Relaxed) == 0
    }

    /// Messages put and not yet marked done with [`task_done`](Self::task_done).
    pub fn unfinished_tasks(&self) -> usize {
        self.header().unfinished.load(Ordering::Relaxed) as usize
    }

    // ------------------------------------------------------------ the lock

    /// Takes the lock, as long as it takes (its holder dead: taken over).
    /// For the steps that must finish once begun (publishing a message
    /// written, freeing one read): the wait lets go of the interrupt's
    /// resource (the GIL) but is not abandoned.
    fn lock<I: Interrupt + ?Sized>(&self, interrupt: &mut I) {
        if !self.try_lock_fast() {
            let taken = self.lock_slow(None, interrupt, false);
            debug_assert!(matches!(taken, Ok(true)));
        }
    }

    /// Takes the lock unless `deadline` passes first (`Ok(false)`) or the
    /// interrupt abandons the wait: a holder that is stopped (`SIGSTOP`, a
    /// debugger, a frozen cgroup) does not make the caller ignore its
    /// timeout or Ctrl-C. A call that must not wait (a deadline already
    /// past) still waits out a short critical section (a millisecond).
    fn lock_until<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        if self.try_lock_fast() {
            return Ok(true);
        }
        let grace = Instant::now().checked_add(LOCK_GRACE);
        let deadline = deadline.map(|d| grace.map_or(d, |g| d.max(g)));
        self.lock_slow(deadline, interrupt, true)
    }

    #[inline]
    fn try_lock_fast(&self) -> bool {
        self.header()
            .lock
            .compare_exchange(0, sys::process_id(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[cold]
    fn lock_slow<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
        abandon: bool,
    ) -> Result<bool, I::Error> {
        let h = self.header();
        let me = sys::process_id();
        let mut step = 0u32;
        loop {
            let owner = h.lock.load(Ordering::Relaxed);
            if owner == 0 {
                if h.lock
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(true);
                }
                continue;
            }
            if step < 8 {
                crate::interrupt::backoff(step);
                step += 1;
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(false);
            }
            // A live holder leaves within microseconds; a wait this long
            // means a holder dead (looked for at each slice's end) or
            // stopped.
            let mut until = now.checked_add(REAP_SLICE);
            if let Some(d) = deadline {
                until = Some(until.map_or(d, |u| u.min(d)));
            }
            h.lock_waiters.fetch_add(1, Ordering::SeqCst);
            interrupt.before_sleep();
            let wake = sys::wait_shared(&h.lock, owner, until);
            interrupt.after_sleep();
            h.lock_waiters.fetch_sub(1, Ordering::SeqCst);
            if abandon && wake != sys::Wake::Woken {
                interrupt.check()?;
            }
            if h.lock.load(Ordering::Relaxed) == owner
                && !sys::process_alive(owner)
                && h.lock
                    .compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // The holder died inside a critical section: every step of
                // one leaves the ring consistent, only the counts may be off.
                self.recount();
                return Ok(true);
            }
        }
    }

    fn unlock(&self) {
        let h = self.header();
        h.lock.store(0, Ordering::SeqCst);
        if h.lock_waiters.load(Ordering::SeqCst) > 0 {
            sys::wake_shared(&h.lock, 1);
        }
    }

    /// Test hook (not an API): takes the queue's lock and keeps it, as a
    /// participant stopped inside a critical section does.
    #[doc(hidden)]
    pub fn test_hold_lock(&self) {
        self.lock(&mut Uninterruptible);
    }

    /// Recounts `ready` and `flight` from the slots (the lock held).
    fn recount(&self) {
        let h = self.header();
        let (mut pos, tail) = self.span();
        let (mut ready, mut flight) = (0, 0);
        let mut freed = false;
        while pos < tail {
            let s = self.slot(pos);
            let mut state = s.state.load(Ordering::Acquire);
            let len = s.len.load(Ordering::Relaxed);
            if len & OOB != 0 && matches!(state, WRITING | READING | RELEASING) {
                // The holder died between listing a spare and its slot's
                // change (see `reserve` and `get_message_with`): a writer's
                // slot keeps the extent (unlisted here; the reaper frees
                // it), a reader's gave it to the list (the slot is freed).
                if let Some(i) = self.spare_at(self.extent_at(pos).0) {
                    if state == WRITING {
                        self.header().spares[i].size.store(0, Ordering::Release);
                    } else {
                        s.state.store(FREE, Ordering::Release);
                        state = FREE;
                        freed = true;
                    }
                }
            }
            match state {
                WRITING | READING | RELEASING => flight += 1,
                READY => ready += 1,
                _ => {}
            }
            pos += if state == PAD { len } else { slot_size(len) };
        }
        h.ready.store(ready, Ordering::Relaxed);
        h.flight.store(flight, Ordering::SeqCst);
        if freed {
            self.reclaim();
        }
    }

    /// The size of the slot at `pos` in the ring.
    fn size_at(&self, pos: u64) -> u64 {
        let s = self.slot(pos);
        let len = s.len.load(Ordering::Relaxed);
        let size = if s.state.load(Ordering::Acquire) == PAD {
            len
        } else {
            slot_size(len)
        };
        // At least one slot header and at most the ring, whatever a
        // corrupt peer wrote: a walk of the ring always moves on and ends.
        size.clamp(SLOT, self.cap()) & !(SLOT - 1)
    }

    /// Reclaims the freed slots at the head (the lock held); wakes putters
    /// if room was made.
    fn reclaim(&self) {
        let h = self.header();
        let (mut head, tail) = self.span();
        let start = head;
        while head < tail {
            let state = self.slot(head).state.load(Ordering::Acquire);
            if !matches!(state, FREE | PAD | DEAD) {
                break;
            }
            head += self.size_at(head);
        }
        if head != start {
            h.head.store(head.min(tail), Ordering::Release);
            self.room_made();
        }
    }

    fn room_made(&self) {
        let h = self.header();
        h.get_seq.fetch_add(1, Ordering::SeqCst);
        if h.putters.load(Ordering::SeqCst) > 0 {
            sys::wake_shared(&h.get_seq, u32::MAX);
        }
    }

    /// Takes this handle's poll mark off the header (if no later poll
    /// replaced it), once the poll's get claimed its message.
    fn unmark(&self) {
        let mark = self.my_mark.swap(0, Ordering::Relaxed);
        if mark != 0 {
            let _ = self.header().poll_until.compare_exchange(
                mark,
                0,
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
        }
    }

    /// Tells getters a message is ready: a sleeping one is woken, unless
    /// a getter is polling and this is the only ready message (the poller
    /// takes it; waking a sleeper as well would only have it find the ring
    /// empty again, a system call and a context switch for nothing). A
    /// poller whose poll ends re-reads `put_seq` (bumped here first) before
    /// it sleeps, so it cannot miss the message.
    fn message_ready(&self) {
        let h = self.header();
        h.put_seq.fetch_add(1, Ordering::SeqCst);
        if h.getters.load(Ordering::SeqCst) > 0 {
            let polled = h.ready.load(Ordering::SeqCst) <= 1
                && monotonic_ns() < h.poll_until.load(Ordering::SeqCst);
            if !polled {
                sys::wake_shared(&h.put_seq, 1);
            }
        }
    }

    /// Looks for participants that died mid-operation (the lock held):
    /// a dead writer's slot is dropped (its out-of-band memory freed), a
    /// dead reader's message is made ready again, unless the reader had
    /// consumed it (RELEASING: its memory is freed, then the slot).
    fn reap(&self) {
        let h = self.header();
        let (mut pos, tail) = self.span();
        let mut revived = false;
        let mut dropped = false;
        let mut writers_gone = 0;
        while pos < tail {
            let s = self.slot(pos);
            let state = s.state.load(Ordering::Acquire);
            if matches!(state, WRITING | READING | RELEASING) {
                let pid = s.pid.load(Ordering::Relaxed);
                let dead = !sys::process_alive(pid);
                if dead && state != READING && s.len.load(Ordering::Relaxed) & OOB != 0 {
                    // Freed before the slot: a reaper killed in between
                    // leaves the slot to the next one, which punches again.
                    let (off, len) = self.extent_at(pos);
                    punch(self.fd(), off, len);
                }
                let next = match state {
                    WRITING => DEAD,
                    READING => READY,
                    _ => FREE,
                };
                if dead
                    && s.state
                        .compare_exchange(state, next, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    self.land();
                    if state == RELEASING {
                        dropped = true;
                    } else if state == WRITING {
                        // Its admission goes with it (`unadmit`, below).
                        writers_gone += 1;
                        dropped = true;
                    } else {
                        h.queued.fetch_add(1, Ordering::SeqCst);
                        h.ready.fetch_add(1, Ordering::Relaxed);
                        revived = true;
                    }
                }
            }
            pos += self.size_at(pos);
        }
        if dropped {
            self.reclaim();
        }
        for _ in 0..writers_gone {
            self.unadmit();
        }
        if revived {
            self.message_ready();
        }
    }

    fn tasks_maybe_done(&self) {
        let h = self.header();
        if h.unfinished.load(Ordering::SeqCst) == 0 {
            h.join_seq.fetch_add(1, Ordering::SeqCst);
            if h.joiners.load(Ordering::SeqCst) > 0 {
                sys::wake_shared(&h.join_seq, u32::MAX);
            }
        }
    }

    // ------------------------------------------------------------ put

    /// Puts one message, the concatenation of `parts`, waiting as long as
    /// it takes for room.
    pub fn put(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        self.put_with(parts, None, &mut Uninterruptible)
    }

    /// Puts one message if there is room now.
    pub fn try_put(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        self.put_with(parts, Some(Instant::now()), &mut Uninterruptible)
    }

    /// Puts one message, the concatenation of `parts`, waiting for room
    /// until `deadline` (`None`: as long as it takes) as `interrupt` allows.
    /// A bounded queue's put is [`admit_with`](Self::admit_with), then
    /// [`place_with`](Self::place_with) (a failure to place takes the
    /// admission back); without a bound the message is counted in the
    /// critical section that reserves its slot.
    pub fn put_with<I: Interrupt + ?Sized>(
        &self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<(), SendError<I::Error>> {
        Self::check_size(parts)?;
        if self.header().max_messages.load(Ordering::Relaxed) == 0 {
            // No bound to wait for: counted where its slot is reserved,
            // under the lock (no trip of another cache line per put).
            return self.place(parts, Until::at(deadline), interrupt, true);
        }
        self.admit_with(deadline, interrupt)?;
        self.place(parts, Until::at(deadline), interrupt, false)
            .inspect_err(|_| self.unadmit())
    }

    /// The message's length, or `TooLarge` for one no queue can hold.
    pub fn check_size<E>(parts: &[&[u8]]) -> Result<usize, SendError<E>> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len as u64 > MAX_MESSAGE {
            return Err(SendError::TooLarge {
                size: len,
                max: MAX_MESSAGE as usize,
            });
        }
        Ok(len)
    }

    /// Admits one message: counts it as queued (and as an unfinished
    /// task), waiting until `deadline` while a bounded queue holds its
    /// bound. The caller then places it with
    /// [`place_with`](Self::place_with), at once or later (a writer that
    /// keeps messages of its own while the ring has no room, as
    /// [`Feeder`](super::Feeder) does), or takes the admission back with
    /// [`unadmit`](Self::unadmit). An admitted message counts in
    /// [`len`](Self::len) and against the bound from now on, as
    /// multiprocessing's queue counts an item from its `put`. A process
    /// that dies holding admissions leaves them counted (as
    /// multiprocessing's semaphore stays acquired).
    pub fn admit_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<(), SendError<I::Error>> {
        let h = self.header();
        let max = h.max_messages.load(Ordering::Relaxed);
        loop {
            let seen = h.admit_seq.load(Ordering::SeqCst);
            let admitted = h
                .queued
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (max == 0 || n < max).then_some(n + 1)
                })
                .is_ok();
            if admitted {
                h.unfinished.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(SendError::Full);
            }
            let parked = self.park(&h.admit_seq, seen, deadline, interrupt, &h.admitters, false);
            if let Err(e) = parked {
                return Err(SendError::Failed(e));
            }
        }
    }

    /// Takes back an admission (see [`admit_with`](Self::admit_with)) of a
    /// message that will not be placed.
    pub fn unadmit(&self) {
        let h = self.header();
        let _ = h
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        self.admission_freed();
        let _ = h
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        self.tasks_maybe_done();
    }

    /// Wakes a writer waiting for the bound, if any: `queued` fell.
    fn admission_freed(&self) {
        let h = self.header();
        if h.max_messages.load(Ordering::Relaxed) != 0 {
            h.admit_seq.fetch_add(1, Ordering::SeqCst);
            if h.admitters.load(Ordering::SeqCst) > 0 {
                sys::wake_shared(&h.admit_seq, 1);
            }
        }
    }

    /// [`place_with`](Self::place_with) for as long as readers keep making
    /// room: `Full` once a stretch of `patience` went by without any room
    /// made (no reader is taking messages now), not sooner. A writer that
    /// keeps what the ring cannot take ([`Feeder`](super::Feeder)) waits
    /// here while a reader drains the ring, as a blocking put would, and
    /// keeps the message only once the readers have stalled.
    ///
    /// `admitted`: the message was admitted ([`admit_with`](Self::admit_with));
    /// else it is counted as it is placed, and not at all on an error (a
    /// queue without a bound only: one with a bound admits first).
    pub fn place_while_drained<I: Interrupt + ?Sized>(
        &self,
        parts: &[&[u8]],
        patience: Duration,
        interrupt: &mut I,
        admitted: bool,
    ) -> Result<(), SendError<I::Error>> {
        let h = self.header();
        debug_assert!(admitted || h.max_messages.load(Ordering::Relaxed) == 0);
        loop {
            let seen = h.get_seq.load(Ordering::SeqCst);
            match self.place(parts, Until::after(patience), interrupt, !admitted) {
                Err(SendError::Full) if h.get_seq.load(Ordering::SeqCst) != seen => {}
                r => return r,
            }
        }
    }

    /// Places an admitted message (see [`admit_with`](Self::admit_with)),
    /// the concatenation of `parts`, in the ring, waiting for room until
    /// `deadline` as `interrupt` allows. On an error the message is still
    /// admitted: the caller places it later or takes it back.
    pub fn place_with<I: Interrupt + ?Sized>(
        &self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<(), SendError<I::Error>> {
        self.place(parts, Until::at(deadline), interrupt, false)
    }

    /// [`place_with`](Self::place_with); with `count`, the message is
    /// counted (queued, unfinished) as its slot is reserved, under the lock,
    /// and uncounted again if it is not put after all.
    fn place<I: Interrupt + ?Sized>(
        &self,
        parts: &[&[u8]],
        mut until: Until,
        interrupt: &mut I,
        count: bool,
    ) -> Result<(), SendError<I::Error>> {
        let len = Self::check_size(parts)?;
        let h = self.header();
        // A large message goes out of band: its slot holds a reference to
        // an extent of the memory file past the ring (a spare one, or new
        // pages), taken with the slot.
        let oob = self.out_of_band(len as u64);
        if oob && h.next_extent.load(Ordering::Relaxed) > MAX_MESSAGE {
            return Err(SendError::TooLarge {
                size: len,
                max: MAX_MESSAGE as usize,
            });
        }
        let (pos, extent, spare) = loop {
            let seen = h.get_seq.load(Ordering::SeqCst);
            if !self.try_lock_fast() {
                match self.lock_until(until.get(), interrupt) {
                    Ok(true) => {}
                    Ok(false) => return Err(SendError::Full),
                    Err(e) => return Err(SendError::Failed(e)),
                }
            }
            let reserved = match self.reserve(len as u64, oob, count) {
                Ok(r) => r,
                Err(e) => {
                    self.unlock();
                    return Err(SendError::Memory {
                        size: len,
                        errno: e.raw_os_error(),
                        reason: e.to_string(),
                    });
                }
            };
            if let Some((pos, None, _)) = reserved {
                if len <= SMALL_MESSAGE {
                    // A small message is copied and published in the
                    // critical section that reserved its slot: one trip
                    // through the lock instead of two (a process killed
                    // in it leaves a WRITING slot to the next holder).
                    self.write_parts(pos, len as u64, parts);
                    self.publish(pos);
                    self.unlock();
                    self.message_ready();
                    return Ok(());
                }
            }
            // In flight from here to `publish`.
            let flew = reserved.is_some() && self.fly();
            self.unlock();
            if let Some(reserved) = reserved {
                if flew {
                    self.watch_wake();
                }
                break reserved;
            }
            let deadline = until.get();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(SendError::Full);
            }
            let parked = self.park(&h.get_seq, seen, deadline, interrupt, &h.putters, false);
            if let Err(e) = parked {
                return Err(SendError::Failed(e));
            }
        };
        if let Some((off, len)) = extent {
            // A spare extent (its pages there): copied into this process's
            // mapping of it; new pages: written into the file, which
            // allocates them (a failure is an error, not a SIGBUS).
            let written = if spare {
                self.cached(off, extent_size(len), true)
                    .and_then(|m| copy_parts_to(m.as_deref().expect("created"), parts))
            } else {
                write_parts_at(self.fd(), parts, off)
            };
            if let Err(e) = written {
                // Nothing put: the pages written so far freed, the slot
                // dropped (a process killed in here leaves both to the
                // reaper: a WRITING slot whose writer is gone).
                self.lock(interrupt);
                punch(self.fd(), off, len);
                self.slot(pos).state.store(DEAD, Ordering::Release);
                self.land();
                self.reclaim();
                self.unlock();
                if count {
                    self.unadmit();
                }
                return Err(SendError::Memory {
                    size: len as usize,
                    errno: e.raw_os_error(),
                    reason: e.to_string(),
                });
            }
        } else {
            self.write_parts(pos, len as u64, parts);
        }
        self.lock(interrupt);
        self.publish(pos);
        self.land();
        self.unlock();
        self.message_ready();
        Ok(())
    }

    /// Copies `parts` (`len` bytes in all) into the reserved slot at `pos`.
    fn write_parts(&self, pos: u64, len: u64, parts: &[&[u8]]) {
        let mut dst = self.payload(pos, len);
        for part in parts {
            // SAFETY: the slot at `pos` was reserved for this process
            // (WRITING): nobody else reads or writes its `len` bytes until
            // it is published; the parts do not overlap the ring and add up
            // to `len` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), dst, part.len());
                dst = dst.add(part.len());
            }
        }
    }

    /// Publishes the written slot at `pos` (the lock held). Published and
    /// counted under the lock, as claims uncount: `ready` is then exact (and
    /// a process killed in between leaves both to the lock's next holder's
    /// recount).
    fn publish(&self, pos: u64) {
        self.slot(pos).state.store(READY, Ordering::Release);
        self.header().ready.fetch_add(1, Ordering::SeqCst);
    }

    /// One more slot in flight (the lock held): whether a sleeper should
    /// be woken to watch it (the caller then calls `watch_wake` once it let
    /// go of the lock): one may sleep in another process (a sleeper of this
    /// process dies with the slot's owner, and needs no watching) and none
    /// watches, or was woken to, in the last slice.
    fn fly(&self) -> bool {
        let h = self.header();
        h.flight.fetch_add(1, Ordering::SeqCst);
        let sleeper = h.sleeper_pid.load(Ordering::Relaxed);
        sleeper != 0
            && sleeper != sys::process_id()
            && monotonic_ns() >= h.watched_until.load(Ordering::SeqCst)
    }

    /// One slot fewer in flight (the lock held).
    fn land(&self) {
        let _ = self
            .header()
            .flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// A slot went in flight while no sleeper watched: one sleeper, if any,
    /// is woken to watch (see `park`), so a participant that dies with it
    /// is noticed though every sleeper had gone to sleep without looking.
    fn watch_wake(&self) {
        let h = self.header();
        // The one woken watches (if the slot is still in flight when it
        // looks) for a slice: no other wake until then, so a stream of
        // claims wakes a sleeper at most once a slice, not once a claim.
        let mark = monotonic_ns() + REAP_SLICE.as_nanos() as u64;
        h.watched_until.fetch_max(mark, Ordering::SeqCst);
        for (word, waiters) in [
            (&h.put_seq, &h.getters),
            (&h.get_seq, &h.putters),
            (&h.admit_seq, &h.admitters),
            (&h.join_seq, &h.joiners),
        ] {
            if waiters.load(Ordering::SeqCst) > 0 {
                word.fetch_add(1, Ordering::SeqCst);
                sys::wake_shared(word, 1);
                return;
            }
        }
    }

    /// Reserves a slot for `len` bytes (the lock held), or, `oob`, for a
    /// reference to an extent of the memory file for them (a spare one
    /// if one fits, else new pages): its position and the extent (offset,
    /// length), or `None` when there is no room.
    fn reserve(&self, len: u64, oob: bool, count: bool) -> io::Result<Option<Reserved>> {
        let msg_len = len;
        let len = if oob { REF_LEN | OOB } else { len };
        let h = self.header();
        let cap = self.cap();
        let mut tail = h.tail.load(Ordering::Relaxed);
        let need = slot_size(len);
        if h.head.load(Ordering::Relaxed) == tail && tail % cap != 0 {
            // An empty ring: start over at its beginning, so a message as
            // large as the ring fits whenever it is empty, and a queue that
            // is often empty uses (and backs) only its first pages.
            tail += cap - tail % cap;
            h.head.store(tail, Ordering::Release);
            h.tail.store(tail, Ordering::Release);
        }
        let head = h.head.load(Ordering::Relaxed);
        if tail < head || tail - head > cap || tail % SLOT != 0 {
            return Err(corrupt("its head and tail"));
        }
        let off = tail % cap;
        let pad = if off + need > cap { cap - off } else { 0 };
        if tail - head + pad + need > cap {
            return Ok(None);
        }
        // The highest byte of the ring this writes (a pad's header at the
        // end, then the slot at the start): its pages reserved first.
        let top = if pad > 0 {
            need.max(off + SLOT)
        } else {
            off + need
        };
        self.back(top)?;
        if pad > 0 {
            let s = self.slot(tail);
            s.len.store(pad, Ordering::Relaxed);
            s.pid.store(0, Ordering::Relaxed);
            s.state.store(PAD, Ordering::Release);
            tail += pad;
            h.tail.store(tail, Ordering::Release);
        }
        // The extent: a spare one that fits (its pages already there), or
        // new pages from the bump allocator.
        let spare = if oob {
            self.fit_spare(extent_size(msg_len))
        } else {
            None
        };
        let extent = oob.then(|| {
            let off = match spare {
                Some(i) => h.spares[i].off.load(Ordering::Relaxed),
                None => h
                    .next_extent
                    .fetch_add(extent_size(msg_len), Ordering::Relaxed),
            };
            (off, msg_len)
        });
        let s = self.slot(tail);
        s.len.store(len, Ordering::Relaxed);
        s.pid.store(sys::process_id(), Ordering::Relaxed);
        if let Some((off, ext_len)) = extent {
            // The reference is in place before the slot is WRITING (and
            // before a byte of the extent is written), so a reaper that
            // finds the writer dead knows which pages to free.
            let p = self.payload(tail, REF_LEN) as *const Extent;
            // SAFETY: the slot at `tail` is reserved here, under the lock,
            // and its 16-byte payload fits in the ring (`need` was checked);
            // the fields are atomics.
            let e = unsafe { &*p };
            e.off.store(off, Ordering::Relaxed);
            e.len.store(ext_len, Ordering::Relaxed);
        }
        s.state.store(WRITING, Ordering::Release);
        if count {
            h.queued.fetch_add(1, Ordering::SeqCst);
            h.unfinished.fetch_add(1, Ordering::SeqCst);
        }
        h.tail.store(tail + need, Ordering::Release);
        if let Some(i) = spare {
            // Last: a process killed before this leaves the spare listed
            // and the slot (if it is in the ring) referring to it; the
            // lock's next holder sees both and keeps the slot's (`recount`).
            h.spares[i].size.store(0, Ordering::Release);
        }
        Ok(Some((tail, extent, spare.is_some())))
    }

    /// Reserves the pages of the ring's first `top` bytes, if they are
    /// not yet (the lock held): the ring's memory grows, doubling, as it
    /// is first used, rather than all of it at creation.
    fn back(&self, top: u64) -> io::Result<()> {
        let h = self.header();
        let backed = h.backed.load(Ordering::Relaxed);
        if top <= backed {
            return Ok(());
        }
        let want = top
            .max(backed.saturating_mul(2))
            .next_multiple_of(page_size())
            .min(self.cap());
        self.seg
            .reserve(HEADER + backed as usize, (want - backed) as usize)?;
        h.backed.store(want, Ordering::Relaxed);
        Ok(())
    }

    // ------------------------------------------------------------ spares

    /// The bytes of spare extents this queue keeps at most.
    fn spare_limit(&self) -> u64 {
        self.cap().max(SPARE_BYTES)
    }

    /// The spare that best fits a message of `size` bytes (whole pages),
    /// the lock held: the smallest of at least `size` and at most an
    /// eighth more, whose pages past `size` are freed here. It stays listed
    /// until the caller's slot refers to it.
    fn fit_spare(&self, size: u64) -> Option<usize> {
        let h = self.header();
        let mut best: Option<(usize, u64)> = None;
        for (i, sp) in h.spares.iter().enumerate() {
            let have = sp.size.load(Ordering::Acquire);
            if have >= size && have - size <= size / 8 && best.is_none_or(|(_, b)| have < b) {
                best = Some((i, have));
            }
        }
        let (i, have) = best?;
        if !self.extent_sound(h.spares[i].off.load(Ordering::Relaxed), have) {
            // Listed by a corrupt peer: forgotten, never written.
            h.spares[i].size.store(0, Ordering::Release);
            return None;
        }
        if have > size {
            // Freed before the entry shrinks: a process killed in between
            // leaves an entry that claims pages it no longer has (harmless:
            // its next user writes them).
            punch(
                self.fd(),
                h.spares[i].off.load(Ordering::Relaxed) + size,
                have - size,
            );
            h.spares[i].size.store(size, Ordering::Release);
        }
        Some(i)
    }

    /// Keeps the extent of a consumed message (`size` bytes, whole pages,
    /// at `off`) for reuse, the lock held: the oldest spares are freed
    /// (their pages punched) until it fits within the limit, or, if it is
    /// larger than the limit, until it is the only one (a stream of large
    /// messages reuses its pages; a queue keeps at most one message's
    /// worth beyond the limit). Whether it was kept (always).
    fn keep_spare(&self, off: u64, size: u64) -> bool {
        let h = self.header();
        let limit = self.spare_limit().max(size);
        loop {
            let mut total = 0;
            let mut empty = None;
            let mut oldest: Option<(usize, u64)> = None;
            for (i, sp) in h.spares.iter().enumerate() {
                let n = sp.size.load(Ordering::Acquire);
                if n == 0 {
                    empty = Some(i);
                    continue;
                }
                total += n;
                let stamp = sp.stamp.load(Ordering::Relaxed);
                if oldest.is_none_or(|(_, s)| stamp < s) {
                    oldest = Some((i, stamp));
                }
            }
            match (empty, oldest) {
                (Some(i), _) if total + size <= limit => {
                    let sp = &h.spares[i];
                    sp.off.store(off, Ordering::Relaxed);
                    let stamp = h.spare_stamp.fetch_add(1, Ordering::Relaxed);
                    sp.stamp.store(stamp, Ordering::Relaxed);
                    // Listed by its size, last.
                    sp.size.store(size, Ordering::Release);
                    return true;
                }
                (_, Some((i, _))) => {
                    // Punched before it is unlisted: a process killed in
                    // between leaves a listed spare without pages (its
                    // next user writes them).
                    let sp = &h.spares[i];
                    punch(
                        self.fd(),
                        sp.off.load(Ordering::Relaxed),
                        sp.size.load(Ordering::Relaxed),
                    );
                    sp.size.store(0, Ordering::Release);
                }
                _ => unreachable!("a size within the limit fits an empty list"),
            }
        }
    }

    /// This process's mapping (read-write) of the extent at `off`, at
    /// least `size` bytes: a spare extent comes back again and again, so
    /// a put copies into it (and a get out of it) at memory speed, without
    /// setting up and tearing down its page tables each time (`pwrite`
    /// into the file costs about 5x the copy). The last few are kept
    /// (their pages are the file's: freed when it punches them, whoever
    /// keeps them mapped). With `create` false, only one already mapped.
    fn cached(&self, off: u64, size: u64, create: bool) -> io::Result<Option<Arc<Mapped>>> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = maps
            .iter()
            .position(|m| m.off == off && m.len as u64 >= size)
        {
            let m = maps.remove(i);
            maps.push(m.clone());
            return Ok(Some(m));
        }
        if !create {
            return Ok(None);
        }
        let m = Arc::new(Mapped::map(self.fd(), off, size, true)?);
        // Another extent at the same offset (smaller) is of no more use.
        maps.retain(|old| old.off != off);
        if maps.len() >= CACHED_MAPS {
            maps.remove(0);
        }
        maps.push(m.clone());
        Ok(Some(m))
    }

    /// The index of the listed spare at `off` (the lock held).
    fn spare_at(&self, off: u64) -> Option<usize> {
        self.header().spares.iter().position(|sp| {
            sp.size.load(Ordering::Acquire) != 0 && sp.off.load(Ordering::Relaxed) == off
        })
    }

    /// The bytes of shared memory this queue keeps for reuse now: the
    /// extents of consumed out-of-band messages (see [`ByteQueue`]; at
    /// most the larger of the ring's size and 64 MiB, or one larger
    /// message's).
    pub fn spare_bytes(&self) -> usize {
        let h = self.header();
        h.spares
            .iter()
            .map(|sp| sp.size.load(Ordering::Relaxed))
            .sum::<u64>() as usize
    }

    /// Frees the memory kept for reuse ([`spare_bytes`](Self::spare_bytes)):
    /// the next large messages take new pages.
    pub fn trim(&self) {
        self.lock(&mut Uninterruptible);
        for sp in &self.header().spares {
            let size = sp.size.load(Ordering::Acquire);
            if size != 0 {
                punch(self.fd(), sp.off.load(Ordering::Relaxed), size);
                sp.size.store(0, Ordering::Release);
            }
        }
        self.unlock();
    }

    /// One wait on `word` (still `seen`), counted in `waiters` while it
    /// sleeps. It sleeps until woken, `deadline`, or a signal — and no
    /// more than the interrupt's slice — except while a slot is in flight
    /// or the lock is held: then in slices of [`REAP_SLICE`], after which
    /// participants that died mid-operation are looked for (a sleeper that
    /// went to sleep without looking is woken to look when a slot goes in
    /// flight: `watch_wake`). With `spin`, it first polls (see
    /// [`spin`](Self::spin)) in the same stretch with the interrupt's
    /// resource (Python's GIL) let go of, so a poll that fails goes
    /// straight to sleep without taking the GIL back in between.
    fn park<I: Interrupt + ?Sized>(
        &self,
        word: &AtomicU32,
        seen: u32,
        deadline: Option<Instant>,
        interrupt: &mut I,
        waiters: &AtomicU32,
        spin: bool,
    ) -> Result<Parked, I::Error> {
        let h = self.header();
        let now = Instant::now();
        let watch = || h.flight.load(Ordering::SeqCst) > 0 || h.lock.load(Ordering::SeqCst) != 0;
        let mut until = None;
        if let Some(slice) = interrupt.slice().and_then(|s| now.checked_add(s)) {
            until = Some(slice);
        }
        if let Some(d) = deadline {
            until = Some(until.map_or(d, |u: Instant| u.min(d)));
        }
        interrupt.before_sleep();
        let (wake, watched) = if spin && self.spin(word, seen) {
            (sys::Wake::Woken, false)
        } else {
            self.unmark();
            waiters.fetch_add(1, Ordering::SeqCst);
            // Which processes sleep here: this one, or several (then for
            // good: a hint for `fly`, wrong only on the safe side).
            let me = sys::process_id();
            let _ = h
                .sleeper_pid
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                    (p != me && p != MIXED).then_some(if p == 0 { me } else { MIXED })
                });
            // Looked at after counting itself a sleeper: a slot that goes
            // in flight after this look wakes a sleeper (`watch_wake`).
            let watched = watch();
            let mut until = until;
            if watched {
                let reap = now.checked_add(REAP_SLICE);
                until = match (until, reap) {
                    (Some(u), Some(r)) => Some(u.min(r)),
                    (u, r) => u.or(r),
                };
            }
            let mut mark = 0;
            if watched && until.is_some_and(|u| u >= now + REAP_SLICE) {
                // This sleeper looks when its slice ends (a shorter sleep
                // is no promise: its caller may give up then).
                mark = monotonic_ns() + REAP_SLICE.as_nanos() as u64;
                h.watched_until.fetch_max(mark, Ordering::SeqCst);
            }
            let wake = sys::wait_shared(word, seen, until);
            if mark != 0 && wake != sys::Wake::TimedOut {
                // Woken early: it may not sleep again, so it promises
                // nothing more (unless a later watcher marked since).
                let _ =
                    h.watched_until
                        .compare_exchange(mark, 0, Ordering::SeqCst, Ordering::Relaxed);
            }
            waiters.fetch_sub(1, Ordering::SeqCst);
            (wake, watched)
        };
        interrupt.after_sleep();
        match wake {
            sys::Wake::Woken => Ok(Parked::Retry),
            sys::Wake::Interrupted => {
                interrupt.check()?;
                Ok(Parked::Retry)
            }
            sys::Wake::TimedOut => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(Parked::TimedOut);
                }
                // The end of a slice is also where a signal that came while
                // this thread was not asleep in the futex (so no EINTR) is
                // seen: Ctrl-C must not wait for the caller's deadline.
                interrupt.check()?;
                if watched {
                    if !self.lock_until(deadline, interrupt)? {
                        return Ok(Parked::TimedOut);
                    }
                    self.reap();
                    self.unlock();
                }
                Ok(Parked::Retry)
            }
        }
    }

    /// Polls `word` for a while before a get goes to sleep (the caller has
    /// let go of the GIL): a message from a process busy on the other core
    /// then costs no sleep and no wake-up system call. Adaptive: a poll
    /// that sees the word move sets the budget to [`SPIN_MAX_US`]; one that
    /// ends in a sleep anyway halves it, so where polling does not pay (the
    /// other side waits for this core, on a busy machine or when the
    /// scheduler put both processes on one core) it stops; then one get in
    /// [`SPIN_PROBE`] polls with the full budget, to notice when it pays
    /// again. Whether the word moved.
    fn spin(&self, word: &AtomicU32, seen: u32) -> bool {
        let max = self.spin_max.load(Ordering::Relaxed);
        if max == 0 {
            return false;
        }
        let mut budget = self.spin_us.load(Ordering::Relaxed).min(max);
        if budget == 0 {
            if self.spin_skipped.fetch_add(1, Ordering::Relaxed) + 1 < SPIN_PROBE {
                return false;
            }
            self.spin_skipped.store(0, Ordering::Relaxed);
            budget = max;
        }
        let start = Instant::now();
        let limit = Duration::from_micros(u64::from(budget));
        // Marked for the putters (see `message_ready`); the mark ends with
        // the poll at the latest.
        let h = self.header();
        let until = monotonic_ns() + u64::from(budget) * 1000;
        h.poll_until.fetch_max(until, Ordering::SeqCst);
        let mut moved = false;
        'spin: while start.elapsed() < limit {
            for _ in 0..64 {
                if word.load(Ordering::Acquire) != seen {
                    moved = true;
                    break 'spin;
                }
                std::hint::spin_loop();
            }
        }
        // Off the mark once the message is claimed, or before this getter
        // sleeps (`unmark`): a message put after that wakes a sleeper. Not
        // before: the putter reads the mark just after the word moved, and
        // must find it.
        self.my_mark.store(until, Ordering::Relaxed);
        let next = if moved { max } else { budget / 2 };
        self.spin_us.store(next, Ordering::Relaxed);
        moved
    }

    // ------------------------------------------------------------ get

    /// Takes the oldest ready message, waiting as long as it takes, and
    /// returns what `read` makes of its bytes.
    pub fn get<R>(&self, read: impl FnOnce(&[u8]) -> R) -> R {
        match self.get_with(None, &mut Uninterruptible, read) {
            Ok(r) => r,
            Err(GetError::Failed(never)) => match never {},
            Err(GetError::Empty | GetError::ShutDown) => {
                unreachable!("a get without a deadline returns a message")
            }
        }
    }

    /// Takes the oldest ready message if there is one now.
    pub fn try_get<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R, GetError> {
        self.get_with(Some(Instant::now()), &mut Uninterruptible, read)
    }

    /// Takes the oldest ready message, waiting until `deadline` (`None`: as
    /// long as it takes) as `interrupt` allows, and returns what `read`
    /// makes of its bytes. `read` runs with the message claimed by this
    /// process and no lock held; if it panics, the message is freed.
    pub fn get_with<I: Interrupt + ?Sized, R>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, GetError<I::Error>> {
        self.get_message_with(deadline, interrupt, |m| {
            let len = m.len();
            match m.with_bytes(read) {
                Ok(r) => r,
                Err(e) => panic!("cannot map a message of {len} bytes: {e}"),
            }
        })
    }

    /// As [`get_with`](Self::get_with), but `read` gets the [`Message`]
    /// itself: it may copy an out-of-band message straight into memory of
    /// its own ([`Message::read_at`], one copy, nothing mapped) rather than
    /// see it mapped ([`Message::with_bytes`]).
    pub fn get_message_with<I: Interrupt + ?Sized, R>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
        read: impl FnOnce(Message<'_>) -> R,
    ) -> Result<R, GetError<I::Error>> {
        let h = self.header();
        let mut spun = false;
        // After a wait, look at the ring itself (under the lock) rather than
        // trust a snapshot of `ready` taken before the wake.
        let mut look = false;
        let pos = loop {
            let seen = h.put_seq.load(Ordering::SeqCst);
            if look || h.ready.load(Ordering::SeqCst) > 0 {
                match self.lock_until(deadline, interrupt) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.unmark();
                        return Err(GetError::Empty);
                    }
                    Err(e) => {
                        self.unmark();
                        return Err(GetError::Failed(e));
                    }
                }
                let claimed = self.claim();
                let flew = claimed.is_some() && self.fly();
                self.unlock();
                if let Some(pos) = claimed {
                    if flew {
                        self.watch_wake();
                    }
                    self.unmark();
                    // The bound's room is made now, before the reader's
                    // code runs (it may put into this very queue).
                    self.admission_freed();
                    break pos;
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.unmark();
                return Err(GetError::Empty);
            }
            let parked = self.park(&h.put_seq, seen, deadline, interrupt, &h.getters, !spun);
            spun = true;
            if let Err(e) = parked {
                self.unmark();
                // The wake this getter may have taken goes to another.
                sys::wake_shared(&h.put_seq, 1);
                return Err(GetError::Failed(e));
            }
            look = true;
        };
        let back = Cell::new(false);
        struct Release<'a, I: Interrupt + ?Sized> {
            q: &'a ByteQueue,
            pos: u64,
            extent: Option<(u64, u64)>,
            back: &'a Cell<bool>,
            interrupt: &'a mut I,
        }
        impl<I: Interrupt + ?Sized> Drop for Release<'_, I> {
            fn drop(&mut self) {
                let q = self.q;
                if self.back.get() {
                    // Not read here (no address space to map it): the
                    // message goes back to the queue for another reader.
                    q.lock(self.interrupt);
                    q.header().queued.fetch_add(1, Ordering::SeqCst);
                    q.slot(self.pos).state.store(READY, Ordering::Release);
                    q.header().ready.fetch_add(1, Ordering::SeqCst);
                    q.land();
                    q.unlock();
                    q.message_ready();
                    return;
                }
                if let Some((off, len)) = self.extent {
                    q.lock(self.interrupt);
                    // Its pages kept for the next large message, and the
                    // slot freed, in one critical section (a process killed
                    // in it leaves both to the next holder's `recount`).
                    if q.keep_spare(off, extent_size(len)) {
                        stall_if_asked(&TEST_STALL_LARGE_GET);
                        q.slot(self.pos).state.store(FREE, Ordering::Release);
                        q.land();
                        q.reclaim();
                        q.unlock();
                        return;
                    }
                    q.unlock();
                    // Consumed (RELEASING) before its memory is freed: a
                    // reader killed from here on has its slot freed by the
                    // reaper, never made READY again over punched pages.
                    q.slot(self.pos).state.store(RELEASING, Ordering::Release);
                    punch(q.fd(), off, len);
                    stall_if_asked(&TEST_STALL_LARGE_GET);
                }
                // Freed under the lock, with the count: a process killed
                // here leaves both to the lock's next holder's recount.
                q.lock(self.interrupt);
                q.slot(self.pos).state.store(FREE, Ordering::Release);
                q.land();
                q.reclaim();
                q.unlock();
            }
        }
        let len = self.slot(pos).len.load(Ordering::Relaxed);
        let mut extent = (len & OOB != 0).then(|| self.extent_at(pos));
        // What a peer wrote is checked before it is used to address
        // memory: a corrupt one is an error for this reader, never a read
        // past the ring or the file.
        let sound = match extent {
            Some((off, len)) => self.extent_sound(off, extent_size(len)),
            None => (pos % self.cap()) + SLOT + len <= self.cap(),
        };
        if !sound {
            extent = None;
        }
        let release = Release {
            q: self,
            pos,
            extent,
            back: &back,
            interrupt,
        };
        let kind = match extent {
            _ if !sound => Kind::Corrupt,
            Some((off, len)) => Kind::OutOfBand { off, len },
            // SAFETY: the slot at `pos` is READING, claimed by this
            // process: its `len` bytes were published with its READY state
            // (Release/Acquire) and nobody writes them until `release`
            // frees the slot, after `read` returned (or unwound); the
            // message does not outlive that (`read` gets it by value, for
            // its call only).
            None => Kind::Ring(unsafe {
                std::slice::from_raw_parts(self.payload(pos, len), len as usize)
            }),
        };
        let r = read(Message {
            q: self,
            kind,
            back: &back,
        });
        drop(release);
        Ok(r)
    }

    /// Claims the oldest READY slot (the lock held).
    fn claim(&self) -> Option<u64> {
        let h = self.header();
        let (mut pos, tail) = self.span();
        let me = sys::process_id();
        while pos < tail {
            let s = self.slot(pos);
            if s.state.load(Ordering::Acquire) == READY {
                // Uncounted before the slot is claimed: a process killed in
                // between lets one message too many in, never one too few.
                let _ = h
                    .queued
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                s.pid.store(me, Ordering::Relaxed);
                s.state.store(READING, Ordering::Release);
                let _ = h
                    .ready
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                return Some(pos);
            }
            pos += self.size_at(pos);
        }
        None
    }

    // ------------------------------------------------------------ batches

    /// Puts several messages in order (each the concatenation of its
    /// parts): every size is checked first, so a message that can never
    /// be put puts none; then each waits for room until `deadline`. Returns
    /// how many were put; `Full` only if none was. Any other error (such
    /// as [`SendError::Memory`]) is returned as is: the messages before the
    /// one that failed were put.
    pub fn put_many_with<I: Interrupt + ?Sized>(
        &self,
        messages: &[&[&[u8]]],
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<usize, SendError<I::Error>> {
        for parts in messages {
            let size: usize = parts.iter().map(|p| p.len()).sum();
            if size as u64 > MAX_MESSAGE {
                let max = MAX_MESSAGE as usize;
                return Err(SendError::TooLarge { size, max });
            }
        }
        for (n, parts) in messages.iter().enumerate() {
            match self.put_with(parts, deadline, interrupt) {
                Ok(()) => {}
                Err(SendError::Full) if n > 0 => return Ok(n),
                Err(e) => return Err(e),
            }
        }
        Ok(messages.len())
    }

    /// Takes up to `max` messages: waits for the first until `deadline`,
    /// then takes those ready without waiting; `read` sees each in order.
    /// Returns how many were taken (an error only if none was).
    pub fn get_many_with<I: Interrupt + ?Sized>(
        &self,
        max: usize,
        deadline: Option<Instant>,
        interrupt: &mut I,
        mut read: impl FnMut(&[u8]),
    ) -> Result<usize, GetError<I::Error>> {
        if max == 0 {
            return Ok(0);
        }
        self.get_with(deadline, interrupt, &mut read)?;
        let mut n = 1;
        while n < max {
            match self.get_with(Some(Instant::now()), interrupt, &mut read) {
                Ok(()) => n += 1,
                Err(GetError::Failed(e)) => return Err(GetError::Failed(e)),
                Err(_) => break,
            }
        }
        Ok(n)
    }

    // ------------------------------------------------------------ tasks

    /// Marks one message as processed: when every message put has been,
    /// [`join`](Self::join) returns (in every process).
    pub fn task_done(&self) -> Result<(), TooManyTaskDone> {
        let h = self.header();
        let before = h
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1))
            .map_err(|_| TooManyTaskDone)?;
        if before == 1 {
            self.tasks_maybe_done();
        }
        Ok(())
    }

    /// Waits until every message put has been marked done.
    pub fn join(&self) {
        infallible(self.join_with(None, &mut Uninterruptible).map(drop));
    }

    /// [`join`](Self::join) until `deadline`: whether every message was
    /// marked done by then.
    pub fn join_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        let h = self.header();
        loop {
            let seen = h.join_seq.load(Ordering::SeqCst);
            if h.unfinished.load(Ordering::SeqCst) == 0 {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            let parked = self.park(&h.join_seq, seen, deadline, interrupt, &h.joiners, false);
            parked?;
        }
    }
}
