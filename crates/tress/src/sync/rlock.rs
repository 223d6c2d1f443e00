//! [`RLock`]: a reentrant lock with an owner and a recursion count.
//!
//! An inner [`Lock`] provides the exclusion; `owner` names the holding thread
//! (by [`current_thread_id`]) and `count` its recursion depth.
//!
//! Invariants: `owner != 0` exactly while the inner lock is held through this
//! `RLock`; only the owner writes `owner` or `count`. A thread comparing
//! `owner` with its own id can therefore trust the answer with `Relaxed`
//! loads: the only thread that can store its id there is itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{CountOverflow, NotOwned};
use crate::interrupt::{Interrupt, Uninterruptible, deadline_after, infallible};
use crate::sync::{Lock, PendingWake};
use crate::sys::current_thread_id;

/// A lock that the thread holding it may take again; it is free once released
/// as many times as it was acquired. Only the owner may release it, as with
/// Python's `threading.RLock`.
///
/// # Examples
///
/// ```
/// use tress::RLock;
///
/// let lock = RLock::new();
/// lock.acquire().unwrap();
/// lock.acquire().unwrap();
/// assert_eq!(lock.recursion_count(), 2);
/// lock.release().unwrap();
/// lock.release().unwrap();
/// assert!(lock.release().is_err());
/// ```
#[derive(Debug, Default)]
pub struct RLock {
    /// Held while some thread owns the `RLock`.
    lock: Lock,
    /// The owning thread's id, or 0.
    owner: AtomicUsize,
    /// The owner's recursion depth (0 when free).
    count: AtomicUsize,
}

/// What [`RLock::release_save`] hands back to [`RLock::acquire_restore`]: the
/// recursion depth and the owner at the time of the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RLockState {
    /// The recursion depth.
    pub count: usize,
    /// The owner's thread id.
    pub owner: usize,
}

impl RLock {
    /// A new, free reentrant lock.
    pub const fn new() -> Self {
        Self {
            lock: Lock::new(),
            owner: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn reenter(&self, me: usize) -> Option<Result<(), CountOverflow>> {
        if self.owner.load(Ordering::Relaxed) == me {
            let c = self.count.load(Ordering::Relaxed);
            Some(match c.checked_add(1) {
                Some(n) => {
                    self.count.store(n, Ordering::Relaxed);
                    Ok(())
                }
                None => Err(CountOverflow),
            })
        } else {
            None
        }
    }

    #[inline]
    fn take(&self, me: usize) {
        self.owner.store(me, Ordering::Relaxed);
        self.count.store(1, Ordering::Relaxed);
    }

    /// Takes the lock without waiting: `Ok(true)` if this thread now holds it
    /// (again), `Ok(false)` if another thread does.
    #[inline]
    pub fn try_acquire(&self) -> Result<bool, CountOverflow> {
        let me = current_thread_id();
        if let Some(r) = self.reenter(me) {
            return r.map(|()| true);
        }
        if self.lock.try_acquire() {
            self.take(me);
            return Ok(true);
        }
        Ok(false)
    }

    /// Takes the lock, waiting as long as it takes.
    pub fn acquire(&self) -> Result<(), CountOverflow> {
        self.acquire_with(None, &mut Uninterruptible)
            .map(|_| ())
            .map_err(|e| match e {
                Ok(never) => infallible(Err(never)),
                Err(overflow) => overflow,
            })
    }

    /// Takes the lock, waiting at most `timeout`; `Ok(false)` if it timed out.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, CountOverflow> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Takes the lock, waiting until `deadline`; `Ok(false)` if it passed.
    pub fn acquire_deadline(&self, deadline: Instant) -> Result<bool, CountOverflow> {
        self.acquire_until(Some(deadline))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<bool, CountOverflow> {
        self.acquire_with(deadline, &mut Uninterruptible)
            .map_err(|e| match e {
                Ok(never) => infallible(Err(never)),
                Err(overflow) => overflow,
            })
    }

    /// Takes the lock, waiting until `deadline` (forever if `None`) unless
    /// `interrupt` abandons the wait (`Err(Ok(e))`); a recursion count that
    /// would overflow is `Err(Err(CountOverflow))`.
    ///
    /// ```
    /// use tress::{RLock, Uninterruptible};
    /// let lock = RLock::new();
    /// assert_eq!(lock.acquire_with(None, &mut Uninterruptible), Ok(true));
    /// ```
    #[inline]
    pub fn acquire_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, Result<I::Error, CountOverflow>> {
        let me = current_thread_id();
        if let Some(r) = self.reenter(me) {
            return r.map(|()| true).map_err(Err);
        }
        if self.lock.acquire_with(deadline, interrupt).map_err(Ok)? {
            self.take(me);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Releases one level; frees the lock when the count reaches zero. Only
    /// the owning thread may release.
    #[inline]
    pub fn release(&self) -> Result<(), NotOwned> {
        self.release_pending().map(drop)
    }

    /// As [`release`](Self::release), leaving the wake-up of a waiter (when
    /// this frees the lock) to the returned token (see [`PendingWake`]).
    #[inline]
    pub fn release_pending(&self) -> Result<Option<PendingWake<'_>>, NotOwned> {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 || self.owner.load(Ordering::Relaxed) != current_thread_id() {
            return Err(NotOwned);
        }
        let c = count - 1;
        self.count.store(c, Ordering::Relaxed);
        if c == 0 {
            self.owner.store(0, Ordering::Relaxed);
            // We hold the inner lock, so this cannot fail.
            return Ok(self.lock.release_pending().ok().flatten());
        }
        Ok(None)
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub fn is_owned(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == current_thread_id()
            && self.count.load(Ordering::Relaxed) > 0
    }

    /// Whether any thread holds the lock (a snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// The calling thread's recursion depth: 0 unless it owns the lock.
    #[inline]
    pub fn recursion_count(&self) -> usize {
        if self.is_owned() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// The owner's thread id ([`current_thread_id`]), or 0 (a snapshot).
    #[inline]
    pub fn owner(&self) -> usize {
        self.owner.load(Ordering::Relaxed)
    }

    /// The owner's recursion depth as seen from any thread (a snapshot).
    #[inline]
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Releases the lock completely, whatever the depth, and returns what
    /// [`acquire_restore`](Self::acquire_restore) needs to take it back (what
    /// a condition variable does around a wait).
    ///
    /// ```
    /// let lock = tress::RLock::new();
    /// lock.acquire().unwrap();
    /// lock.acquire().unwrap();
    /// let saved = lock.release_save().unwrap();
    /// assert!(!lock.is_locked());
    /// lock.acquire_restore(saved);
    /// assert_eq!(lock.recursion_count(), 2);
    /// ```
    pub fn release_save(&self) -> Result<RLockState, NotOwned> {
        let owner = self.owner.load(Ordering::Relaxed);
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 || owner != current_thread_id() {
            return Err(NotOwned);
        }
        self.count.store(0, Ordering::Relaxed);
        self.owner.store(0, Ordering::Relaxed);
        let _ = self.lock.release();
        Ok(RLockState { count, owner })
    }

    /// Takes the lock (waiting without limit) and restores a saved state.
    /// A saved count of 0 leaves the lock held by nobody's count, as
    /// CPython's `_acquire_restore((0, owner))` does: it can no longer be
    /// released, only reset.
    pub fn acquire_restore(&self, saved: RLockState) {
        self.lock.acquire();
        self.owner.store(saved.owner, Ordering::Relaxed);
        self.count.store(saved.count, Ordering::Relaxed);
    }

    /// Like [`acquire_restore`](Self::acquire_restore), abandoning the wait
    /// when `interrupt` says so.
    pub fn acquire_restore_with<I: Interrupt + ?Sized>(
        &self,
        saved: RLockState,
        interrupt: &mut I,
    ) -> Result<(), I::Error> {
        self.lock.acquire_with(None, interrupt)?;
        self.owner.store(saved.owner, Ordering::Relaxed);
        self.count.store(saved.count, Ordering::Relaxed);
        Ok(())
    }

    /// Forces the lock back to free, for a child process right after
    /// `fork()` (see [`Lock::reset_after_fork`]).
    pub fn reset_after_fork(&self) {
        self.owner.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        self.lock.reset_after_fork();
    }
}
