//! [`Future`]: the handle on a task submitted to an
//! [`Executor`](super::Executor), and the task itself: one allocation holds
//! both the closure (until a worker runs it) and the outcome.
//!
//! The semantics are those of `concurrent.futures.Future` (CPython 3.11,
//! `Lib/concurrent/futures/_base.py`): PENDING → RUNNING → FINISHED, or
//! PENDING → CANCELLED; `cancel` succeeds only while pending; done
//! callbacks run exactly once, by the thread that completes the future (the
//! worker, or the canceller), or at once by the thread that adds one to a
//! future already done. Deviations: a waiter is released before the
//! callbacks run, as in CPython, but [`Future::into_result`], which moves
//! the value out, also waits for the callbacks (they may be reading it).
//!
//! # The state word
//!
//! | bits | meaning |
//! |---|---|
//! | 0-1 | `PENDING` (0), `RUNNING` (1), `CANCELLED` (2), `FINISHED` (3) |
//! | 2 (`SETTLED`) | done and its callbacks ran: the completer no longer reads the outcome |
//! | 3 (`SLEEPERS`) | a thread may sleep on the word: the next change must wake it |
//! | 4 (`CALLBACKS`) | callbacks were added while not done: the completer takes the list |
//!
//! Invariants: the state moves only PENDING→RUNNING (the worker that
//! dequeued the task), PENDING→CANCELLED (`cancel`) and RUNNING→FINISHED
//! (the same worker, after writing the outcome). The outcome cell is
//! written only by the thread that moved the state to RUNNING, before it
//! publishes FINISHED, and read only after FINISHED was seen; it is moved
//! out only by [`Future::into_result`], which owns the only handle and has
//! seen `SETTLED`. The closure cell is touched only by the one thread that
//! holds the task as a job (taken from the pool's queue, or never queued).
//!
//! Memory ordering: publishing FINISHED is a `Release` read-modify-write and
//! every reader loads the word with `Acquire`, so the outcome written before
//! is visible to whoever sees the state; the same holds for `SETTLED`.
//!
//! Waiting: a waiter spins briefly (if its interrupt allows), then sets
//! `SLEEPERS` and sleeps on the word itself (a futex on Linux). A completer
//! wakes the word only if it saw `SLEEPERS`, so completing a future nobody
//! sleeps on makes no system call. The completer holds a reference to the
//! allocation until after it woke the word.
//!
//! # Fork
//!
//! A future records the fork generation it was created in. A future not
//! done when its process forked can never complete in the child (the worker
//! that would run it does not exist there, and a pool inherited by a child
//! runs nothing): in the child its waits return at once and its result is
//! [`FutureError::Broken`].

use std::cell::UnsafeCell;
use std::convert::Infallible;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::error::{BrokenExecutor, FutureError, Panicked};
use crate::interrupt::{
    Interrupt, Parked, Uninterruptible, back_off_until, deadline_after, infallible, mark_and_park,
};
use crate::sync::Mutex;
use crate::sys;

const STATE: u32 = 0b11;
const PENDING: u32 = 0;
const RUNNING: u32 = 1;
const CANCELLED: u32 = 2;
const FINISHED: u32 = 3;
const SETTLED: u32 = 4;
const SLEEPERS: u32 = 8;
const CALLBACKS: u32 = 16;

/// Whether the word says done (cancelled or finished).
#[inline]
fn done(w: u32) -> bool {
    w & STATE >= CANCELLED
}

/// Whether the word says done and settled.
#[inline]
fn settled(w: u32) -> bool {
    w & SETTLED != 0
}

/// The state of a [`Future`], as Python names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FutureState {
    /// Queued, not yet picked by a worker; can be cancelled.
    Pending,
    /// A worker runs it.
    Running,
    /// Cancelled before it ran.
    Cancelled,
    /// It ran (successfully or not), or the pool broke before it could.
    Finished,
}

/// What a finished task left.
pub(crate) enum Outcome<T, E> {
    /// It returned a value.
    Value(T),
    /// It returned an error.
    Failed(E),
    /// It panicked.
    Panicked(Panicked),
    /// The pool broke before it ran.
    Broken(BrokenExecutor),
}

/// A done callback.
type Callback<T, E> = Box<dyn FnOnce(&Future<T, E>) + Send>;

/// The part of a task that does not depend on its closure.
pub(crate) struct Header<T, E> {
    /// The state word (see the module docs).
    state: AtomicU32,
    /// The fork generation the future was created in.
    generation: u32,
    /// Callbacks added before the future was done.
    callbacks: Mutex<Vec<Callback<T, E>>>,
    /// The outcome, once FINISHED (see the module docs for who may touch it).
    outcome: UnsafeCell<Option<Outcome<T, E>>>,
}

/// Gives a [`Future`] its header whatever the task's closure type.
pub(crate) trait Core<T, E>: Send + Sync {
    /// The header.
    fn header(&self) -> &Header<T, E>;
}

/// The work a task does: a closure returning a value or an error.
pub(crate) trait Work<T, E>: Send + 'static {
    /// Runs it.
    fn call(self) -> Result<T, E>;
}

/// A closure that cannot fail (but may panic).
pub(crate) struct Plain<F>(pub(crate) F);

impl<T, F: FnOnce() -> T + Send + 'static> Work<T, Infallible> for Plain<F> {
    #[inline]
    fn call(self) -> Result<T, Infallible> {
        Ok((self.0)())
    }
}

/// A closure returning a `Result`.
pub(crate) struct Fallible<F>(pub(crate) F);

impl<T, E, F: FnOnce() -> Result<T, E> + Send + 'static> Work<T, E> for Fallible<F> {
    #[inline]
    fn call(self) -> Result<T, E> {
        (self.0)()
    }
}

/// A task as the pool's queue sees it.
pub(crate) trait Job: Send + Sync {
    /// Runs the task unless it was cancelled; completes its future.
    fn run(self: Arc<Self>);
    /// Cancels the task if still pending (shutdown with `cancel_pending`).
    fn cancel(self: Arc<Self>);
    /// Fails the task with `broken` if still pending (a broken pool).
    fn abandon(self: Arc<Self>, broken: &BrokenExecutor);
}

/// One allocation: the future's header and the task's closure.
pub(crate) struct Task<T, E, W> {
    /// The future's state, callbacks and outcome.
    header: Header<T, E>,
    /// The closure, until a worker takes it (see the module docs for who may
    /// touch it).
    work: UnsafeCell<Option<W>>,
}

// SAFETY: the cells are accessed under the protocol of the module docs: the
// closure by one thread at a time (it is `Send`), the outcome written by one
// thread before a `Release` publication and then only read, from any number
// of threads (hence `T: Sync`, `E: Sync`), or moved out by the sole owner
// (hence `Send`). Callbacks are `Send` and live under a mutex.
unsafe impl<T: Send + Sync, E: Send + Sync, W: Send> Sync for Task<T, E, W> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync, E: Send + Sync, W: Send> Send for Task<T, E, W> {}

impl<T, E, W> Task<T, E, W> {
    /// A pending task.
    pub(crate) fn new(work: W) -> Self {
        Self {
            header: Header {
                state: AtomicU32::new(PENDING),
                generation: sys::fork_generation(),
                callbacks: Mutex::new(Vec::new()),
                outcome: UnsafeCell::new(None),
            },
            work: UnsafeCell::new(Some(work)),
        }
    }

    /// The closure back, from a task that was never shared.
    pub(crate) fn into_work(self) -> W {
        match self.work.into_inner() {
            Some(w) => w,
            None => unreachable!("an unqueued task still has its closure"),
        }
    }

    /// Takes the closure out.
    ///
    /// # Safety
    ///
    /// The caller holds the task as a job (see the module docs): no other
    /// thread touches the closure cell.
    unsafe fn take_work(&self) -> Option<W> {
        // SAFETY: exclusive per this function's contract.
        unsafe { (*self.work.get()).take() }
    }
}

impl<T: Send + Sync, E: Send + Sync, W: Send> Core<T, E> for Task<T, E, W> {
    #[inline]
    fn header(&self) -> &Header<T, E> {
        &self.header
    }
}

impl<T, E, W> Job for Task<T, E, W>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
    W: Work<T, E>,
{
    fn run(self: Arc<Self>) {
        if !self.header.start() {
            // Cancelled while queued: drop the closure now.
            // SAFETY: the worker holds the job.
            drop_quietly(unsafe { self.take_work() });
            return;
        }
        // SAFETY: the worker holds the job.
        let Some(work) = (unsafe { self.take_work() }) else {
            unreachable!("a task runs once")
        };
        let outcome = match catch_unwind(AssertUnwindSafe(|| work.call())) {
            Ok(Ok(value)) => Outcome::Value(value),
            Ok(Err(e)) => Outcome::Failed(e),
            Err(payload) => Outcome::Panicked(Panicked::from_payload(payload)),
        };
        // SAFETY: this thread moved the state to RUNNING.
        unsafe { finish(self, outcome) };
    }

    fn cancel(self: Arc<Self>) {
        // The job is out of the queue, so no worker can start it: it is
        // pending, or cancelled already through its future.
        // SAFETY: the caller took the job out of the queue.
        drop_quietly(unsafe { self.take_work() });
        complete(self, PENDING, CANCELLED);
    }

    fn abandon(self: Arc<Self>, broken: &BrokenExecutor) {
        // SAFETY: the caller took the job out of the queue.
        drop_quietly(unsafe { self.take_work() });
        if self.header.start() {
            // SAFETY: this thread moved the state to RUNNING.
            unsafe { finish(self, Outcome::Broken(broken.clone())) };
        }
    }
}

/// Stores the outcome, publishes FINISHED, runs the callbacks.
///
/// # Safety
///
/// The calling thread moved the task's state to RUNNING.
unsafe fn finish<T, E>(core: Arc<dyn Core<T, E>>, outcome: Outcome<T, E>) {
    // SAFETY: only the thread that moved the state to RUNNING writes the
    // outcome, and nobody reads it before FINISHED is published below.
    unsafe { *core.header().outcome.get() = Some(outcome) };
    complete(core, RUNNING, FINISHED);
}

/// Moves the state from `from` to `to` (if it still is `from`), then wakes
/// the sleepers and runs the callbacks; returns whether it moved.
fn complete<T, E>(core: Arc<dyn Core<T, E>>, from: u32, to: u32) -> bool {
    let h = core.header();
    let mut w = h.state.load(Ordering::Relaxed);
    loop {
        if w & STATE != from {
            return false;
        }
        // With no callbacks to run, done and settled at once.
        let extra = if w & CALLBACKS == 0 { SETTLED } else { 0 };
        let next = (w & !(STATE | SLEEPERS)) | to | extra;
        match h
            .state
            .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(now) => w = now,
        }
    }
    if w & SLEEPERS != 0 {
        sys::wake_all(&h.state);
    }
    if w & CALLBACKS != 0 {
        let callbacks = std::mem::take(&mut *h.callbacks.lock());
        let fut = Future { core };
        for cb in callbacks {
            run_callback(cb, &fut);
        }
        let h = fut.core.header();
        if h.state.fetch_or(SETTLED, Ordering::Release) & SLEEPERS != 0 {
            sys::wake_all(&h.state);
        }
    }
    true
}

/// Drops a closure that will not run; a panic in its captures' destructors
/// must not unwind through the worker (or the thread shutting down).
fn drop_quietly<W>(work: Option<W>) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(work))) {
        drop(Panicked::from_payload(payload));
    }
}

/// Runs one callback; a panic is reported and otherwise ignored, as
/// CPython logs and ignores exceptions raised by callbacks.
fn run_callback<T, E>(cb: Callback<T, E>, fut: &Future<T, E>) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| cb(fut))) {
        let p = Panicked::from_payload(payload);
        eprintln!(
            "tress: exception calling callback for future: {}",
            p.message()
        );
    }
}

impl<T, E> Header<T, E> {
    /// PENDING → RUNNING; false if cancelled meanwhile (Python's
    /// `set_running_or_notify_cancel`, minus the notification: cancelling
    /// already notified).
    #[inline]
    fn start(&self) -> bool {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |w| {
                (w & STATE == PENDING).then_some((w & !STATE) | RUNNING)
            })
            .is_ok()
    }

    /// Whether the future cannot complete in this process any more: created
    /// before a fork and not done when it happened.
    #[inline]
    fn orphaned(&self) -> bool {
        self.generation != sys::fork_generation()
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// The condition holds.
    Ready,
    /// The deadline passed first.
    TimedOut,
    /// The future was inherited through `fork()` and will never be done.
    Orphaned,
}

/// The handle on a submitted task: wait for it, read its result, cancel it
/// while it is pending, add callbacks. Python's
/// `concurrent.futures.Future`.
///
/// There is one handle per task (it is not `Clone`); share it by reference
/// or in an `Arc`. Dropping it does not cancel the task.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use tress::executor::{Executor, FutureError, FutureState};
///
/// let pool = Executor::with_workers(2);
/// let fut = pool.submit(|| 6 * 7).unwrap();
/// assert_eq!(fut.result(), Ok(&42));
/// assert_eq!(fut.state(), FutureState::Finished);
///
/// // Callbacks run exactly once, even when added after completion.
/// let calls = Arc::new(AtomicUsize::new(0));
/// let c = Arc::clone(&calls);
/// fut.add_done_callback(move |f| {
///     assert!(f.is_done());
///     c.fetch_add(1, Ordering::SeqCst);
/// });
/// assert_eq!(calls.load(Ordering::SeqCst), 1);
///
/// // A panicking task fails its own future, not the worker.
/// let bad = pool.submit(|| -> u32 { panic!("boom") }).unwrap();
/// match bad.into_result() {
///     Err(FutureError::Panicked(p)) => assert_eq!(p.message(), "boom"),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(pool.submit(|| 1).unwrap().into_result(), Ok(1));
/// ```
pub struct Future<T, E = Infallible> {
    /// The task's shared allocation.
    core: Arc<dyn Core<T, E>>,
}

impl<T, E> fmt::Debug for Future<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Future")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<T, E> Future<T, E> {
    /// Wraps a task.
    pub(crate) fn from_core(core: Arc<dyn Core<T, E>>) -> Self {
        Self { core }
    }

    #[inline]
    fn header(&self) -> &Header<T, E> {
        self.core.header()
    }

    #[inline]
    fn word(&self) -> u32 {
        self.header().state.load(Ordering::Acquire)
    }

    /// The current state (a snapshot).
    pub fn state(&self) -> FutureState {
        match self.word() & STATE {
            PENDING => FutureState::Pending,
            RUNNING => FutureState::Running,
            CANCELLED => FutureState::Cancelled,
            _ => FutureState::Finished,
        }
    }

    /// Whether the future is cancelled or finished.
    #[inline]
    pub fn is_done(&self) -> bool {
        done(self.word())
    }

    /// Whether a worker runs the task now.
    #[inline]
    pub fn is_running(&self) -> bool {
        self.word() & STATE == RUNNING
    }

    /// Whether the future was cancelled.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.word() & STATE == CANCELLED
    }

    /// Cancels the task if no worker has picked it yet; returns whether the
    /// future is now cancelled (true if it already was, false if it runs or
    /// finished). Cancelling wakes the waiters and runs the callbacks on
    /// this thread.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use tress::executor::Executor;
    ///
    /// let pool = Executor::with_workers(1);
    /// let (tx, rx) = mpsc::channel::<()>();
    /// let busy = pool.submit(move || rx.recv().unwrap()).unwrap();
    /// let queued = pool.submit(|| 1).unwrap();
    /// assert!(queued.cancel());
    /// tx.send(()).unwrap();
    /// busy.wait();
    /// assert!(!busy.cancel());
    /// assert!(queued.result().is_err());
    /// ```
    pub fn cancel(&self) -> bool {
        match self.word() & STATE {
            CANCELLED => true,
            PENDING => complete(Arc::clone(&self.core), PENDING, CANCELLED) || self.is_cancelled(),
            _ => false,
        }
    }

    /// Adds a callback that runs once the future is done (cancelled or
    /// finished), with the future as its argument: on the thread that
    /// completes it, or right now on this thread if it is already done. A
    /// panicking callback is reported on stderr and otherwise ignored.
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T, E>) + Send + 'static) {
        let h = self.header();
        if done(h.state.load(Ordering::Acquire)) || self.header().orphaned() {
            return run_callback(Box::new(f), self);
        }
        let mut callbacks = h.callbacks.lock();
        // Setting the flag while holding the list: a completer that saw it
        // takes the list after us; one that did not has already published
        // done, which the returned word shows.
        if done(h.state.fetch_or(CALLBACKS, Ordering::AcqRel)) {
            drop(callbacks);
            return run_callback(Box::new(f), self);
        }
        callbacks.push(Box::new(f));
    }

    /// Waits until the future is done; returns `true` (or `false` for a
    /// future orphaned by `fork()`, see the module docs).
    pub fn wait(&self) -> bool {
        infallible(self.wait_with(None, &mut Uninterruptible))
    }

    /// Waits at most `timeout`; returns whether the future is done.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        infallible(self.wait_with(deadline_after(timeout), &mut Uninterruptible))
    }

    /// Waits until `deadline` at the latest; returns whether the future is
    /// done.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        infallible(self.wait_with(Some(deadline), &mut Uninterruptible))
    }

    /// Waits until the future is done or `deadline` passes (never if
    /// `None`), unless `interrupt` abandons the wait; `Ok(false)` means the
    /// deadline passed (or the future was orphaned by `fork()`).
    #[inline]
    pub fn wait_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        if self.is_done() {
            return Ok(true);
        }
        Ok(self.wait_slow(done, deadline, interrupt)? == Waited::Ready)
    }

    /// Waits until `ready(word)`, spinning first if the interrupt allows.
    #[cold]
    fn wait_slow<I: Interrupt + ?Sized>(
        &self,
        ready: fn(u32) -> bool,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<Waited, I::Error> {
        let h = self.header();
        if interrupt.may_spin() {
            let mut step = 0;
            back_off_until(&mut step, || ready(h.state.load(Ordering::Relaxed)));
            if ready(h.state.load(Ordering::Acquire)) {
                return Ok(Waited::Ready);
            }
        }
        let mut w = h.state.load(Ordering::Acquire);
        loop {
            if ready(w) {
                return Ok(Waited::Ready);
            }
            if h.orphaned() && !done(w) {
                return Ok(Waited::Orphaned);
            }
            let (parked, now) = mark_and_park(&h.state, w, SLEEPERS, deadline, interrupt)?;
            w = now;
            if parked == Parked::TimedOut {
                return Ok(if ready(w) {
                    Waited::Ready
                } else {
                    Waited::TimedOut
                });
            }
        }
    }

    /// Waits for the task and borrows its value, or says why there is none.
    ///
    /// ```
    /// let pool = tress::executor::Executor::with_workers(1);
    /// let fut = pool.submit(|| String::from("hi")).unwrap();
    /// assert_eq!(fut.result().map(String::as_str), Ok("hi"));
    /// ```
    pub fn result(&self) -> Result<&T, FutureError<&E>> {
        self.result_with(None, &mut Uninterruptible)
            .map_err(FutureError::widen)
    }

    /// As [`result`](Self::result), waiting at most `timeout`
    /// ([`FutureError::Timeout`] after that).
    pub fn result_timeout(&self, timeout: Duration) -> Result<&T, FutureError<&E>> {
        self.result_with(deadline_after(timeout), &mut Uninterruptible)
            .map_err(FutureError::widen)
    }

    /// As [`result`](Self::result), waiting until `deadline` at the latest.
    pub fn result_deadline(&self, deadline: Instant) -> Result<&T, FutureError<&E>> {
        self.result_with(Some(deadline), &mut Uninterruptible)
            .map_err(FutureError::widen)
    }

    /// As [`result`](Self::result), waiting until `deadline` (forever if
    /// `None`) unless `interrupt` abandons the wait
    /// ([`FutureError::Interrupted`]; the future is unaffected).
    pub fn result_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<&T, FutureError<&E, I::Error>> {
        if !self.is_done() {
            match self.wait_slow(done, deadline, interrupt) {
                Err(i) => return Err(FutureError::Interrupted(i)),
                Ok(Waited::TimedOut) => return Err(FutureError::Timeout),
                Ok(Waited::Orphaned) => return Err(FutureError::Broken(BrokenExecutor::forked())),
                Ok(Waited::Ready) => {}
            }
        }
        if self.is_cancelled() {
            return Err(FutureError::Cancelled);
        }
        // SAFETY: FINISHED was seen with `Acquire` (`is_done`, `wait_slow`),
        // so the outcome is written and will not be written again; it is
        // moved out only by `into_result`, which consumes the only handle.
        match unsafe { &*self.header().outcome.get() } {
            Some(Outcome::Value(v)) => Ok(v),
            Some(Outcome::Failed(e)) => Err(FutureError::Failed(e)),
            Some(Outcome::Panicked(p)) => Err(FutureError::Panicked(p.clone())),
            Some(Outcome::Broken(b)) => Err(FutureError::Broken(b.clone())),
            None => unreachable!("a finished future has an outcome"),
        }
    }

    /// Waits for the task (and for its callbacks, which may be reading the
    /// value) and takes its value, or says why there is none.
    pub fn into_result(self) -> Result<T, FutureError<E>> {
        // A cancelled future has no value to move: no need to wait for its
        // callbacks.
        let ready = |w: u32| settled(w) || w & STATE == CANCELLED;
        if !ready(self.word())
            && infallible(self.wait_slow(ready, None, &mut Uninterruptible)) == Waited::Orphaned
        {
            return Err(FutureError::Broken(BrokenExecutor::forked()));
        }
        if self.is_cancelled() {
            return Err(FutureError::Cancelled);
        }
        // SAFETY: SETTLED was seen with `Acquire`: the outcome is written and
        // the completer no longer reads it. This is the only handle (a
        // `Future` is not `Clone`, and callbacks borrowed theirs only while
        // they ran, before SETTLED), and it is consumed.
        match unsafe { (*self.header().outcome.get()).take() } {
            Some(Outcome::Value(v)) => Ok(v),
            Some(Outcome::Failed(e)) => Err(FutureError::Failed(e)),
            Some(Outcome::Panicked(p)) => Err(FutureError::Panicked(p)),
            Some(Outcome::Broken(b)) => Err(FutureError::Broken(b)),
            None => unreachable!("a finished future has an outcome"),
        }
    }
}
