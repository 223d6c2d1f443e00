//! A thread-pool executor with futures: Python's
//! `concurrent.futures.ThreadPoolExecutor` (CPython 3.11,
//! `Lib/concurrent/futures/thread.py`) in Rust.
//!
//! [`Executor::submit`] queues a closure and returns its [`Future`]; a
//! worker thread runs it. [`Executor::map`] runs a function over an
//! iterator in chunks and yields the results in order.
//! [`Executor::shutdown`] stops taking tasks, optionally cancels the pending
//! ones and waits for the workers.
//!
//! # Design
//!
//! - **One allocation per task.** The closure and the future's state,
//!   callbacks and outcome share one `Arc` ([`future`](self::Future)'s
//!   module docs have the state machine); the queue holds it as a job, the
//!   caller as a [`Future`]. Waiting on a future is a futex wait on its own
//!   state word, through the crate's [`Interrupt`]
//!   machinery (`wait_with`, `result_with`), so Python's bindings can
//!   release the GIL and react to Ctrl-C.
//! - **The queue** is a `VecDeque` under the crate's futex [`Mutex`], with
//!   the worker bookkeeping (idle count, thread count, shutdown, broken)
//!   under the same lock, so a submit takes one uncontended lock and makes
//!   a system call only to wake a sleeping worker. Idle workers spin and
//!   yield briefly before they sleep in a [`WaitQueue`].
//! - **Lazy workers, as CPython 3.11**: a submit starts a new worker only
//!   when there are more queued tasks than idle workers and fewer than
//!   `max_workers` threads. Workers live until shutdown.
//! - **Panics** in a task become the future's [`FutureError::Panicked`];
//!   the worker carries on. A task's own `Err(E)` (see
//!   [`Executor::submit_fallible`]) becomes [`FutureError::Failed`]; the
//!   value and error types are generic, so Python's bindings can carry
//!   their own objects.
//! - **A failing initializer** (an `Err` or a panic) breaks the pool, as
//!   CPython's `BrokenThreadPool`: the pending futures fail with
//!   [`BrokenExecutor`] and later submits are refused.
//!
//! # Fork
//!
//! Worker threads do not exist in a child created by `fork()`. A pool
//! inherited by a child is broken there: its first use in the child (a
//! submit, a map, a shutdown) fails the futures still queued with
//! [`BrokenExecutor`] and refuses submits; shutdown joins nothing. Futures
//! not done at the fork never complete in the child: their waits return at
//! once and their result is [`FutureError::Broken`] (see [`Future`]).
//! Nothing blocks on a lock a parent thread held: the pool's lock is freed
//! on first use in the child. Create a new pool in the child.
//!
//! # Examples
//!
//! ```
//! use tress::executor::Executor;
//!
//! let pool = Executor::builder().max_workers(4).thread_name_prefix("calc").build().unwrap();
//! let futures: Vec<_> = (0..10u64).map(|i| pool.submit(move || i * i).unwrap()).collect();
//! let squares: Vec<u64> = futures.into_iter().map(|f| f.into_result().unwrap()).collect();
//! assert_eq!(squares[9], 81);
//!
//! let doubled: Vec<u64> = pool.map(0..1000u64, |x| 2 * x, 64).unwrap().map(Result::unwrap).collect();
//! assert_eq!(doubled.len(), 1000);
//! assert_eq!(doubled[999], 1998);
//!
//! pool.shutdown(true, false);
//! assert!(pool.submit(|| ()).is_err());
//! ```

mod error;
mod future;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Instant;

pub use error::{BrokenExecutor, BuildError, FutureError, Panicked, SubmitError};
pub use future::{Future, FutureState};

use crate::interrupt::{BACKOFF_STEPS, Interrupt, back_off_until};
use crate::sync::{Mutex, WaitQueue, Wakeups};
use crate::sys::ForkEpoch;
use future::{Fallible, Job, Plain, Task, Work};

/// The initializer as stored: failures already turned into a message.
type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A thread pool running closures and handing back [`Future`]s: Python's
/// `concurrent.futures.ThreadPoolExecutor`.
///
/// Dropping the executor shuts it down without waiting (the workers finish
/// the queued tasks, then exit); call [`shutdown`](Self::shutdown) with
/// `wait` to join them.
///
/// # Examples
///
/// ```
/// use tress::executor::{Executor, FutureError};
///
/// let pool = Executor::with_workers(2);
/// let ok = pool.submit_fallible(|| "7".parse::<u32>()).unwrap();
/// let bad = pool.submit_fallible(|| "x".parse::<u32>()).unwrap();
/// assert_eq!(ok.into_result(), Ok(7));
/// assert!(matches!(bad.into_result(), Err(FutureError::Failed(_))));
/// ```
pub struct Executor {
    /// What the workers share with the executor.
    shared: Arc<Shared>,
}

/// The pool's state, shared with its workers.
struct Shared {
    /// The queue and the bookkeeping.
    state: Mutex<State>,
    /// `state.jobs.len()`, written under the lock, read by spinning workers.
    queued: AtomicUsize,
    /// Idle workers asleep, waiting for a job or shutdown.
    idle_waiters: WaitQueue,
    /// The fork generation the pool belongs to.
    epoch: ForkEpoch,
    /// The most worker threads.
    max_workers: usize,
    /// Worker names are `{prefix}_{n}`.
    prefix: String,
    /// Run by each worker before its first task.
    initializer: Option<Initializer>,
    /// The workers' stack size, if not the default.
    stack_size: Option<usize>,
}

/// What [`Shared::state`] guards.
struct State {
    /// Tasks not yet picked by a worker, oldest first.
    jobs: VecDeque<Arc<dyn Job>>,
    /// Workers looking for a job (spinning or asleep).
    idle: usize,
    /// Worker threads started (they exit only at shutdown or when broken).
    threads: usize,
    /// The workers not yet joined.
    handles: Vec<JoinHandle<()>>,
    /// Whether `shutdown` was called.
    shutdown: bool,
    /// Why the pool broke, if it did.
    broken: Option<BrokenExecutor>,
}

/// Configures an [`Executor`].
///
/// ```
/// use tress::executor::Executor;
///
/// let pool = Executor::builder()
///     .max_workers(2)
///     .thread_name_prefix("io")
///     .initializer(|| Ok::<(), String>(()))
///     .build()
///     .unwrap();
/// let name = pool.submit(|| std::thread::current().name().unwrap().to_owned()).unwrap();
/// assert_eq!(name.into_result().unwrap(), "io_0");
/// ```
#[derive(Default)]
pub struct ExecutorBuilder {
    /// See [`max_workers`](Self::max_workers).
    max_workers: Option<usize>,
    /// See [`thread_name_prefix`](Self::thread_name_prefix).
    prefix: Option<String>,
    /// See [`initializer`](Self::initializer).
    initializer: Option<Initializer>,
    /// See [`stack_size`](Self::stack_size).
    stack_size: Option<usize>,
}

impl fmt::Debug for ExecutorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorBuilder")
            .field("max_workers", &self.max_workers)
            .field("prefix", &self.prefix)
            .field("initializer", &self.initializer.is_some())
            .field("stack_size", &self.stack_size)
            .finish()
    }
}

/// Python 3.11's default: `min(32, cpu_count + 4)`.
fn default_workers() -> usize {
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    (cpus + 4).min(32)
}

impl ExecutorBuilder {
    /// A builder with Python's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most worker threads (default: `min(32, cpus + 4)`, as Python
    /// 3.11). Must be at least 1.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Names the workers `{prefix}_{n}`, `n` counting from 0 (default
    /// prefix: `ThreadPoolExecutor-{k}`, `k` counting pools, as Python).
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Runs `init` in each worker before its first task. If it returns an
    /// error or panics, the pool is broken (see [`BrokenExecutor`]).
    pub fn initializer<F, E>(mut self, init: F) -> Self
    where
        F: Fn() -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        self.initializer = Some(Arc::new(move || init().map_err(|e| e.to_string())));
        self
    }

    /// The workers' stack size in bytes (default: the platform's).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// The executor; no thread starts until the first submit.
    pub fn build(self) -> Result<Executor, BuildError> {
        static POOLS: AtomicUsize = AtomicUsize::new(0);
        let max_workers = self.max_workers.unwrap_or_else(default_workers);
        if max_workers == 0 {
            return Err(BuildError::new("max_workers must be greater than 0"));
        }
        let prefix = self.prefix.unwrap_or_else(|| {
            format!(
                "ThreadPoolExecutor-{}",
                POOLS.fetch_add(1, Ordering::Relaxed)
            )
        });
        Ok(Executor {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    idle: 0,
                    threads: 0,
                    handles: Vec::new(),
                    shutdown: false,
                    broken: None,
                }),
                queued: AtomicUsize::new(0),
                idle_waiters: WaitQueue::new(),
                epoch: ForkEpoch::new(),
                max_workers,
                prefix,
                initializer: self.initializer,
                stack_size: self.stack_size,
            }),
        })
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("max_workers", &self.shared.max_workers)
            .field("threads", &self.num_threads())
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor {
    /// An executor with Python's default worker count (see
    /// [`ExecutorBuilder::max_workers`]).
    pub fn new() -> Self {
        match ExecutorBuilder::new().build() {
            Ok(e) => e,
            Err(_) => unreachable!("the default worker count is positive"),
        }
    }

    /// An executor with at most `max_workers` threads.
    ///
    /// # Panics
    ///
    /// If `max_workers` is 0.
    pub fn with_workers(max_workers: usize) -> Self {
        match ExecutorBuilder::new().max_workers(max_workers).build() {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    /// A builder for the other settings.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::new()
    }

    /// The most worker threads.
    pub fn max_workers(&self) -> usize {
        self.shared.max_workers
    }

    /// How many worker threads were started (they are started lazily).
    pub fn num_threads(&self) -> usize {
        self.shared.state.lock().threads
    }

    /// How many worker threads wait for a job (a snapshot). A worker counts
    /// as idle only once it finished its job, callbacks included, and found
    /// the queue empty.
    pub fn idle_threads(&self) -> usize {
        self.shared.state.lock().idle
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.shared.state.lock().shutdown
    }

    /// Why the pool is broken, if it is.
    pub fn broken(&self) -> Option<BrokenExecutor> {
        self.shared.enter();
        self.shared.state.lock().broken.clone()
    }

    /// Queues `f` and returns its future; a panic in `f` becomes the
    /// future's [`FutureError::Panicked`]. Fails (handing `f` back) after
    /// [`shutdown`](Self::shutdown) or once the pool is broken.
    pub fn submit<T, F>(&self, f: F) -> Result<Future<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + Sync + 'static,
    {
        self.submit_work(Plain(f)).map_err(|e| e.map(|w| w.0))
    }

    /// As [`submit`](Self::submit), for a closure that returns a `Result`:
    /// its `Err` becomes the future's [`FutureError::Failed`].
    pub fn submit_fallible<T, E, F>(&self, f: F) -> Result<Future<T, E>, SubmitError<F>>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        self.submit_work(Fallible(f)).map_err(|e| e.map(|w| w.0))
    }

    fn submit_work<T, E, W>(&self, work: W) -> Result<Future<T, E>, SubmitError<W>>
    where
        W: Work<T, E>,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        let shared = &*self.shared;
        shared.enter();
        let task = Arc::new(Task::new(work));
        let mut wakes = Wakeups::new();
        let mut st = shared.state.lock();
        if st.broken.is_some() || st.shutdown {
            let broken = st.broken.clone();
            drop(st);
            let work = match Arc::try_unwrap(task) {
                Ok(task) => task.into_work(),
                Err(_) => unreachable!("the task was never shared"),
            };
            return Err(match broken {
                Some(b) => SubmitError::Broken(work, b),
                None => SubmitError::ShutDown(work),
            });
        }
        st.jobs.push_back(Arc::clone(&task) as Arc<dyn Job>);
        shared.queued.store(st.jobs.len(), Ordering::Relaxed);
        let mut failed = None;
        if st.jobs.len() > st.idle && st.threads < shared.max_workers {
            failed = shared.start_worker(&self.shared, &mut st);
        }
        shared.idle_waiters.notify_into(1, &mut wakes);
        drop(st);
        drop(wakes);
        if let Some((jobs, broken)) = failed {
            for job in jobs {
                job.abandon(&broken);
            }
        }
        Ok(Future::from_core(task))
    }

    /// Runs `f` over `items` in chunks of `chunksize` (one task per chunk)
    /// and returns an iterator over the results, in order, each as soon as
    /// its chunk is done. Every chunk is submitted before this returns.
    ///
    /// A chunk whose task panics yields its error once, in the place of its
    /// first item, and ends the iteration; dropping the iterator cancels the
    /// chunks not started yet (as Python's `map`).
    ///
    /// # Panics
    ///
    /// If `chunksize` is 0.
    ///
    /// ```
    /// let pool = tress::executor::Executor::with_workers(2);
    /// let lens: Vec<usize> = pool
    ///     .map(["a", "bb", "ccc"], str::len, 1)
    ///     .unwrap()
    ///     .collect::<Result<_, _>>()
    ///     .unwrap();
    /// assert_eq!(lens, [1, 2, 3]);
    /// ```
    pub fn map<I, R, F>(&self, items: I, f: F, chunksize: usize) -> Result<Map<R>, SubmitError<()>>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + Sync + 'static,
    {
        self.try_map(items, move |x| Ok::<R, Infallible>(f(x)), chunksize)
    }

    /// As [`map`](Self::map), for a function that returns a `Result`: the
    /// first `Err` in a chunk fails the chunk (the results of its earlier
    /// items are dropped, as with Python's chunked `map`) and yields
    /// [`FutureError::Failed`].
    ///
    /// # Panics
    ///
    /// If `chunksize` is 0.
    pub fn try_map<I, R, E, F>(
        &self,
        items: I,
        f: F,
        chunksize: usize,
    ) -> Result<Map<R, E>, SubmitError<()>>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> Result<R, E> + Send + Sync + 'static,
        R: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        assert!(chunksize > 0, "chunksize must be >= 1");
        let f = Arc::new(f);
        let mut chunks = VecDeque::new();
        let mut remaining = 0;
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<I::Item> = items.by_ref().take(chunksize).collect();
            if chunk.is_empty() {
                break;
            }
            remaining += chunk.len();
            let f = Arc::clone(&f);
            let fut = self
                .submit_fallible(move || chunk.into_iter().map(|x| f(x)).collect())
                .map_err(|e| e.map(drop))?;
            chunks.push_back(fut);
        }
        Ok(Map {
            chunks,
            current: Vec::new().into_iter(),
            remaining,
        })
    }

    /// Stops taking tasks. With `cancel_pending`, cancels every future not
    /// yet picked by a worker (exactly those); the others run to the end.
    /// With `wait`, returns once every worker has exited (a worker calling
    /// this does not wait for itself). Calling it again is harmless.
    pub fn shutdown(&self, wait: bool, cancel_pending: bool) {
        let shared = &*self.shared;
        shared.enter();
        let mut wakes = Wakeups::new();
        let (cancelled, handles) = {
            let mut st = shared.state.lock();
            st.shutdown = true;
            let cancelled: Vec<_> = if cancel_pending {
                let jobs = std::mem::take(&mut st.jobs);
                shared.queued.store(0, Ordering::Relaxed);
                jobs.into()
            } else {
                Vec::new()
            };
            let handles = if wait {
                std::mem::take(&mut st.handles)
            } else {
                Vec::new()
            };
            shared.idle_waiters.notify_all_into(&mut wakes);
            (cancelled, handles)
        };
        drop(wakes);
        for job in cancelled {
            job.cancel();
        }
        let me = thread::current().id();
        for h in handles {
            if h.thread().id() != me {
                // A worker's panic never escapes its loop (tasks and
                // callbacks run under `catch_unwind`).
                let _ = h.join();
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown(false, false);
    }
}

impl Shared {
    /// Breaks the pool on first use in a forked child (see the module docs).
    #[inline]
    fn enter(&self) {
        self.epoch.enter(|| {
            if self.state.is_locked() {
                // SAFETY: this runs once, first thing in a forked child,
                // before any thread of the child used the pool: the holder
                // was a parent thread that does not exist here.
                unsafe { self.state.force_unlock() };
            }
            self.idle_waiters.reset_after_fork();
            let broken = BrokenExecutor::forked();
            let jobs = {
                let mut st = self.state.lock();
                // The handles name parent threads: never join or detach them.
                std::mem::forget(std::mem::take(&mut st.handles));
                st.threads = 0;
                st.idle = 0;
                st.broken.get_or_insert_with(|| broken.clone());
                self.queued.store(0, Ordering::Relaxed);
                std::mem::take(&mut st.jobs)
            };
            for job in jobs {
                job.abandon(&broken);
            }
        });
    }

    /// Starts a worker (called with the state locked: a concurrent shutdown
    /// then always finds its handle). If that fails with no worker running,
    /// the pool breaks: the queued jobs come back, for the caller to fail
    /// once it released the lock (failing runs callbacks).
    #[cold]
    fn start_worker(
        &self,
        this: &Arc<Shared>,
        st: &mut State,
    ) -> Option<(VecDeque<Arc<dyn Job>>, BrokenExecutor)> {
        let mut b = thread::Builder::new().name(format!("{}_{}", self.prefix, st.threads));
        if let Some(size) = self.stack_size {
            b = b.stack_size(size);
        }
        let shared = Arc::clone(this);
        match b.spawn(move || worker(&shared)) {
            Ok(h) => {
                st.threads += 1;
                st.handles.push(h);
                None
            }
            Err(e) if st.threads == 0 => {
                let broken = BrokenExecutor::new(format!("could not start a worker thread: {e}"));
                st.broken = Some(broken.clone());
                self.queued.store(0, Ordering::Relaxed);
                Some((std::mem::take(&mut st.jobs), broken))
            }
            // The running workers will take the task.
            Err(_) => None,
        }
    }

    /// Marks the pool broken and fails every queued future.
    #[cold]
    fn break_pool(&self, broken: BrokenExecutor) {
        let jobs = {
            let mut st = self.state.lock();
            let b = st.broken.get_or_insert(broken).clone();
            self.queued.store(0, Ordering::Relaxed);
            (std::mem::take(&mut st.jobs), b)
        };
        for job in jobs.0 {
            job.abandon(&jobs.1);
        }
    }
}

/// A worker's life: the initializer, then tasks until shutdown.
fn worker(shared: &Shared) {
    if let Some(init) = &shared.initializer {
        let failed = match catch_unwind(AssertUnwindSafe(|| init())) {
            Ok(Ok(())) => None,
            Ok(Err(msg)) => Some(msg),
            Err(payload) => Some(Panicked::from_payload(payload).to_string()),
        };
        if let Some(msg) = failed {
            shared.break_pool(BrokenExecutor::initializer(&msg));
            return;
        }
    }
    let mut idle = false;
    let mut spins = 0;
    loop {
        let mut st = shared.state.lock();
        if let Some(job) = st.jobs.pop_front() {
            shared.queued.store(st.jobs.len(), Ordering::Relaxed);
            if idle {
                st.idle -= 1;
                idle = false;
            }
            drop(st);
            spins = 0;
            job.run();
            continue;
        }
        if st.shutdown {
            if idle {
                st.idle -= 1;
            }
            return;
        }
        if !idle {
            st.idle += 1;
            idle = true;
        }
        if spins < BACKOFF_STEPS {
            drop(st);
            back_off_until(&mut spins, || shared.queued.load(Ordering::Relaxed) > 0);
            continue;
        }
        let ticket = shared.idle_waiters.enqueue();
        drop(st);
        ticket.wait();
        spins = 0;
    }
}

/// The results of [`Executor::map`], in order.
///
/// Dropping it cancels the chunks not started yet.
pub struct Map<R, E = Infallible> {
    /// The chunks not yet collected, in order.
    chunks: VecDeque<Future<Vec<R>, E>>,
    /// The results of the chunk being handed out.
    current: std::vec::IntoIter<R>,
    /// How many results are left.
    remaining: usize,
}

impl<R, E> fmt::Debug for Map<R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("remaining", &self.remaining)
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

impl<R, E> Map<R, E> {
    /// The next result, waiting until `deadline` (forever if `None`) unless
    /// `interrupt` abandons the wait. On [`FutureError::Timeout`] and
    /// [`FutureError::Interrupted`] nothing is consumed: call again to keep
    /// waiting. `None` once every result was handed out or a chunk failed.
    pub fn next_with<I: Interrupt + ?Sized>(
        &mut self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Option<Result<R, FutureError<E, I::Error>>> {
        loop {
            if let Some(r) = self.current.next() {
                self.remaining -= 1;
                return Some(Ok(r));
            }
            let front = self.chunks.front()?;
            match front.wait_with(deadline, interrupt) {
                Err(i) => return Some(Err(FutureError::Interrupted(i))),
                // `false` is a timeout, or a future orphaned by `fork()`
                // (whose result below says so).
                Ok(false) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Some(Err(FutureError::Timeout));
                }
                Ok(_) => {}
            }
            let fut = self.chunks.pop_front()?;
            match fut.into_result() {
                Ok(v) => self.current = v.into_iter(),
                Err(e) => {
                    self.cancel_rest();
                    return Some(Err(e.widen()));
                }
            }
        }
    }

    /// Cancels the chunks not started yet and forgets every chunk.
    fn cancel_rest(&mut self) {
        for fut in self.chunks.drain(..) {
            fut.cancel();
        }
        self.remaining = 0;
        self.current = Vec::new().into_iter();
    }
}

impl<R, E> Iterator for Map<R, E> {
    type Item = Result<R, FutureError<E>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(None, &mut crate::Uninterruptible)
            .map(|r| r.map_err(FutureError::widen))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl<R, E> Drop for Map<R, E> {
    fn drop(&mut self) {
        for fut in self.chunks.drain(..) {
            fut.cancel();
        }
    }
}
