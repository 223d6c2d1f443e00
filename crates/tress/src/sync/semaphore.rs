//! [`Semaphore`] and [`BoundedSemaphore`]: counting permits with timeouts.
//!
//! The count lives in its own word (`value`, 64-bit, so Python's large
//! initial values fit) and is taken with a compare-and-swap. Sleepers park on
//! a separate 32-bit `epoch` word that every release bumps while anyone
//! sleeps; `sleepers` counts them so an uncontended release makes no system
//! call.
//!
//! Memory ordering: a releaser adds to `value` and then reads `sleepers`; a
//! sleeper adds to `sleepers` and then reads `value`. Both pairs are `SeqCst`,
//! so at least one side sees the other (Dekker): either the releaser sees the
//! sleeper and wakes it, or the sleeper sees the new permits and takes one.
//! The sleeper reads `epoch` before its last look at `value`, so a release in
//! between changes `epoch` and the futex wait returns at once.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{CountOverflow, TooManyReleases};
use crate::interrupt::{Interrupt, Parked, Uninterruptible, deadline_after, infallible, park};
use crate::sync::PendingWake;

/// A counter of permits: `acquire` takes one, waiting while there are none;
/// `release(n)` gives `n` back and wakes as many waiters.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tress::Semaphore;
///
/// let sem = Semaphore::new(2);
/// sem.acquire();
/// sem.acquire();
/// assert!(!sem.try_acquire());
/// assert!(!sem.acquire_timeout(Duration::from_millis(5)));
/// sem.release(2).unwrap();
/// assert_eq!(sem.value(), 2);
/// ```
#[derive(Debug, Default)]
pub struct Semaphore {
    /// Permits available.
    value: AtomicUsize,
    /// Bumped by releases that may have sleepers to wake; sleepers park here.
    epoch: AtomicU32,
    /// Threads inside the slow path of an acquire.
    sleepers: AtomicUsize,
}

impl Semaphore {
    /// A semaphore holding `permits` permits.
    pub const fn new(permits: usize) -> Self {
        Self {
            value: AtomicUsize::new(permits),
            epoch: AtomicU32::new(0),
            sleepers: AtomicUsize::new(0),
        }
    }

    /// The permits available now (a snapshot).
    #[inline]
    pub fn value(&self) -> usize {
        self.value.load(Ordering::Relaxed)
    }

    /// Takes a permit if one is available, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut v = self.value.load(Ordering::Relaxed);
        while v > 0 {
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Takes a permit, waiting as long as it takes.
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire() {
            infallible(self.acquire_slow(None, &mut Uninterruptible));
        }
    }

    /// Takes a permit, waiting at most `timeout`; returns whether it got one.
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.try_acquire()
            || infallible(self.acquire_slow(deadline_after(timeout), &mut Uninterruptible))
    }

    /// Takes a permit, waiting until `deadline`; returns whether it got one.
    #[inline]
    pub fn acquire_deadline(&self, deadline: Instant) -> bool {
        self.try_acquire() || infallible(self.acquire_slow(Some(deadline), &mut Uninterruptible))
    }

    /// Takes a permit, waiting until `deadline` (forever if `None`) unless
    /// `interrupt` abandons the wait; `Ok(false)` means the deadline passed.
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
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if self.value.load(Ordering::SeqCst) > 0 && self.try_acquire() {
                break Ok(true);
            }
            match park(&self.epoch, epoch, deadline, interrupt) {
                Ok(Parked::Retry) => {}
                Ok(Parked::TimedOut) => break Ok(self.try_acquire()),
                Err(e) => break Err(e),
            }
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Adds `n` permits and wakes up to `n` waiters. Fails, changing nothing,
    /// if the count would overflow.
    #[inline]
    pub fn release(&self, n: usize) -> Result<(), CountOverflow> {
        self.release_pending(n).map(drop)
    }

    /// Adds `n` permits, leaving the wake-up of waiters (if any) to the
    /// returned token (see [`PendingWake`]).
    #[inline]
    pub fn release_pending(&self, n: usize) -> Result<Option<PendingWake<'_>>, CountOverflow> {
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            let new = v.checked_add(n).ok_or(CountOverflow)?;
            match self
                .value
                .compare_exchange_weak(v, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        Ok(self.wake(n))
    }

    #[inline]
    fn wake(&self, n: usize) -> Option<PendingWake<'_>> {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            Some(self.wake_slow(n))
        } else {
            None
        }
    }

    #[cold]
    fn wake_slow(&self, n: usize) -> PendingWake<'_> {
        self.epoch.fetch_add(1, Ordering::Release);
        PendingWake::new(&self.epoch, u32::try_from(n).unwrap_or(u32::MAX))
    }
}

/// A [`Semaphore`] that refuses to be released past its initial value, which
/// catches a release without a matching acquire.
///
/// # Examples
///
/// ```
/// use tress::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(1);
/// assert!(sem.release(1).is_err());
/// sem.acquire();
/// sem.release(1).unwrap();
/// assert_eq!((sem.value(), sem.bound()), (1, 1));
/// ```
#[derive(Debug, Default)]
pub struct BoundedSemaphore {
    /// The permits.
    sem: Semaphore,
    /// The initial value, which the count may never exceed.
    bound: usize,
}

impl BoundedSemaphore {
    /// A bounded semaphore holding (and bounded by) `permits`.
    pub const fn new(permits: usize) -> Self {
        Self {
            sem: Semaphore::new(permits),
            bound: permits,
        }
    }

    /// The initial value, the most permits there can be.
    #[inline]
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// The permits available now (a snapshot).
    #[inline]
    pub fn value(&self) -> usize {
        self.sem.value()
    }

    /// See [`Semaphore::try_acquire`].
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.sem.try_acquire()
    }

    /// See [`Semaphore::acquire`].
    #[inline]
    pub fn acquire(&self) {
        self.sem.acquire();
    }

    /// See [`Semaphore::acquire_timeout`].
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.sem.acquire_timeout(timeout)
    }

    /// See [`Semaphore::acquire_deadline`].
    #[inline]
    pub fn acquire_deadline(&self, deadline: Instant) -> bool {
        self.sem.acquire_deadline(deadline)
    }

    /// See [`Semaphore::acquire_with`].
    #[inline]
    pub fn acquire_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        self.sem.acquire_with(deadline, interrupt)
    }

    /// Adds `n` permits unless that would exceed the bound, in which case it
    /// fails and changes nothing.
    #[inline]
    pub fn release(&self, n: usize) -> Result<(), TooManyReleases> {
        self.release_pending(n).map(drop)
    }

    /// As [`release`](Self::release), leaving the wake-up of waiters (if
    /// any) to the returned token (see [`PendingWake`]).
    #[inline]
    pub fn release_pending(&self, n: usize) -> Result<Option<PendingWake<'_>>, TooManyReleases> {
        let value = &self.sem.value;
        let mut v = value.load(Ordering::Relaxed);
        loop {
            let new = match v.checked_add(n) {
                Some(new) if new <= self.bound => new,
                _ => return Err(TooManyReleases),
            };
            match value.compare_exchange_weak(v, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        Ok(self.sem.wake(n))
    }
}
