//! Locks, semaphores and events shared between processes: a few futex
//! words in a [`Segment`] each.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use super::Segment;
use crate::error::{NotOwned, TooManyReleases};
use crate::interrupt::{Interrupt, Parked, Uninterruptible, infallible, park_on};
use crate::sys;

const MAGIC: u64 = 0x7472_6573_735f_7331; // "tress_s1"
const SIZE: usize = 4096;

const KIND_SEMAPHORE: u32 = 1;
const KIND_RLOCK: u32 = 2;
const KIND_EVENT: u32 = 3;

/// The words every primitive here keeps in its segment.
#[repr(C)]
struct Words {
    magic: AtomicU64,
    kind: AtomicU32,
    /// The semaphore's count (for the RLock: 1 while free); the event's
    /// flag.
    value: AtomicU32,
    /// Processes' threads asleep on `value`.
    waiters: AtomicU32,
    /// The semaphore's bound (`u32::MAX`: none).
    max: AtomicU32,
    /// The RLock's owner: process and thread, and its recursion count.
    owner_pid: AtomicU32,
    count: AtomicU32,
    owner_tid: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Words>() <= SIZE);

/// The segment and its words.
#[derive(Debug)]
struct Shared {
    seg: Segment,
}

impl Shared {
    fn create(kind: u32, value: u32, max: u32, label: &str) -> io::Result<Shared> {
        let s = Shared {
            seg: Segment::create(SIZE, label)?,
        };
        let w = s.words();
        w.kind.store(kind, Ordering::Relaxed);
        w.value.store(value, Ordering::Relaxed);
        w.max.store(max, Ordering::Relaxed);
        w.magic.store(MAGIC, Ordering::Release);
        Ok(s)
    }

    fn open(seg: Segment, kind: u32) -> io::Result<Shared> {
        if seg.len() < SIZE {
            return Err(bad());
        }
        let s = Shared { seg };
        let w = s.words();
        if w.magic.load(Ordering::Acquire) != MAGIC || w.kind.load(Ordering::Relaxed) != kind {
            return Err(bad());
        }
        Ok(s)
    }

    fn words(&self) -> &Words {
        // SAFETY: the segment is at least SIZE bytes, page-aligned, and
        // `Words` is all atomics, valid for any bit pattern (zeroes at
        // creation); it lives as long as `self.seg`.
        unsafe { &*(self.seg.as_ptr() as *const Words) }
    }

    /// Takes one from `value` if it is above 0, waiting until `deadline`.
    fn down<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        let w = self.words();
        loop {
            let v = w.value.load(Ordering::Relaxed);
            if v > 0 {
                if w.value
                    .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(true);
                }
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            w.waiters.fetch_add(1, Ordering::SeqCst);
            let parked = if w.value.load(Ordering::SeqCst) == 0 {
                park_on(&w.value, 0, deadline, interrupt, true)
            } else {
                Ok(Parked::Retry)
            };
            w.waiters.fetch_sub(1, Ordering::SeqCst);
            if let Err(e) = parked {
                // pass on a wake this waiter may have consumed
                if w.value.load(Ordering::SeqCst) > 0 {
                    sys::wake_shared(&w.value, 1);
                }
                return Err(e);
            }
        }
    }

    /// Adds `n` to `value` (not past `max`) and wakes as many sleepers.
    fn up(&self, n: u32) -> Result<(), TooManyReleases> {
        let w = self.words();
        let max = w.max.load(Ordering::Relaxed);
        w.value
            .fetch_update(Ordering::Release, Ordering::Relaxed, |v| {
                v.checked_add(n).filter(|&nv| nv <= max)
            })
            .map_err(|_| TooManyReleases)?;
        if w.waiters.load(Ordering::SeqCst) > 0 {
            sys::wake_shared(&w.value, n);
        }
        Ok(())
    }
}

fn bad() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "not a tress shared-memory primitive of this kind",
    )
}

/// A counting semaphore shared between processes: Python's
/// `multiprocessing.Semaphore` (a bound makes it `BoundedSemaphore`; a
/// bound of 1 from 1, `Lock`).
///
/// Like multiprocessing's, a process that dies holding a count does not
/// give it back.
///
/// # Examples
///
/// ```
/// use tress::ipc::ShmSemaphore;
///
/// let lock = ShmSemaphore::create(1, Some(1)).unwrap();
/// assert!(lock.try_acquire());
/// assert!(!lock.try_acquire());
/// lock.release().unwrap();
/// assert!(lock.release().is_err(), "released too many times");
/// ```
#[derive(Debug)]
pub struct ShmSemaphore {
    s: Shared,
}

impl ShmSemaphore {
    /// A new semaphore holding `value`, never above `max` if given.
    pub fn create(value: u32, max: Option<u32>) -> io::Result<ShmSemaphore> {
        let max = max.unwrap_or(u32::MAX);
        if value > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the initial value is above the bound",
            ));
        }
        Ok(ShmSemaphore {
            s: Shared::create(KIND_SEMAPHORE, value, max, "semaphore")?,
        })
    }

    /// The semaphore in `seg` (made by [`create`](Self::create) here or in
    /// another process).
    pub fn open(seg: Segment) -> io::Result<ShmSemaphore> {
        Ok(ShmSemaphore {
            s: Shared::open(seg, KIND_SEMAPHORE)?,
        })
    }

    /// The shared memory it lives in.
    pub fn segment(&self) -> &Segment {
        &self.s.seg
    }

    /// Takes one if there is one now.
    pub fn try_acquire(&self) -> bool {
        infallible(self.s.down(Some(Instant::now()), &mut Uninterruptible))
    }

    /// Takes one, waiting as long as it takes.
    pub fn acquire(&self) {
        infallible(self.s.down(None, &mut Uninterruptible));
    }

    /// Takes one, waiting until `deadline` as `interrupt` allows; whether it
    /// did.
    pub fn acquire_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        self.s.down(deadline, interrupt)
    }

    /// Gives one back (an error past the bound).
    pub fn release(&self) -> Result<(), TooManyReleases> {
        self.s.up(1)
    }

    /// The count now.
    pub fn value(&self) -> u32 {
        self.s.words().value.load(Ordering::Relaxed)
    }

    /// The bound, if any.
    pub fn max(&self) -> Option<u32> {
        let m = self.s.words().max.load(Ordering::Relaxed);
        (m != u32::MAX).then_some(m)
    }
}

/// A re-entrant lock shared between processes, owned by one thread of one
/// process: Python's `multiprocessing.RLock`.
///
/// The owner is named by the process id and a thread id the caller
/// chooses (Python's bindings pass `threading.get_ident()`).
///
/// # Examples
///
/// ```
/// use tress::ipc::ShmRLock;
///
/// let lock = ShmRLock::create().unwrap();
/// assert!(lock.try_acquire(1));
/// assert!(lock.try_acquire(1));
/// assert_eq!(lock.count(1), 2);
/// assert!(lock.release(2).is_err(), "not the owner");
/// lock.release(1).unwrap();
/// lock.release(1).unwrap();
/// assert!(!lock.is_owned(1));
/// ```
#[derive(Debug)]
pub struct ShmRLock {
    s: Shared,
}

impl ShmRLock {
    /// A new, free lock.
    pub fn create() -> io::Result<ShmRLock> {
        Ok(ShmRLock {
            s: Shared::create(KIND_RLOCK, 1, 1, "rlock")?,
        })
    }

    /// The lock in `seg`.
    pub fn open(seg: Segment) -> io::Result<ShmRLock> {
        Ok(ShmRLock {
            s: Shared::open(seg, KIND_RLOCK)?,
        })
    }

    /// The shared memory it lives in.
    pub fn segment(&self) -> &Segment {
        &self.s.seg
    }

    /// Whether thread `tid` of this process holds the lock.
    pub fn is_owned(&self, tid: u64) -> bool {
        let w = self.s.words();
        w.count.load(Ordering::Relaxed) > 0
            && w.owner_pid.load(Ordering::Relaxed) == sys::process_id()
            && w.owner_tid.load(Ordering::Relaxed) == tid
    }

    /// How many times thread `tid` of this process holds the lock (0 if it
    /// does not).
    pub fn count(&self, tid: u64) -> u32 {
        if self.is_owned(tid) {
            self.s.words().count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Takes the lock for thread `tid` if it is free now or already its.
    pub fn try_acquire(&self, tid: u64) -> bool {
        infallible(self.acquire_with(tid, Some(Instant::now()), &mut Uninterruptible))
    }

    /// Takes the lock for thread `tid`, waiting until `deadline` as
    /// `interrupt` allows; whether it did.
    pub fn acquire_with<I: Interrupt + ?Sized>(
        &self,
        tid: u64,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        let w = self.s.words();
        if self.is_owned(tid) {
            w.count.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        if !self.s.down(deadline, interrupt)? {
            return Ok(false);
        }
        w.owner_pid.store(sys::process_id(), Ordering::Relaxed);
        w.owner_tid.store(tid, Ordering::Relaxed);
        w.count.store(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Gives back one level of thread `tid`'s hold; an error if it does not
    /// hold the lock.
    pub fn release(&self, tid: u64) -> Result<(), NotOwned> {
        if !self.is_owned(tid) {
            return Err(NotOwned);
        }
        let w = self.s.words();
        if w.count.fetch_sub(1, Ordering::Relaxed) == 1 {
            w.owner_pid.store(0, Ordering::Relaxed);
            w.owner_tid.store(0, Ordering::Relaxed);
            self.s.up(1).map_err(|_| NotOwned)?;
        }
        Ok(())
    }
}

/// A flag processes wait on: Python's `threading.Event` across processes.
///
/// # Examples
///
/// ```
/// use tress::ipc::ShmEvent;
///
/// let ev = ShmEvent::create().unwrap();
/// assert!(!ev.is_set());
/// ev.set();
/// assert!(ev.wait_with(None, &mut tress::Uninterruptible).unwrap());
/// ev.clear();
/// assert!(!ev.is_set());
/// ```
#[derive(Debug)]
pub struct ShmEvent {
    s: Shared,
}

impl ShmEvent {
    /// A new, clear event.
    pub fn create() -> io::Result<ShmEvent> {
        Ok(ShmEvent {
            s: Shared::create(KIND_EVENT, 0, 1, "event")?,
        })
    }

    /// The event in `seg`.
    pub fn open(seg: Segment) -> io::Result<ShmEvent> {
        Ok(ShmEvent {
            s: Shared::open(seg, KIND_EVENT)?,
        })
    }

    /// The shared memory it lives in.
    pub fn segment(&self) -> &Segment {
        &self.s.seg
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.s.words().value.load(Ordering::Acquire) != 0
    }

    /// Sets the flag and wakes every waiter, in every process.
    pub fn set(&self) {
        let w = self.s.words();
        w.value.store(1, Ordering::SeqCst);
        if w.waiters.load(Ordering::SeqCst) > 0 {
            sys::wake_shared(&w.value, u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.s.words().value.store(0, Ordering::SeqCst);
    }

    /// Waits until the flag is set or `deadline` passes; whether it is set.
    pub fn wait_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        let w = self.s.words();
        loop {
            if w.value.load(Ordering::Acquire) != 0 {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            w.waiters.fetch_add(1, Ordering::SeqCst);
            let parked = if w.value.load(Ordering::SeqCst) == 0 {
                park_on(&w.value, 0, deadline, interrupt, true)
            } else {
                Ok(Parked::Retry)
            };
            w.waiters.fetch_sub(1, Ordering::SeqCst);
            parked?;
        }
    }
}
