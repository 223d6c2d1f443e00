//! Blocking queues with Python's semantics: [`Queue`] (FIFO, or any
//! [`Order`]: [`LifoQueue`], [`PriorityQueue`]) with an optional bound,
//! `task_done` / `join` and `shutdown`, and the unbounded [`SimpleQueue`].
//!
//! Every blocking call comes in the four forms of the rest of the crate:
//! `put(item)` (wait as long as it takes), `put_timeout`, `put_deadline`,
//! `put_with(item, deadline, &mut impl Interrupt)`, and a non-blocking
//! `try_put`; the same for `get` and `join`.
//!
//! # Design
//!
//! One internal lock guards the items; three [`WaitQueue`]s hold the threads
//! waiting for an item, for room, and for `join`. A put into a queue with
//! room and a get from one with items take the lock once, make no system
//! call and (once the buffer has grown) no allocation: the waiter queues
//! are consulted through one atomic read each. A thread that has to wait
//! enqueues itself before it lets go of the lock, so no wake-up is lost,
//! and a notified thread is woken only after the notifier released the lock.
//! The lock itself is taken through the caller's [`Interrupt`], so a caller
//! holding something the lock's holder may need (Python's GIL, while a
//! priority comparison runs Python code) lets go of it before it sleeps.
//! A waiter whose interrupt allows spinning first spins and yields for a
//! few rounds (crossbeam's backoff schedule), so a handoff between running threads
//! costs no sleep; Python's bindings never spin.
//!
//! After `fork()`, the first call in the child forgets the parent's waiting
//! threads (and frees the lock if a parent thread held it), so the child's
//! own threads are never passed over for a thread that does not exist.

mod order;
mod simple;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{GetError, PutError, TooManyTaskDone};
use crate::interrupt::{
    BACKOFF_STEPS, Interrupt, Uninterruptible, back_off_until, deadline_after, infallible,
};
use crate::sync::{Mutex, MutexGuard, WaitQueue, Wakeups};
use crate::sys::ForkEpoch;

pub use order::{Fifo, Lifo, OrdLess, Order, Priority};
pub use simple::SimpleQueue;

/// A [`Queue`] that hands out the most recently put item first.
pub type LifoQueue<T> = Queue<T, Lifo<T>>;

/// A [`Queue`] that hands out the smallest item first (by `Ord`, or by the
/// comparison given to [`Priority::by`]).
pub type PriorityQueue<T, F = OrdLess<T>> = Queue<T, Priority<T, F>>;

/// How long a call may wait.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// Not at all.
    No,
    /// Until the deadline, or forever.
    Until(Option<Instant>),
}

/// A multi-producer, multi-consumer blocking queue: Python's `queue.Queue`.
///
/// `maxsize` 0 means unbounded (Python's convention). Every put counts an
/// unfinished task; [`task_done`](Self::task_done) finishes one and
/// [`join`](Self::join) waits until none is left. After
/// [`shutdown`](Self::shutdown) puts fail, and gets drain what is left and
/// then fail (or fail at once after an immediate shutdown, which drops the
/// items); every blocked caller wakes up.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use tress::Queue;
///
/// let q: Arc<Queue<u32>> = Arc::new(Queue::bounded(2));
/// let consumer = {
///     let q = Arc::clone(&q);
///     std::thread::spawn(move || {
///         let mut sum = 0;
///         while let Ok(x) = q.get() {
///             sum += x;
///             q.task_done().unwrap();
///         }
///         sum // get fails once the queue is shut down and drained
///     })
/// };
/// for x in 1..=10 {
///     q.put(x).unwrap(); // waits while two items are queued
/// }
/// q.join(); // every item was taken and marked done
/// q.shutdown(false);
/// assert_eq!(consumer.join().unwrap(), 55);
/// ```
///
/// A priority queue hands out the smallest item first:
///
/// ```
/// use tress::queue::{Priority, Queue};
///
/// let q = Queue::with_order(Priority::default(), 0);
/// for x in [3, 1, 2] {
///     q.put(x).unwrap();
/// }
/// assert_eq!(q.try_get(), Ok(1));
/// ```
pub struct Queue<T, O: Order<T> = Fifo<T>> {
    /// The items. The atomics below change only while it is held.
    items: Mutex<O>,
    /// How many items are stored (read without the lock).
    len: AtomicUsize,
    /// The bound; 0 for none.
    maxsize: AtomicUsize,
    /// Items put and not yet marked done.
    unfinished: AtomicU64,
    /// Whether [`shutdown`](Self::shutdown) was called.
    shut: AtomicBool,
    /// Threads waiting for an item.
    not_empty: WaitQueue,
    /// Threads waiting for room.
    not_full: WaitQueue,
    /// Threads waiting in `join`.
    all_done: WaitQueue,
    /// The fork generation the waiter queues belong to.
    epoch: ForkEpoch,
    _item: PhantomData<fn(T) -> T>,
}

impl<T, O: Order<T>> std::fmt::Debug for Queue<T, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("maxsize", &self.maxsize())
            .field("unfinished_tasks", &self.unfinished_tasks())
            .field("shutdown", &self.is_shutdown())
            .finish_non_exhaustive()
    }
}

impl<T, O: Order<T> + Default> Default for Queue<T, O> {
    /// An unbounded queue.
    fn default() -> Self {
        Self::with_order(O::default(), 0)
    }
}

impl<T> Queue<T> {
    /// An unbounded FIFO queue. Other orders: [`with_order`](Self::with_order)
    /// or `Default`.
    ///
    /// ```
    /// use tress::{LifoQueue, Queue};
    /// let fifo = Queue::new();
    /// fifo.put("a").unwrap();
    /// let lifo: LifoQueue<&str> = LifoQueue::default();
    /// lifo.put("a").unwrap();
    /// ```
    pub fn new() -> Self {
        Self::with_order(Fifo::default(), 0)
    }

    /// A FIFO queue holding at most `maxsize` items (0: unbounded).
    pub fn bounded(maxsize: usize) -> Self {
        Self::with_order(Fifo::default(), maxsize)
    }
}

impl<T, O: Order<T>> Queue<T, O> {
    /// A queue keeping its items in `order`, holding at most `maxsize`
    /// (0: unbounded). Items already in `order` count as stored but not as
    /// unfinished tasks.
    ///
    /// ```
    /// use tress::queue::{Priority, Queue};
    /// // Longest string first.
    /// let longest = |a: &String, b: &String| Ok::<_, std::convert::Infallible>(a.len() > b.len());
    /// let q = Queue::with_order(Priority::by(longest), 0);
    /// q.put("ab".to_owned()).unwrap();
    /// q.put("abc".to_owned()).unwrap();
    /// assert_eq!(q.try_get().unwrap(), "abc");
    /// ```
    pub fn with_order(order: O, maxsize: usize) -> Self {
        Self {
            len: AtomicUsize::new(order.len()),
            items: Mutex::new(order),
            maxsize: AtomicUsize::new(maxsize),
            unfinished: AtomicU64::new(0),
            shut: AtomicBool::new(false),
            not_empty: WaitQueue::new(),
            not_full: WaitQueue::new(),
            all_done: WaitQueue::new(),
            epoch: ForkEpoch::new(),
            _item: PhantomData,
        }
    }

    // ----------------------------------------------------------------- put

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: T) -> Result<(), PutError<T, O::Error>> {
        self.put_inner(
            item,
            Block::Until(None),
            &mut Uninterruptible,
            |e| e,
            |n| match n {},
        )
    }

    /// Puts `item` if there is room now.
    ///
    /// ```
    /// use tress::{PutError, Queue};
    /// let q = Queue::bounded(1);
    /// assert!(q.try_put(1).is_ok());
    /// assert!(matches!(q.try_put(2), Err(PutError::Full(2))));
    /// ```
    pub fn try_put(&self, item: T) -> Result<(), PutError<T, O::Error>> {
        self.put_inner(item, Block::No, &mut Uninterruptible, |e| e, |n| match n {})
    }

    /// Puts `item`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T, O::Error>> {
        let deadline = deadline_after(timeout);
        self.put_inner(
            item,
            Block::Until(deadline),
            &mut Uninterruptible,
            |e| e,
            |n| match n {},
        )
    }

    /// Puts `item`, waiting until `deadline` at the latest for room.
    pub fn put_deadline(&self, item: T, deadline: Instant) -> Result<(), PutError<T, O::Error>> {
        let block = Block::Until(Some(deadline));
        self.put_inner(item, block, &mut Uninterruptible, |e| e, |n| match n {})
    }

    /// Puts `item`, waiting for room until `deadline` (forever if `None`)
    /// unless `interrupt` abandons the wait. The deadline is read only if
    /// the call has to wait, and a deadline already past makes it a
    /// non-blocking put. Any failure leaves the queue unchanged and hands
    /// the item back.
    pub fn put_with<I>(
        &self,
        item: T,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<(), PutError<T, I::Error>>
    where
        I: Interrupt + ?Sized,
        I::Error: From<O::Error>,
    {
        self.put_inner(
            item,
            Block::Until(deadline),
            interrupt,
            I::Error::from,
            |e| e,
        )
    }

    /// [`try_put`](Self::try_put) for a caller whose wait for the internal
    /// lock must go through `interrupt` (see the module docs).
    pub fn try_put_with<I>(&self, item: T, interrupt: &mut I) -> Result<(), PutError<T, I::Error>>
    where
        I: Interrupt + ?Sized,
        I::Error: From<O::Error>,
    {
        self.put_inner(item, Block::No, interrupt, I::Error::from, |e| e)
    }

    fn put_inner<I: Interrupt + ?Sized, E>(
        &self,
        item: T,
        block: Block,
        interrupt: &mut I,
        order_error: impl FnOnce(O::Error) -> E,
        wait_error: impl FnOnce(I::Error) -> E,
    ) -> Result<(), PutError<T, E>> {
        self.enter();
        let mut last_try = false;
        let mut notified = false;
        let mut spins = 0;
        loop {
            let mut wakes = Wakeups::new();
            let mut items = match self.lock(interrupt) {
                Ok(items) => items,
                Err(e) => {
                    if notified {
                        // Woken for room this call will not use: pass it on.
                        self.not_full.notify(1);
                    }
                    return Err(PutError::Failed(item, wait_error(e)));
                }
            };
            if self.shut.load(Ordering::Relaxed) {
                return Err(PutError::ShutDown(item));
            }
            let maxsize = self.maxsize.load(Ordering::Relaxed);
            if maxsize == 0 || items.len() < maxsize {
                return match items.push(item) {
                    Ok(()) => {
                        self.len.store(items.len(), Ordering::Relaxed);
                        // Written only under the lock: no read-modify-write needed.
                        let unfinished = self.unfinished.load(Ordering::Relaxed);
                        self.unfinished.store(unfinished + 1, Ordering::Relaxed);
                        self.not_empty.notify_into(1, &mut wakes);
                        Ok(())
                    }
                    Err((item, e)) => {
                        // Pass on the room this thread may have been woken for.
                        self.not_full.notify_into(1, &mut wakes);
                        Err(PutError::Failed(item, order_error(e)))
                    }
                };
            }
            let deadline = match block {
                Block::No => return Err(PutError::Full(item)),
                Block::Until(deadline) => deadline,
            };
            if last_try || deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(PutError::Full(item));
            }
            if spins < BACKOFF_STEPS && interrupt.may_spin() {
                drop(items);
                back_off_until(&mut spins, || {
                    let maxsize = self.maxsize.load(Ordering::Relaxed);
                    maxsize == 0 || self.len() < maxsize || self.is_shutdown()
                });
                continue;
            }
            let ticket = self.not_full.enqueue();
            drop(items);
            match ticket.wait_with(deadline, interrupt) {
                Ok(true) => notified = true,
                // One more look, as Python's loop takes: room may have
                // appeared as the deadline passed.
                Ok(false) => last_try = true,
                Err(e) => return Err(PutError::Failed(item, wait_error(e))),
            }
        }
    }

    // ----------------------------------------------------------------- get

    /// Takes the next item, waiting while the queue is empty. Fails only
    /// once the queue is shut down and empty (or on a failed comparison).
    pub fn get(&self) -> Result<T, GetError<O::Error>> {
        self.get_inner(
            Block::Until(None),
            &mut Uninterruptible,
            |e| e,
            |n| match n {},
        )
    }

    /// Takes the next item if there is one now.
    ///
    /// ```
    /// use tress::{GetError, Queue};
    /// let q: Queue<i32> = Queue::new();
    /// assert_eq!(q.try_get(), Err(GetError::Empty));
    /// ```
    pub fn try_get(&self) -> Result<T, GetError<O::Error>> {
        self.get_inner(Block::No, &mut Uninterruptible, |e| e, |n| match n {})
    }

    /// Takes the next item, waiting at most `timeout` for one.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError<O::Error>> {
        let block = Block::Until(deadline_after(timeout));
        self.get_inner(block, &mut Uninterruptible, |e| e, |n| match n {})
    }

    /// Takes the next item, waiting until `deadline` at the latest.
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetError<O::Error>> {
        let block = Block::Until(Some(deadline));
        self.get_inner(block, &mut Uninterruptible, |e| e, |n| match n {})
    }

    /// Takes the next item, waiting until `deadline` (forever if `None`)
    /// unless `interrupt` abandons the wait; see [`put_with`](Self::put_with).
    pub fn get_with<I>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<T, GetError<I::Error>>
    where
        I: Interrupt + ?Sized,
        I::Error: From<O::Error>,
    {
        self.get_inner(Block::Until(deadline), interrupt, I::Error::from, |e| e)
    }

    /// [`try_get`](Self::try_get) for a caller whose wait for the internal
    /// lock must go through `interrupt`.
    pub fn try_get_with<I>(&self, interrupt: &mut I) -> Result<T, GetError<I::Error>>
    where
        I: Interrupt + ?Sized,
        I::Error: From<O::Error>,
    {
        self.get_inner(Block::No, interrupt, I::Error::from, |e| e)
    }

    fn get_inner<I: Interrupt + ?Sized, E>(
        &self,
        block: Block,
        interrupt: &mut I,
        order_error: impl FnOnce(O::Error) -> E,
        wait_error: impl FnOnce(I::Error) -> E,
    ) -> Result<T, GetError<E>> {
        self.enter();
        let mut last_try = false;
        let mut notified = false;
        let mut spins = 0;
        loop {
            let mut wakes = Wakeups::new();
            let mut items = match self.lock(interrupt) {
                Ok(items) => items,
                Err(e) => {
                    if notified {
                        // Woken for an item this call will not take: pass
                        // it on.
                        self.not_empty.notify(1);
                    }
                    return Err(GetError::Failed(wait_error(e)));
                }
            };
            match items.pop() {
                Ok(Some(item)) => {
                    self.len.store(items.len(), Ordering::Relaxed);
                    self.not_full.notify_into(1, &mut wakes);
                    return Ok(item);
                }
                Ok(None) => {}
                Err(e) => {
                    // Pass on the item this thread may have been woken for.
                    if !items.is_empty() {
                        self.not_empty.notify_into(1, &mut wakes);
                    }
                    return Err(GetError::Failed(order_error(e)));
                }
            }
            if self.shut.load(Ordering::Relaxed) {
                return Err(GetError::ShutDown);
            }
            let deadline = match block {
                Block::No => return Err(GetError::Empty),
                Block::Until(deadline) => deadline,
            };
            if last_try || deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(GetError::Empty);
            }
            if spins < BACKOFF_STEPS && interrupt.may_spin() {
                drop(items);
                back_off_until(&mut spins, || !self.is_empty() || self.is_shutdown());
                continue;
            }
            let ticket = self.not_empty.enqueue();
            drop(items);
            match ticket.wait_with(deadline, interrupt) {
                Ok(true) => notified = true,
                Ok(false) => last_try = true,
                Err(e) => return Err(GetError::Failed(wait_error(e))),
            }
        }
    }

    // ------------------------------------------------------ tasks and join

    /// Marks one task done (one item put earlier has been dealt with). When
    /// none is left, every thread in [`join`](Self::join) returns.
    pub fn task_done(&self) -> Result<(), TooManyTaskDone> {
        infallible(self.task_done_with(&mut Uninterruptible))
    }

    /// [`task_done`](Self::task_done), taking the internal lock through
    /// `interrupt`. The outer error is the interrupt's.
    pub fn task_done_with<I: Interrupt + ?Sized>(
        &self,
        interrupt: &mut I,
    ) -> Result<Result<(), TooManyTaskDone>, I::Error> {
        Ok(self.task_done_pending(interrupt)?.map(Wakeups::wake))
    }

    /// [`task_done_with`](Self::task_done_with), leaving the wake-up of the
    /// threads in [`join`](Self::join) (if this finished the last task) to
    /// the caller: they are woken when the returned [`Wakeups`] is dropped
    /// or [woken](Wakeups::wake). Python's bindings wake them with the GIL
    /// released, so the joiner can run at once.
    pub fn task_done_pending<I: Interrupt + ?Sized>(
        &self,
        interrupt: &mut I,
    ) -> Result<Result<Wakeups, TooManyTaskDone>, I::Error> {
        self.enter();
        let mut wakes = Wakeups::new();
        let items = self.lock(interrupt)?;
        let unfinished = self.unfinished.load(Ordering::Relaxed);
        if unfinished == 0 {
            return Ok(Err(TooManyTaskDone));
        }
        self.unfinished.store(unfinished - 1, Ordering::Relaxed);
        if unfinished == 1 {
            self.all_done.notify_all_into(&mut wakes);
        }
        drop(items);
        Ok(Ok(wakes))
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) {
        infallible(self.join_with(None, &mut Uninterruptible));
    }

    /// [`join`](Self::join), waiting at most `timeout`; returns whether no
    /// task was left.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        infallible(self.join_with(deadline_after(timeout), &mut Uninterruptible))
    }

    /// [`join`](Self::join) until `deadline` (forever if `None`) unless
    /// `interrupt` abandons the wait; `Ok(false)` means tasks were left at
    /// the deadline.
    pub fn join_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        self.enter();
        loop {
            let items = self.lock(interrupt)?;
            if self.unfinished.load(Ordering::Relaxed) == 0 {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            let ticket = self.all_done.enqueue();
            drop(items);
            ticket.wait_with(deadline, interrupt)?;
        }
    }

    // ------------------------------------------------------------ shutdown

    /// Shuts the queue down: puts fail from now on; gets take what is left
    /// and then fail. With `immediate`, the items left are dropped (each
    /// counting as a finished task) and gets fail at once. Every blocked
    /// caller wakes up to see it.
    ///
    /// ```
    /// use tress::{GetError, PutError, Queue};
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// q.shutdown(false);
    /// assert!(matches!(q.put(2), Err(PutError::ShutDown(2))));
    /// assert_eq!(q.get(), Ok(1));
    /// assert_eq!(q.get(), Err(GetError::ShutDown));
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        drop(infallible(
            self.shutdown_with(immediate, &mut Uninterruptible),
        ));
    }

    /// [`shutdown`](Self::shutdown), taking the internal lock through
    /// `interrupt`; returns the items an immediate shutdown removed, for
    /// the caller to drop when it suits (not under any lock).
    pub fn shutdown_with<I: Interrupt + ?Sized>(
        &self,
        immediate: bool,
        interrupt: &mut I,
    ) -> Result<Vec<T>, I::Error> {
        self.enter();
        let mut wakes = Wakeups::new();
        let mut items = self.lock(interrupt)?;
        self.shut.store(true, Ordering::Relaxed);
        let mut removed = Vec::new();
        if immediate {
            removed = items.drain_all();
            self.len.store(items.len(), Ordering::Relaxed);
            let unfinished = self.unfinished.load(Ordering::Relaxed);
            let left = unfinished.saturating_sub(removed.len() as u64);
            self.unfinished.store(left, Ordering::Relaxed);
            self.all_done.notify_all_into(&mut wakes);
        }
        self.not_empty.notify_all_into(&mut wakes);
        self.not_full.notify_all_into(&mut wakes);
        drop(items);
        Ok(removed)
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    #[inline]
    pub fn is_shutdown(&self) -> bool {
        self.shut.load(Ordering::Relaxed)
    }

    // ---------------------------------------------------------- inspection

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

    /// Whether the queue is bounded and holds `maxsize` items or more (a
    /// snapshot).
    #[inline]
    pub fn is_full(&self) -> bool {
        let maxsize = self.maxsize();
        maxsize > 0 && self.len() >= maxsize
    }

    /// The bound; 0 means unbounded.
    #[inline]
    pub fn maxsize(&self) -> usize {
        self.maxsize.load(Ordering::Relaxed)
    }

    /// Items put and not yet marked done (a snapshot).
    #[inline]
    pub fn unfinished_tasks(&self) -> u64 {
        self.unfinished.load(Ordering::Relaxed)
    }

    /// Changes the bound (0: unbounded). Items already queued stay; threads
    /// waiting for room look again.
    pub fn set_maxsize(&self, maxsize: usize) {
        infallible(self.set_maxsize_with(maxsize, &mut Uninterruptible));
    }

    /// [`set_maxsize`](Self::set_maxsize), taking the internal lock
    /// through `interrupt`.
    pub fn set_maxsize_with<I: Interrupt + ?Sized>(
        &self,
        maxsize: usize,
        interrupt: &mut I,
    ) -> Result<(), I::Error> {
        self.enter();
        let mut wakes = Wakeups::new();
        let items = self.lock(interrupt)?;
        self.maxsize.store(maxsize, Ordering::Relaxed);
        self.not_full.notify_all_into(&mut wakes);
        drop(items);
        Ok(())
    }

    /// Runs `f` on the items (in storage order, which is the order they
    /// come out only for FIFO and reversed for LIFO) with the internal lock
    /// held, taken through `interrupt`. `f` must not call into the queue.
    pub fn inspect_with<I: Interrupt + ?Sized, R>(
        &self,
        interrupt: &mut I,
        f: impl FnOnce(&O) -> R,
    ) -> Result<R, I::Error> {
        self.enter();
        let items = self.lock(interrupt)?;
        Ok(f(&items))
    }

    /// Runs `f` on the items if the internal lock is free right now, without
    /// waiting (for a garbage collector's traversal).
    pub fn try_inspect<R>(&self, f: impl FnOnce(&O) -> R) -> Option<R> {
        self.items.try_lock().map(|items| f(&items))
    }

    /// Stores `item` without waiting, counting or waking anyone, ignoring
    /// the bound and shutdown (Python's `Queue._put`, which a subclass's
    /// hooks call under their own lock). Takes the internal lock through
    /// `interrupt`.
    pub fn store_with<I>(&self, item: T, interrupt: &mut I) -> Result<(), (T, I::Error)>
    where
        I: Interrupt + ?Sized,
        I::Error: From<O::Error>,
    {
        self.enter();
        let mut items = match self.lock(interrupt) {
            Ok(items) => items,
            Err(e) => return Err((item, e)),
        };
        let r = items
            .push(item)
            .map_err(|(item, e)| (item, I::Error::from(e)));
        self.len.store(items.len(), Ordering::Relaxed);
        r
    }

    /// Takes the next item without waiting or waking anyone (Python's
    /// `Queue._get`); `Ok(None)` when empty.
    pub fn take_with<I>(&self, interrupt: &mut I) -> Result<Option<T>, I::Error>
    where
        I: Interrupt + ?Sized,
        I::Error: From<O::Error>,
    {
        self.enter();
        let mut items = self.lock(interrupt)?;
        let r = items.pop().map_err(I::Error::from);
        self.len.store(items.len(), Ordering::Relaxed);
        r
    }

    // ------------------------------------------------------------ internals

    /// Takes the internal lock; a wait goes through `interrupt`.
    #[inline]
    fn lock<I: Interrupt + ?Sized>(
        &self,
        interrupt: &mut I,
    ) -> Result<MutexGuard<'_, O>, I::Error> {
        match self.items.try_lock() {
            Some(items) => Ok(items),
            None => self.lock_slow(interrupt),
        }
    }

    #[cold]
    fn lock_slow<I: Interrupt + ?Sized>(
        &self,
        interrupt: &mut I,
    ) -> Result<MutexGuard<'_, O>, I::Error> {
        // SAFETY: the raw lock is only taken here, through `acquire_with`,
        // and the hold is wrapped in a guard right below, exactly what
        // `Mutex::lock` does with `RawMutex::lock`.
        let raw = unsafe { self.items.raw() };
        while !raw.acquire_with(None, interrupt)? {}
        // SAFETY: this thread holds the lock: `acquire_with` returned true.
        Ok(unsafe { self.items.make_guard_unchecked() })
    }

    /// Resets the waiting machinery on first use in a forked child.
    #[inline]
    fn enter(&self) {
        self.epoch.enter(|| {
            if self.items.is_locked() {
                // SAFETY: the queue was last used before a fork, so no
                // thread of this process can hold the lock (one that got
                // past `enter` would have seen the new generation): its
                // holder was a parent thread that does not exist here.
                unsafe { self.items.force_unlock() };
            }
            self.not_empty.reset_after_fork();
            self.not_full.reset_after_fork();
            self.all_done.reset_after_fork();
        });
    }
}
