//! [`Lock`]: a non-reentrant lock that any thread may release, with timeouts.
//!
//! The algorithm is the classic three-state futex mutex (Drepper, "Futexes
//! Are Tricky", mutex 2), as in Rust's own `std::sync::Mutex` on Linux.
//!
//! | state | meaning |
//! |---|---|
//! | `UNLOCKED` (0) | free |
//! | `LOCKED` (1) | held, no thread sleeps on it |
//! | `CONTENDED` (2) | held, threads may sleep on it: release must wake one |
//!
//! Invariant: a thread only sleeps on the word while it reads `CONTENDED`, so
//! a release that swaps out `LOCKED` knows nobody needs waking.
//!
//! Memory ordering: acquiring is an `Acquire` read-modify-write of the word,
//! releasing a `SeqCst` one (at least `Release`, so everything done under the
//! lock happens before the next holder's critical section; `SeqCst` for
//! [`WakeList`](crate::WakeList), whose pending flag is read right after).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::NotLocked;
use crate::interrupt::{
    BACKOFF_STEPS, Interrupt, Parked, Uninterruptible, backoff, deadline_after, infallible, park,
};
use crate::sys;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// A mutual-exclusion lock with no owner: any thread may release it, as with
/// Python's `threading.Lock`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tress::Lock;
///
/// let lock = Lock::new();
/// lock.acquire();
/// assert!(lock.is_locked());
/// assert!(!lock.acquire_timeout(Duration::from_millis(10)));
/// lock.release().unwrap();
/// assert!(lock.try_acquire());
/// ```
#[derive(Debug, Default)]
pub struct Lock {
    /// `UNLOCKED`, `LOCKED` or `CONTENDED` (see the module docs).
    state: AtomicU32,
}

impl Lock {
    /// A new, unlocked lock.
    #[inline]
    pub const fn new() -> Self {
        Self {
            state: AtomicU32::new(UNLOCKED),
        }
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// ```
    /// let lock = tress::Lock::new();
    /// assert!(lock.try_acquire());
    /// assert!(!lock.try_acquire());
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, waiting as long as it takes.
    ///
    /// ```
    /// let lock = tress::Lock::new();
    /// lock.acquire();
    /// lock.release().unwrap();
    /// ```
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire() {
            infallible(self.acquire_slow(None, &mut Uninterruptible));
        }
    }

    /// Takes the lock, waiting at most `timeout`; returns whether it got it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = tress::Lock::new();
    /// assert!(lock.acquire_timeout(Duration::from_millis(1)));
    /// assert!(!lock.acquire_timeout(Duration::from_millis(1)));
    /// ```
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.try_acquire()
            || infallible(self.acquire_slow(deadline_after(timeout), &mut Uninterruptible))
    }

    /// Takes the lock, waiting until `deadline` at the latest; returns whether
    /// it got it.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let lock = tress::Lock::new();
    /// assert!(lock.acquire_deadline(Instant::now() + Duration::from_millis(1)));
    /// ```
    #[inline]
    pub fn acquire_deadline(&self, deadline: Instant) -> bool {
        self.try_acquire() || infallible(self.acquire_slow(Some(deadline), &mut Uninterruptible))
    }

    /// Takes the lock, waiting until `deadline` (forever if `None`) unless
    /// `interrupt` abandons the wait. `Ok(false)` means the deadline passed.
    /// An abandoned wait leaves the lock as it found it.
    ///
    /// ```
    /// use tress::{Lock, Uninterruptible};
    /// let lock = Lock::new();
    /// assert_eq!(lock.acquire_with(None, &mut Uninterruptible), Ok(true));
    /// ```
    #[inline]
    pub fn acquire_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        if self.try_acquire() {
            return Ok(true);
        }
        self.acquire_slow(deadline, interrupt)
    }

    #[cold]
    fn acquire_slow<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        // Poll briefly (spinning, then yielding the core) while the holder
        // has no sleepers behind it, retrying whenever the lock looks free.
        let mut state = self.state.load(Ordering::Relaxed);
        let mut step = 0;
        loop {
            if state == UNLOCKED {
                match self.state.compare_exchange(
                    UNLOCKED,
                    LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(true),
                    Err(now) => state = now,
                }
            }
            if state == CONTENDED || step >= BACKOFF_STEPS || !interrupt.may_spin() {
                break;
            }
            backoff(step);
            step += 1;
            state = self.state.load(Ordering::Relaxed);
        }
        loop {
            // Mark the lock contended; if it was free we now hold it (marked
            // contended, which costs at most one needless wake later).
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return Ok(true);
            }
            if park(&self.state, CONTENDED, deadline, interrupt)? == Parked::TimedOut {
                // One last try: the lock may have been released just now.
                return Ok(self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED);
            }
        }
    }

    /// Releases the lock, from any thread. Releasing a lock that is not held
    /// is an error and changes nothing.
    ///
    /// ```
    /// let lock = tress::Lock::new();
    /// assert!(lock.release().is_err());
    /// lock.acquire();
    /// assert!(lock.release().is_ok());
    /// ```
    #[inline]
    pub fn release(&self) -> Result<(), NotLocked> {
        // Dropping the token (if any) wakes a sleeper.
        self.release_pending().map(drop)
    }

    /// Releases the lock like [`release`](Self::release), but leaves the
    /// wake-up of a sleeping waiter (if any) to the caller: call
    /// [`PendingWake::wake`] when it suits (Python's bindings do it with the
    /// GIL released, so the woken thread does not wake into a held GIL).
    /// Dropping the token wakes too, so a waiter is never forgotten.
    #[inline]
    pub fn release_pending(&self) -> Result<Option<PendingWake<'_>>, NotLocked> {
        // SeqCst (free on x86): a condition's `WakeList` reads its pending
        // flag right after a release and needs this store ordered before it.
        match self
            .state
            .compare_exchange(LOCKED, UNLOCKED, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => Ok(None),
            Err(UNLOCKED) => Err(NotLocked),
            Err(_) => self.release_contended_pending(),
        }
    }

    /// Releases a lock that threads may sleep on. A compare-and-swap loop,
    /// so two threads releasing at once cannot both succeed.
    #[cold]
    fn release_contended_pending(&self) -> Result<Option<PendingWake<'_>>, NotLocked> {
        let mut state = CONTENDED;
        loop {
            match self
                .state
                .compare_exchange(state, UNLOCKED, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok((state == CONTENDED).then(|| PendingWake::new(&self.state, 1)));
                }
                Err(UNLOCKED) => return Err(NotLocked),
                Err(now) => state = now,
            }
        }
    }

    /// Whether some thread holds the lock (a snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }

    /// Forces the lock back to the unlocked state without waking anyone.
    ///
    /// Meant for a child process right after `fork()`, where the thread that
    /// held the lock does not exist (Python's `_at_fork_reinit`). Calling it
    /// while other threads use the lock breaks mutual exclusion.
    pub fn reset_after_fork(&self) {
        self.state.store(UNLOCKED, Ordering::Relaxed);
    }
}

// SAFETY: `Lock` provides mutual exclusion: `try_lock`/`lock` succeed only by
// moving the word from UNLOCKED to held with Acquire ordering, and `unlock`
// (called only by the holder, per the trait contract) releases it with
// Release ordering.
unsafe impl lock_api::RawMutex for Lock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Lock::new();
    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        self.acquire();
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.try_acquire()
    }

    #[inline]
    unsafe fn unlock(&self) {
        // The caller holds the lock, so this cannot fail.
        let _ = self.release();
    }

    #[inline]
    fn is_locked(&self) -> bool {
        Lock::is_locked(self)
    }
}

// SAFETY: as for `RawMutex`; the timed forms only add a deadline to the wait.
unsafe impl lock_api::RawMutexTimed for Lock {
    type Duration = Duration;
    type Instant = Instant;

    #[inline]
    fn try_lock_for(&self, timeout: Duration) -> bool {
        self.acquire_timeout(timeout)
    }

    #[inline]
    fn try_lock_until(&self, deadline: Instant) -> bool {
        self.acquire_deadline(deadline)
    }
}

/// The wake-up owed to threads sleeping on a primitive that was released
/// (or set) with one of the `*_pending` methods ([`Lock::release_pending`],
/// [`Event::set_pending`](crate::Event::set_pending),
/// [`Semaphore::release_pending`](crate::Semaphore::release_pending)).
/// The state change is already visible; only the system call that wakes the
/// sleepers is left to the caller, who can make it when it suits (Python's
/// bindings make it with the GIL released, so the woken thread does not wake
/// into a GIL its waker still holds). Dropping the token wakes as well, so a
/// sleeper is never forgotten.
#[derive(Debug)]
#[must_use = "sleepers stay asleep until this is woken (dropping it wakes them)"]
pub struct PendingWake<'a> {
    /// The word the sleepers wait on.
    word: &'a AtomicU32,
    /// How many to wake.
    count: u32,
}

impl<'a> PendingWake<'a> {
    pub(crate) fn new(word: &'a AtomicU32, count: u32) -> Self {
        Self { word, count }
    }

    /// Wakes the sleepers now.
    pub fn wake(self) {
        // The wake happens in `drop`.
    }
}

impl Drop for PendingWake<'_> {
    fn drop(&mut self) {
        sys::wake(self.word, self.count);
    }
}

/// A mutex protecting a value, built on [`Lock`] (timed locking included).
///
/// ```
/// let m = tress::Mutex::new(1);
/// *m.lock() += 1;
/// assert_eq!(*m.lock(), 2);
/// ```
pub type Mutex<T> = lock_api::Mutex<Lock, T>;

/// The guard of a [`Mutex`].
pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, Lock, T>;
