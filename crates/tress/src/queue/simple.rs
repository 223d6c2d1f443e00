//! [`SimpleQueue`]: an unbounded FIFO with nothing but put and get.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::GetError;
use crate::interrupt::{
    BACKOFF_STEPS, Interrupt, Uninterruptible, back_off_until, deadline_after, infallible,
};
use crate::sync::{Mutex, WaitQueue, Wakeups};
use crate::sys::ForkEpoch;

/// An unbounded FIFO queue with no task tracking and no shutdown: Python's
/// `queue.SimpleQueue`.
///
/// [`put`](Self::put) never blocks and never runs anything but a push and
/// a wake-up, so it is safe to call from code that may interrupt the
/// calling thread in the middle of another put or get on the same queue
/// (Python calls it from `__del__` methods and signal handlers).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use tress::SimpleQueue;
///
/// let q = Arc::new(SimpleQueue::new());
/// let producer = {
///     let q = Arc::clone(&q);
///     std::thread::spawn(move || (0..100).for_each(|x| q.put(x)))
/// };
/// let sum: i32 = (0..100).map(|_| q.get()).sum();
/// producer.join().unwrap();
/// assert_eq!(sum, 4950);
/// ```
pub struct SimpleQueue<T> {
    items: Mutex<VecDeque<T>>,
    /// `items.len()`, written under its lock.
    len: AtomicUsize,
    /// Threads waiting for an item.
    getters: WaitQueue,
    /// The fork generation the waiter queue belongs to.
    epoch: ForkEpoch,
}

impl<T> std::fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T> Default for SimpleQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> SimpleQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            getters: WaitQueue::new(),
            epoch: ForkEpoch::new(),
        }
    }

    /// Appends `item`, waking one waiting getter.
    #[inline]
    pub fn put(&self, item: T) {
        self.enter();
        let mut wakes = Wakeups::new();
        let mut items = self.items.lock();
        items.push_back(item);
        self.len.store(items.len(), Ordering::Relaxed);
        self.getters.notify_into(1, &mut wakes);
    }

    /// Takes the oldest item, waiting as long as it takes.
    pub fn get(&self) -> T {
        match infallible(self.get_with(None, &mut Uninterruptible)) {
            Ok(item) => item,
            Err(_) => unreachable!("a get without a deadline never times out"),
        }
    }

    /// Takes the oldest item if there is one now.
    #[inline]
    pub fn try_get(&self) -> Option<T> {
        self.enter();
        let mut items = self.items.lock();
        let item = items.pop_front();
        self.len.store(items.len(), Ordering::Relaxed);
        item
    }

    /// Takes the oldest item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Option<T> {
        infallible(self.get_with(deadline_after(timeout), &mut Uninterruptible)).ok()
    }

    /// Takes the oldest item, waiting until `deadline` at the latest.
    pub fn get_deadline(&self, deadline: Instant) -> Option<T> {
        infallible(self.get_with(Some(deadline), &mut Uninterruptible)).ok()
    }

    /// Takes the oldest item, waiting until `deadline` (forever if `None`)
    /// unless `interrupt` abandons the wait. The outer error is the
    /// interrupt's; the inner `Err(GetError::Empty)` means the deadline
    /// passed (the `Empty` variant is the only one it returns).
    pub fn get_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<Result<T, GetError>, I::Error> {
        self.enter();
        let mut last_try = false;
        let mut spins = 0;
        loop {
            let mut items = self.items.lock();
            if let Some(item) = items.pop_front() {
                self.len.store(items.len(), Ordering::Relaxed);
                return Ok(Ok(item));
            }
            if last_try || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Err(GetError::Empty));
            }
            if spins < BACKOFF_STEPS && interrupt.may_spin() {
                drop(items);
                back_off_until(&mut spins, || !self.is_empty());
                continue;
            }
            let ticket = self.getters.enqueue();
            drop(items);
            if !ticket.wait_with(deadline, interrupt)? {
                last_try = true;
            }
        }
    }

    /// How many items are queued (a snapshot).
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no item is queued (a snapshot).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the items, oldest first, if the internal lock is free
    /// right now (for a garbage collector's traversal).
    pub fn try_inspect<R>(&self, f: impl FnOnce(&VecDeque<T>) -> R) -> Option<R> {
        self.items.try_lock().map(|items| f(&items))
    }

    /// Resets the waiting machinery on first use in a forked child (see
    /// [`Queue`](super::Queue)).
    #[inline]
    fn enter(&self) {
        self.epoch.enter(|| {
            if self.items.is_locked() {
                // SAFETY: as in `Queue::enter`: the holder was a parent
                // thread that does not exist in this process.
                unsafe { self.items.force_unlock() };
            }
            self.getters.reset_after_fork();
        });
    }
}
