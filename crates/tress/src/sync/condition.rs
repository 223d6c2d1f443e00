//! [`WaitQueue`] and [`Condition`]: condition variables in Python's style.
//!
//! A [`WaitQueue`] is the waiting half of a condition variable with no lock
//! of its own attached: a FIFO of waiter cells. A waiter enqueues a cell
//! *before* it releases the user's lock, so a `notify` issued as soon as the
//! lock is free finds it; `notify(n)` dequeues exactly `n` cells and flips
//! each to notified. Each cell is its own futex word, so a notification is
//! never lost or given to the wrong thread, and a waiter that times out or is
//! interrupted takes its cell out of the queue (or, if a notification beat it
//! to it, reports it as received). This is the structure of CPython's
//! `threading.Condition` (Lib/threading.py, 3.11), with a futex per waiter in
//! place of a lock per waiter.
//!
//! [`Condition`] couples a `WaitQueue` with a lock implementing [`CondLock`]
//! (a [`Lock`] or an [`RLock`] here; Python's bindings add foreign locks).
//!
//! Cell states: `WAITING` (0) → `SLEEPING` (2, the waiter sleeps on the word;
//! set only by the waiter) → `NOTIFIED` (1, set only by a notifier, which
//! wakes the word if it read `SLEEPING`). Memory ordering: the notifier's swap
//! is `Release` and the waiter reads with `Acquire`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{NotOwned, WaitError};
use crate::interrupt::{Interrupt, Parked, Uninterruptible, deadline_after, infallible, park};
use crate::sync::{Lock, Mutex, RLock, RLockState};
use crate::sys;

const WAITING: u32 = 0;
const NOTIFIED: u32 = 1;
const SLEEPING: u32 = 2;

/// One waiter's cell.
#[derive(Debug, Default)]
struct Cell {
    /// `WAITING`, `SLEEPING` or `NOTIFIED`.
    state: AtomicU32,
}

impl Cell {
    /// Flips the cell to notified; returns whether its thread sleeps and so
    /// needs a wake.
    fn mark(&self) -> bool {
        self.state.swap(NOTIFIED, Ordering::Release) == SLEEPING
    }

    /// Wakes the cell's thread.
    fn wake(&self) {
        sys::wake(&self.state, 1);
    }
}

/// Wakes that a notification decided on and left for the release of the
/// lock that guards the condition ("wait morphing" without a requeue).
///
/// A thread that notifies while it holds the lock would wake the waiter
/// straight into that held lock (and, under Python, into the GIL the
/// notifier holds too), costing a second sleep and wake. With
/// [`WaitQueue::notify_deferred`] the notified cells are marked at once (a
/// waiter that wakes early for any reason sees its notification) but woken
/// only by [`flush`](WakeList::flush), which the owner of the lock calls
/// right after every release of it.
///
/// Memory ordering: the notifier stores `pending` (`SeqCst`), issues a
/// `SeqCst` fence and reads whether the lock is held; a releaser frees the
/// lock with a `SeqCst` read-modify-write ([`Lock::release`] does) and then
/// reads `pending` (`SeqCst`). So when a release races with a notification,
/// one of the two sides sees the other and flushes (see
/// [`notify_deferred`](WaitQueue::notify_deferred)). A lock whose release is
/// weaker than `SeqCst` must issue a `SeqCst` fence before calling
/// [`flush`](WakeList::flush).
#[derive(Debug, Default)]
pub struct WakeList {
    /// Whether `cells` may hold cells to wake.
    pending: AtomicBool,
    /// The cells to wake.
    cells: Mutex<Vec<Arc<Cell>>>,
}

impl WakeList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every deferred waiter. Call it right after releasing the lock;
    /// with nothing deferred it is one atomic read.
    #[inline]
    pub fn flush(&self) {
        if self.pending.load(Ordering::SeqCst) {
            self.flush_slow();
        }
    }

    /// Whether some wake-ups wait for a [`flush`](Self::flush) (a snapshot).
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    #[cold]
    fn flush_slow(&self) {
        let cells = {
            let mut cells = self.cells.lock();
            self.pending.store(false, Ordering::SeqCst);
            std::mem::take(&mut *cells)
        };
        for cell in &cells {
            cell.wake();
        }
    }

    fn push(&self, cell: Arc<Cell>) {
        self.cells.lock().push(cell);
        self.pending.store(true, Ordering::SeqCst);
    }
}

/// Wake-ups decided while a lock was held, made once it is released, so a
/// woken thread does not wake straight into that lock. Dropping it wakes
/// every thread it holds; with nothing in it that is free.
///
/// ```
/// use tress::{WaitQueue, Wakeups};
///
/// let q = WaitQueue::new();
/// let ticket = q.enqueue();
/// let mut wakes = Wakeups::new();
/// assert_eq!(q.notify_into(1, &mut wakes), 1);
/// drop(wakes); // the wake happens here
/// assert!(ticket.wait());
/// ```
#[derive(Debug, Default)]
#[must_use = "dropping the wake-ups wakes at once"]
pub struct Wakeups {
    /// Cells flipped to notified whose threads sleep and need a wake.
    cells: Vec<Arc<Cell>>,
}

impl Wakeups {
    /// Nothing to wake (no allocation).
    #[inline]
    pub const fn new() -> Self {
        Self { cells: Vec::new() }
    }

    /// Whether there is nothing to wake.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Wakes them now (the same as dropping).
    #[inline]
    pub fn wake(self) {
        drop(self);
    }
}

impl Drop for Wakeups {
    #[inline]
    fn drop(&mut self) {
        if !self.cells.is_empty() {
            self.wake_all();
        }
    }
}

impl Wakeups {
    #[cold]
    fn wake_all(&mut self) {
        for cell in self.cells.drain(..) {
            cell.wake();
        }
    }
}

/// A FIFO queue of waiting threads: the waiting half of a condition variable.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use tress::WaitQueue;
///
/// let q = Arc::new(WaitQueue::new());
/// let ticket = q.enqueue();
/// assert_eq!(q.len(), 1);
/// assert_eq!(q.notify(5), 1);
/// assert!(ticket.wait());
/// ```
#[derive(Debug, Default)]
pub struct WaitQueue {
    /// The cells of the threads waiting, oldest first.
    waiters: Mutex<VecDeque<Arc<Cell>>>,
    /// `waiters.len()`, written under `waiters`' lock, read without it so a
    /// notify with nobody waiting takes no lock at all.
    len: AtomicUsize,
}

/// A place in a [`WaitQueue`], taken by [`WaitQueue::enqueue`]. Waiting on it
/// consumes it; dropping it unwaited leaves the queue.
#[derive(Debug)]
#[must_use = "a ticket does nothing unless waited on"]
pub struct Ticket<'a> {
    /// The queue it belongs to.
    queue: &'a WaitQueue,
    /// Its cell, shared with the queue until notified or withdrawn.
    cell: Arc<Cell>,
    /// Whether the ticket still has to leave the queue when dropped.
    pending: bool,
}

impl WaitQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins the queue. Do this before releasing the lock that guards the
    /// condition, then wait on the ticket.
    pub fn enqueue(&self) -> Ticket<'_> {
        let cell = Arc::new(Cell::default());
        let mut waiters = self.waiters.lock();
        waiters.push_back(Arc::clone(&cell));
        self.len.store(waiters.len(), Ordering::Release);
        drop(waiters);
        Ticket {
            queue: self,
            cell,
            pending: true,
        }
    }

    /// Wakes up to `n` waiters, oldest first; returns how many it woke.
    ///
    /// With nobody waiting this reads one atomic and takes no lock. That is
    /// exact when the caller holds the lock that guards the condition, as
    /// it must: a waiter enqueues before it releases that lock.
    #[inline]
    pub fn notify(&self, n: usize) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.notify_slow(n)
    }

    #[cold]
    fn notify_slow(&self, n: usize) -> usize {
        self.take(n, |cell| {
            if cell.mark() {
                cell.wake();
            }
        })
    }

    /// Pops up to `n` cells, oldest first, handing each to `f` outside the
    /// queue's lock; returns how many.
    fn take(&self, n: usize, mut f: impl FnMut(Arc<Cell>)) -> usize {
        let mut taken = 0;
        while taken < n {
            let cell = {
                let mut waiters = self.waiters.lock();
                let cell = waiters.pop_front();
                self.len.store(waiters.len(), Ordering::Release);
                cell
            };
            let Some(cell) = cell else {
                break;
            };
            f(cell);
            taken += 1;
        }
        taken
    }

    /// Notifies up to `n` waiters, oldest first, leaving the wake-up of
    /// those that sleep to `wakes` (made when it is dropped, after the
    /// caller released its lock); returns how many it notified. With nobody
    /// waiting this reads one atomic.
    #[inline]
    pub fn notify_into(&self, n: usize, wakes: &mut Wakeups) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.take(n, |cell| {
            if cell.mark() {
                wakes.cells.push(cell);
            }
        })
    }

    /// As [`notify_into`](Self::notify_into), for every waiter.
    #[inline]
    pub fn notify_all_into(&self, wakes: &mut Wakeups) -> usize {
        self.notify_deferred_all_with(|cell| {
            if cell.mark() {
                wakes.cells.push(cell);
            }
        })
    }

    /// Forgets every waiter without waking it, and frees the queue's
    /// internal lock if it was held.
    ///
    /// Meant for a child process right after `fork()`: the waiting threads
    /// (and a thread that may have held the internal lock) exist only in
    /// the parent. Calling it while other threads use the queue loses their
    /// notifications.
    pub fn reset_after_fork(&self) {
        if self.waiters.is_locked() {
            // SAFETY: per this method's contract no thread of this process
            // uses the queue; the holder was a parent thread that does not
            // exist in the child, so nobody else will unlock it.
            unsafe { self.waiters.force_unlock() };
        }
        let mut waiters = self.waiters.lock();
        // The cells are shared only with parent threads that do not exist
        // here: dropping them wakes nobody.
        waiters.clear();
        self.len.store(0, Ordering::Release);
    }

    /// Wakes every waiter; returns how many it woke.
    #[inline]
    pub fn notify_all(&self) -> usize {
        self.notify_deferred_all_with(|cell| {
            if cell.mark() {
                cell.wake();
            }
        })
    }

    /// Notifies up to `n` waiters, oldest first, deferring their wake-ups to
    /// `wakes` (see [`WakeList`]); returns how many. The caller holds the
    /// condition's lock, whose every release is followed by
    /// `wakes.flush()`; `lock_held` says whether the lock is still held now,
    /// after the notification is recorded: if not (another thread released
    /// an owner-less lock meanwhile) the wakes happen here.
    pub fn notify_deferred(
        &self,
        n: usize,
        wakes: &WakeList,
        lock_held: impl FnOnce() -> bool,
    ) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let count = self.take(n, |cell| {
            if cell.mark() {
                wakes.push(cell);
            }
        });
        // Order the `pending` store before reading the lock (see WakeList).
        std::sync::atomic::fence(Ordering::SeqCst);
        if !lock_held() {
            wakes.flush();
        }
        count
    }

    /// As [`notify_deferred`](Self::notify_deferred), for every waiter.
    pub fn notify_all_deferred(&self, wakes: &WakeList, lock_held: impl FnOnce() -> bool) -> usize {
        let count = self.notify_deferred_all_with(|cell| {
            if cell.mark() {
                wakes.push(cell);
            }
        });
        std::sync::atomic::fence(Ordering::SeqCst);
        if count > 0 && !lock_held() {
            wakes.flush();
        }
        count
    }

    fn notify_deferred_all_with(&self, mut f: impl FnMut(Arc<Cell>)) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let cells = {
            let mut waiters = self.waiters.lock();
            self.len.store(0, Ordering::Release);
            std::mem::take(&mut *waiters)
        };
        let count = cells.len();
        for cell in cells {
            f(cell);
        }
        count
    }

    /// How many threads wait (a snapshot).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether no thread waits (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes `cell` out of the queue unless a notifier already did; returns
    /// whether it was notified.
    fn withdraw(&self, cell: &Arc<Cell>) -> bool {
        let mut waiters = self.waiters.lock();
        if cell.state.load(Ordering::Acquire) == NOTIFIED {
            return true;
        }
        if let Some(i) = waiters.iter().position(|c| Arc::ptr_eq(c, cell)) {
            waiters.remove(i);
            self.len.store(waiters.len(), Ordering::Release);
            return false;
        }
        // A notifier popped it and is about to flip it: it counts as notified.
        true
    }
}

impl Ticket<'_> {
    /// Waits to be notified; returns `true`.
    pub fn wait(self) -> bool {
        infallible(self.wait_with(None, &mut Uninterruptible))
    }

    /// Waits at most `timeout`; returns whether it was notified.
    pub fn wait_timeout(self, timeout: Duration) -> bool {
        infallible(self.wait_with(deadline_after(timeout), &mut Uninterruptible))
    }

    /// Waits until `deadline` (forever if `None`) unless `interrupt` abandons
    /// the wait; `Ok(false)` means the deadline passed unnotified. A ticket
    /// abandoned or timed out leaves the queue, so no notification is wasted
    /// on it; one notified at that very moment reports `Ok(true)` (a
    /// timeout) or hands the notification to the next waiter (an interrupt).
    pub fn wait_with<I: Interrupt + ?Sized>(
        mut self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        self.pending = false;
        let state = &self.cell.state;
        loop {
            let s = state.load(Ordering::Acquire);
            if s == NOTIFIED {
                return Ok(true);
            }
            if s == WAITING
                && state
                    .compare_exchange(WAITING, SLEEPING, Ordering::Relaxed, Ordering::Acquire)
                    .is_err()
            {
                continue;
            }
            match park(state, SLEEPING, deadline, interrupt) {
                Ok(Parked::Retry) => {}
                Ok(Parked::TimedOut) => return Ok(self.queue.withdraw(&self.cell)),
                Err(e) => {
                    if self.queue.withdraw(&self.cell) {
                        // Notified as the wait was abandoned: pass the
                        // notification on rather than lose it.
                        self.queue.notify(1);
                    }
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.pending {
            self.queue.withdraw(&self.cell);
        }
    }
}

/// A lock that a [`Condition`] can release around a wait and take back
/// afterwards, as Python's `_release_save` / `_acquire_restore` /
/// `_is_owned` protocol.
pub trait CondLock {
    /// What a release hands to the matching restore.
    type Saved;

    /// Takes the lock.
    fn lock(&self);

    /// Releases the lock.
    fn unlock(&self) -> Result<(), NotOwned>;

    /// Whether the calling thread may wait or notify: it holds the lock (for
    /// an owner-less [`Lock`], whether anyone does, as CPython decides).
    fn is_owned(&self) -> bool;

    /// Releases the lock completely and says how to restore it.
    fn release_save(&self) -> Result<Self::Saved, NotOwned>;

    /// Takes the lock back as `saved` describes, waiting without limit.
    fn acquire_restore(&self, saved: Self::Saved);
}

impl CondLock for Lock {
    type Saved = ();

    fn lock(&self) {
        self.acquire();
    }

    fn unlock(&self) -> Result<(), NotOwned> {
        self.release().map_err(|_| NotOwned)
    }

    fn is_owned(&self) -> bool {
        self.is_locked()
    }

    fn release_save(&self) -> Result<(), NotOwned> {
        self.release().map_err(|_| NotOwned)
    }

    fn acquire_restore(&self, (): ()) {
        self.acquire();
    }
}

impl CondLock for RLock {
    type Saved = RLockState;

    fn lock(&self) {
        // Overflowing a machine-word recursion count is not a real case.
        self.acquire().expect("RLock recursion count overflowed");
    }

    fn unlock(&self) -> Result<(), NotOwned> {
        self.release()
    }

    fn is_owned(&self) -> bool {
        RLock::is_owned(self)
    }

    fn release_save(&self) -> Result<RLockState, NotOwned> {
        RLock::release_save(self)
    }

    fn acquire_restore(&self, saved: RLockState) {
        RLock::acquire_restore(self, saved);
    }
}

impl<L: CondLock + ?Sized> CondLock for Arc<L> {
    type Saved = L::Saved;

    fn lock(&self) {
        (**self).lock();
    }

    fn unlock(&self) -> Result<(), NotOwned> {
        (**self).unlock()
    }

    fn is_owned(&self) -> bool {
        (**self).is_owned()
    }

    fn release_save(&self) -> Result<L::Saved, NotOwned> {
        (**self).release_save()
    }

    fn acquire_restore(&self, saved: L::Saved) {
        (**self).acquire_restore(saved);
    }
}

/// A condition variable bundled with its lock, as Python's
/// `threading.Condition`: acquire the condition, check the state, `wait`
/// (which releases the lock while sleeping), `notify` from another thread
/// that holds the lock.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use tress::Condition;
///
/// let cond = Arc::new(Condition::new());
/// let ready = Arc::new(AtomicBool::new(false));
/// let (c, r) = (Arc::clone(&cond), Arc::clone(&ready));
/// let t = std::thread::spawn(move || {
///     c.acquire();
///     r.store(true, Ordering::Relaxed);
///     c.notify_all().unwrap();
///     c.release().unwrap();
/// });
/// cond.acquire();
/// assert!(cond.wait_for(|| ready.load(Ordering::Relaxed), None).unwrap());
/// cond.release().unwrap();
/// t.join().unwrap();
/// ```
#[derive(Debug, Default)]
pub struct Condition<L: CondLock = RLock> {
    /// The lock that guards the condition's state.
    lock: L,
    /// The waiting threads.
    queue: WaitQueue,
}

impl Condition<RLock> {
    /// A condition over a new [`RLock`], Python's default.
    pub fn new() -> Self {
        Self::with_lock(RLock::new())
    }
}

impl<L: CondLock> Condition<L> {
    /// A condition over `lock`.
    pub fn with_lock(lock: L) -> Self {
        Self {
            lock,
            queue: WaitQueue::new(),
        }
    }

    /// The underlying lock.
    pub fn lock(&self) -> &L {
        &self.lock
    }

    /// Takes the underlying lock.
    pub fn acquire(&self) {
        self.lock.lock();
    }

    /// Releases the underlying lock.
    pub fn release(&self) -> Result<(), NotOwned> {
        self.lock.unlock()
    }

    /// Releases the lock, waits to be notified, and takes the lock back.
    /// The caller must hold the lock.
    pub fn wait(&self) -> Result<bool, NotOwned> {
        self.wait_until(None)
    }

    /// As [`wait`](Self::wait), giving up after `timeout`; returns whether it
    /// was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, NotOwned> {
        self.wait_until(deadline_after(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, NotOwned> {
        self.wait_with(deadline, &mut Uninterruptible)
            .map_err(|e| match e {
                WaitError::NotOwned => NotOwned,
                WaitError::Interrupted(never) => infallible(Err(never)),
            })
    }

    /// As [`wait`](Self::wait), until `deadline` (forever if `None`) unless
    /// `interrupt` abandons the wait. In every case the lock is held again
    /// when this returns.
    pub fn wait_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, WaitError<I::Error>> {
        if !self.lock.is_owned() {
            return Err(WaitError::NotOwned);
        }
        let ticket = self.queue.enqueue();
        let saved = self.lock.release_save().map_err(|_| WaitError::NotOwned)?;
        let r = ticket.wait_with(deadline, interrupt);
        self.lock.acquire_restore(saved);
        r.map_err(WaitError::Interrupted)
    }

    /// Waits until `predicate` holds, re-checking after each notification,
    /// for at most `timeout` in all; returns the predicate's last value.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, NotOwned> {
        let deadline = timeout.and_then(deadline_after);
        let mut ok = predicate();
        while !ok {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            self.wait_until(deadline)?;
            ok = predicate();
        }
        Ok(ok)
    }

    /// Wakes up to `n` waiting threads; returns how many. The caller must
    /// hold the lock.
    pub fn notify(&self, n: usize) -> Result<usize, NotOwned> {
        if !self.lock.is_owned() {
            return Err(NotOwned);
        }
        Ok(self.queue.notify(n))
    }

    /// Wakes every waiting thread; returns how many. The caller must hold
    /// the lock.
    pub fn notify_all(&self) -> Result<usize, NotOwned> {
        if !self.lock.is_owned() {
            return Err(NotOwned);
        }
        Ok(self.queue.notify_all())
    }
}
