//! Locks, semaphores and events shared between processes: a few futex
//! words each in a cell of an arena shared with many others (see
//! [`arena`](super::arena)).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::arena::{CellRef, Words};
use crate::error::{NotOwned, TooManyReleases};
use crate::interrupt::{Interrupt, Parked, Uninterruptible, infallible, park_on};
use crate::sys;

const KIND_SEMAPHORE: u8 = 1;
const KIND_RLOCK: u8 = 2;
const KIND_EVENT: u8 = 3;
const KIND_BARRIER: u8 = 4;

/// A primitive's cell.
#[derive(Debug)]
struct Shared {
    cell: CellRef,
}

impl Shared {
    fn create(kind: u8, value: u32, max: u32) -> io::Result<Shared> {
        let cell = CellRef::create(kind, |w| {
            w.value.store(value, Ordering::Relaxed);
            w.max.store(max, Ordering::Relaxed);
        })?;
        Ok(Shared { cell })
    }

    fn open(fd: BorrowedFd<'_>, index: u32, kind: u8, adopt: bool) -> io::Result<Shared> {
        Ok(Shared {
            cell: CellRef::open(fd, index, kind, adopt)?,
        })
    }

    fn location(&self) -> (BorrowedFd<'_>, u32) {
        (self.cell.fd(), self.cell.index())
    }

    #[inline]
    fn words(&self) -> &Words {
        self.cell.words()
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

/// How a primitive in one cell reaches other processes: `location`, `lend`,
/// `open` and `adopt`.
macro_rules! cell_handle {
    ($ty:ident, $kind:expr) => {
        impl $ty {
            /// Where it lives, for another process: the descriptor of its
            /// arena (this process's own, borrowed; hand over a duplicate)
            /// and its cell there. Many primitives share an arena, and so
            /// one descriptor.
            pub fn location(&self) -> (BorrowedFd<'_>, u32) {
                self.s.location()
            }

            /// Counts one more reference to it, for a handle on its way to
            /// another process (a pickle), which takes the reference over
            /// with [`adopt`](Self::adopt): meanwhile the primitive lives on
            /// even if every handle is dropped. A reference never adopted
            /// keeps its cell from being reused.
            pub fn lend(&self) {
                self.s.cell.lend();
            }

            /// A new handle to the primitive at `cell` of the arena behind
            /// `fd` (a duplicate of a [`location`](Self::location)'s
            /// descriptor, or that descriptor itself), counted now. A handle
            /// to it must live meanwhile (in any process), or the cell may
            /// have been freed and taken by another primitive. An arena this
            /// process maps already is not mapped again.
            pub fn open(fd: BorrowedFd<'_>, cell: u32) -> io::Result<$ty> {
                Ok($ty {
                    s: Shared::open(fd, cell, $kind, false)?,
                })
            }

            /// As [`open`](Self::open), taking over the reference a
            /// [`lend`](Self::lend) counted instead of counting a new one.
            pub fn adopt(fd: BorrowedFd<'_>, cell: u32) -> io::Result<$ty> {
                Ok($ty {
                    s: Shared::open(fd, cell, $kind, true)?,
                })
            }
        }
    };
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

cell_handle!(ShmSemaphore, KIND_SEMAPHORE);

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
            s: Shared::create(KIND_SEMAPHORE, value, max)?,
        })
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

cell_handle!(ShmRLock, KIND_RLOCK);

impl ShmRLock {
    /// A new, free lock.
    pub fn create() -> io::Result<ShmRLock> {
        Ok(ShmRLock {
            s: Shared::create(KIND_RLOCK, 1, 1)?,
        })
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

cell_handle!(ShmEvent, KIND_EVENT);

impl ShmEvent {
    /// A new, clear event.
    pub fn create() -> io::Result<ShmEvent> {
        Ok(ShmEvent {
            s: Shared::create(KIND_EVENT, 0, 1)?,
        })
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

/// A condition variable shared between processes: Python's
/// `multiprocessing.Condition`, on the algorithm multiprocessing uses (three
/// semaphores: sleepers, wake tokens, and the woken count that rebalances
/// the books after a wait that timed out), here over [`ShmSemaphore`]s.
///
/// The lock it goes with is the caller's: [`wait_with`](Self::wait_with)
/// takes two closures, one that lets go of the lock entirely and one that
/// takes it back, so any lock (a [`ShmSemaphore`] of one, a [`ShmRLock`]
/// held several times) fits. `notify` and `notify_all` must be called with
/// that lock held, as in Python.
///
/// # Examples
///
/// ```
/// use tress::ipc::{ShmCondition, ShmSemaphore};
///
/// let lock = ShmSemaphore::create(1, Some(1)).unwrap();
/// let cond = ShmCondition::create().unwrap();
/// lock.acquire();
/// cond.notify(1); // nobody waits: nothing happens
/// let deadline = std::time::Instant::now() + std::time::Duration::from_millis(10);
/// let woken = cond
///     .wait_with(
///         || lock.release().unwrap(),
///         || lock.acquire(),
///         Some(deadline),
///         &mut tress::Uninterruptible,
///     )
///     .unwrap();
/// assert!(!woken, "timed out");
/// lock.release().unwrap();
/// ```
#[derive(Debug)]
pub struct ShmCondition {
    sleeping: ShmSemaphore,
    woken: ShmSemaphore,
    wake: ShmSemaphore,
}

impl ShmCondition {
    /// A new condition.
    pub fn create() -> io::Result<ShmCondition> {
        Ok(ShmCondition {
            sleeping: ShmSemaphore::create(0, None)?,
            woken: ShmSemaphore::create(0, None)?,
            wake: ShmSemaphore::create(0, None)?,
        })
    }

    /// The condition at these locations (those of
    /// [`locations`](Self::locations), in order), as
    /// [`ShmSemaphore::open`].
    pub fn open(locations: [(BorrowedFd<'_>, u32); 3]) -> io::Result<ShmCondition> {
        let [a, b, c] = locations;
        Ok(ShmCondition {
            sleeping: ShmSemaphore::open(a.0, a.1)?,
            woken: ShmSemaphore::open(b.0, b.1)?,
            wake: ShmSemaphore::open(c.0, c.1)?,
        })
    }

    /// Where its three semaphores live (see [`ShmSemaphore::location`]).
    pub fn locations(&self) -> [(BorrowedFd<'_>, u32); 3] {
        [
            self.sleeping.location(),
            self.woken.location(),
            self.wake.location(),
        ]
    }

    /// Waits until notified or `deadline`: `unlock` lets go of the caller's
    /// lock, `relock` takes it back (also when the wait fails). Whether it
    /// was notified.
    pub fn wait_with<I: Interrupt + ?Sized>(
        &self,
        unlock: impl FnOnce(),
        relock: impl FnOnce(),
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        self.sleeping.release().expect("unbounded");
        unlock();
        let woke = self.wake.acquire_with(deadline, interrupt);
        // Counted as woken whatever happened, so `notify` can rebalance.
        self.woken.release().expect("unbounded");
        relock();
        woke
    }

    /// Wakes at most `n` waiters (the caller holds the lock).
    pub fn notify(&self, n: usize) {
        // Waiters that timed out counted themselves as sleeping and as
        // woken: take both back first.
        while self.woken.try_acquire() {
            let was_sleeping = self.sleeping.try_acquire();
            debug_assert!(was_sleeping, "a woken waiter was not sleeping");
        }
        let mut sleepers = 0;
        while sleepers < n && self.sleeping.try_acquire() {
            self.wake.release().expect("unbounded");
            sleepers += 1;
        }
        if sleepers > 0 {
            // Wait for each to be woken (they release `woken` on the way
            // out), then take back tokens nobody used.
            for _ in 0..sleepers {
                self.woken.acquire();
            }
            while self.wake.try_acquire() {}
        }
    }

    /// Wakes every waiter (the caller holds the lock).
    pub fn notify_all(&self) {
        self.notify(usize::MAX);
    }
}

/// Why a [`ShmBarrier`] wait failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShmBarrierError<E> {
    /// The barrier is broken (or was reset, or a wait timed out).
    Broken,
    /// The [`Interrupt`] abandoned the wait; the barrier is broken for the
    /// others, as Python's is when a waiter is interrupted.
    Interrupted(E),
}

/// The barrier's state word.
const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// A barrier for `parties` threads of any processes: Python's
/// `multiprocessing.Barrier` (CPython's `threading.Barrier` algorithm, its
/// state and count in shared memory, over a [`ShmSemaphore`] lock and a
/// [`ShmCondition`]).
///
/// # Examples
///
/// ```
/// use tress::ipc::ShmBarrier;
///
/// let b = ShmBarrier::create(1).unwrap();
/// assert_eq!(b.wait_with(None, &mut tress::Uninterruptible), Ok(0));
/// assert_eq!(b.parties(), 1);
/// ```
#[derive(Debug)]
pub struct ShmBarrier {
    lock: ShmSemaphore,
    cond: ShmCondition,
    /// `value`: the state; `max`: the parties; `count`: the waiters in.
    s: Shared,
}

impl ShmBarrier {
    /// A barrier for `parties` waiters (at least 1).
    pub fn create(parties: u32) -> io::Result<ShmBarrier> {
        if parties == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "parties must be at least 1",
            ));
        }
        Ok(ShmBarrier {
            lock: ShmSemaphore::create(1, Some(1))?,
            cond: ShmCondition::create()?,
            s: Shared::create(KIND_BARRIER, FILLING, parties)?,
        })
    }

    /// The barrier at these locations (those of
    /// [`locations`](Self::locations), in order), as
    /// [`ShmSemaphore::open`].
    pub fn open(locations: [(BorrowedFd<'_>, u32); 5]) -> io::Result<ShmBarrier> {
        let [lock, c1, c2, c3, s] = locations;
        Ok(ShmBarrier {
            lock: ShmSemaphore::open(lock.0, lock.1)?,
            cond: ShmCondition::open([c1, c2, c3])?,
            s: Shared::open(s.0, s.1, KIND_BARRIER, false)?,
        })
    }

    /// Where its parts live: its lock, its condition's three semaphores and
    /// its state (see [`ShmSemaphore::location`]).
    pub fn locations(&self) -> [(BorrowedFd<'_>, u32); 5] {
        let [c1, c2, c3] = self.cond.locations();
        [self.lock.location(), c1, c2, c3, self.s.location()]
    }

    /// The number of waiters the barrier lets through at once.
    pub fn parties(&self) -> u32 {
        self.s.words().max.load(Ordering::Relaxed)
    }

    /// The waiters in the barrier now.
    pub fn n_waiting(&self) -> u32 {
        let w = self.s.words();
        if w.value.load(Ordering::Relaxed) == FILLING {
            w.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.s.words().value.load(Ordering::Relaxed) == BROKEN
    }

    fn state(&self) -> u32 {
        self.s.words().value.load(Ordering::Relaxed)
    }

    fn set_state(&self, v: u32) {
        self.s.words().value.store(v, Ordering::Relaxed);
    }

    fn count(&self) -> &AtomicU32 {
        &self.s.words().count
    }

    /// Waits on the condition, the barrier's lock held.
    fn cond_wait<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        self.cond.wait_with(
            || self.lock.release().expect("held"),
            || self.lock.acquire(),
            deadline,
            interrupt,
        )
    }

    /// Waits until `parties` waiters are in, as `threading.Barrier.wait`;
    /// returns this waiter's index (0 to `parties - 1`, each once). A
    /// deadline that passes breaks the barrier.
    pub fn wait_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<u32, ShmBarrierError<I::Error>> {
        self.lock.acquire();
        let r = self.wait_locked(deadline, interrupt);
        self.lock.release().expect("held");
        r
    }

    fn wait_locked<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<u32, ShmBarrierError<I::Error>> {
        // enter: wait for a previous round to drain or reset
        while matches!(self.state(), DRAINING | RESETTING) {
            self.cond_wait(None, interrupt)
                .map_err(ShmBarrierError::Interrupted)?;
        }
        if self.state() == BROKEN {
            return Err(ShmBarrierError::Broken);
        }
        let index = self.count().fetch_add(1, Ordering::Relaxed);
        let outcome = if index + 1 == self.parties() {
            self.set_state(DRAINING);
            self.cond.notify_all();
            Ok(index)
        } else {
            loop {
                if self.state() != FILLING {
                    break Ok(());
                }
                match self.cond_wait(deadline, interrupt) {
                    Err(e) => {
                        self.set_state(BROKEN);
                        self.cond.notify_all();
                        break Err(ShmBarrierError::Interrupted(e));
                    }
                    Ok(false) if self.state() == FILLING => {
                        self.set_state(BROKEN);
                        self.cond.notify_all();
                        break Err(ShmBarrierError::Broken);
                    }
                    Ok(_) => {}
                }
            }
            .and_then(|()| {
                if matches!(self.state(), BROKEN | RESETTING) {
                    Err(ShmBarrierError::Broken)
                } else {
                    Ok(index)
                }
            })
        };
        // exit: the last one out lets the next round in
        let left = self.count().fetch_sub(1, Ordering::Relaxed) - 1;
        if left == 0 && matches!(self.state(), RESETTING | DRAINING) {
            self.set_state(FILLING);
            self.cond.notify_all();
        }
        outcome
    }

    /// Breaks the barrier: current and later waits fail until
    /// [`reset`](Self::reset).
    pub fn abort(&self) {
        self.lock.acquire();
        self.set_state(BROKEN);
        self.cond.notify_all();
        self.lock.release().expect("held");
    }

    /// Back to the empty state; waits in progress fail.
    pub fn reset(&self) {
        self.lock.acquire();
        if self.count().load(Ordering::Relaxed) > 0 {
            if matches!(self.state(), FILLING | BROKEN) {
                self.set_state(RESETTING);
            }
        } else {
            self.set_state(FILLING);
        }
        self.cond.notify_all();
        self.lock.release().expect("held");
    }
}
