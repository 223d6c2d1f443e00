//! Helpers shared by the integration tests.
//!
//! Every wait here is bounded, so a bug makes a test fail instead of hang:
//! threads run through [`spawn`] and are joined with a timeout over a
//! channel, and polling loops give up after [`BOUND`]. [`Probe`] is an
//! instrumented [`Interrupt`] that shows when a call really sleeps and can
//! abandon it after a number of checks or on request.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tress::Interrupt;

/// The longest any single step of a test may take before it counts as hung.
pub const BOUND: Duration = Duration::from_secs(10);

/// How long a test watches for something that must *not* happen (an extra
/// wake-up, a second release) before it accepts that it did not.
pub const QUIET: Duration = Duration::from_millis(50);

/// Upper slack allowed on a timed wait: CPython's bands are 0.6x-10x; we
/// never accept a timeout that ends early, and allow this much late.
pub const LATE: Duration = Duration::from_secs(2);

/// A thread whose result is collected with a timeout.
pub struct Task<T> {
    /// Receives the closure's outcome (or its panic).
    rx: mpsc::Receiver<thread::Result<T>>,
    /// The thread, joined once it reported.
    handle: Option<JoinHandle<()>>,
}

/// Runs `f` on a new thread.
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Task<T> {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
    });
    Task {
        rx,
        handle: Some(handle),
    }
}

impl<T> Task<T> {
    /// The closure's result; fails the test if it takes longer than
    /// [`BOUND`], re-raises its panic.
    #[track_caller]
    pub fn join(self) -> T {
        self.join_within(BOUND)
    }

    /// As [`join`](Self::join) with an explicit bound.
    #[track_caller]
    pub fn join_within(mut self, bound: Duration) -> T {
        match self.rx.recv_timeout(bound) {
            Ok(r) => {
                if let Some(h) = self.handle.take() {
                    let _ = h.join();
                }
                match r {
                    Ok(v) => v,
                    Err(p) => panic::resume_unwind(p),
                }
            }
            Err(_) => panic!("thread still running after {bound:?}"),
        }
    }

    /// Whether the closure has returned (or panicked).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// The thread's pthread handle, for `pthread_kill`.
    #[cfg(unix)]
    pub fn pthread(&self) -> libc::pthread_t {
        use std::os::unix::thread::JoinHandleExt;
        self.handle.as_ref().expect("joined").as_pthread_t() as libc::pthread_t
    }
}

/// Joins every task, in order (each within [`BOUND`]).
#[track_caller]
pub fn join_all<T>(tasks: Vec<Task<T>>) -> Vec<T> {
    tasks.into_iter().map(Task::join).collect()
}

/// Polls `cond` until it holds; fails the test after [`BOUND`].
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_micros(200));
    }
}

/// Asserts that `cond` keeps holding for [`QUIET`].
#[track_caller]
pub fn stays(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + QUIET;
    while Instant::now() < end {
        assert!(cond(), "{what} stopped holding");
        thread::sleep(Duration::from_micros(500));
    }
    assert!(cond(), "{what} stopped holding");
}

/// Asserts that a timed wait that asked for `asked` took `took`: never less,
/// and at most [`LATE`] more.
#[track_caller]
pub fn assert_timed(took: Duration, asked: Duration) {
    assert!(took >= asked, "returned early: {took:?} < {asked:?}");
    assert!(took < asked + LATE, "returned late: {took:?} for {asked:?}");
}

/// What a [`Probe`] records, shared with the thread that watches it.
#[derive(Debug, Default)]
pub struct Counts {
    /// Calls of `before_sleep`: how often the call went to sleep.
    pub sleeps: AtomicUsize,
    /// Calls of `after_sleep`.
    pub wakes: AtomicUsize,
    /// Calls of `check`.
    pub checks: AtomicUsize,
    /// Set from outside to make the next `check` fail.
    pub abort: AtomicBool,
}

impl Counts {
    /// Whether the probed call has gone to sleep at least once.
    pub fn slept(&self) -> bool {
        self.sleeps.load(Ordering::SeqCst) > 0
    }

    /// How many checks ran.
    pub fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

/// What a [`Probe`]'s `check` fails with: the number of checks made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop(pub usize);

/// An [`Interrupt`] that counts its calls and fails the `fail_after`-th
/// check (or any check once `abort` is set).
#[derive(Debug, Clone)]
pub struct Probe {
    /// The counters, shared with observers.
    pub counts: Arc<Counts>,
    /// What `slice` returns.
    pub slice: Option<Duration>,
    /// Fail the check with this number (1-based), if any.
    pub fail_after: Option<usize>,
}

impl Probe {
    /// Sleeps in one piece and never fails unless aborted.
    pub fn new() -> Self {
        Self {
            counts: Arc::default(),
            slice: None,
            fail_after: None,
        }
    }

    /// Wakes every `slice` and fails the `k`-th check.
    pub fn failing_after(k: usize, slice: Duration) -> Self {
        Self {
            counts: Arc::default(),
            slice: Some(slice),
            fail_after: Some(k),
        }
    }

    /// A handle on the counters.
    pub fn counts(&self) -> Arc<Counts> {
        Arc::clone(&self.counts)
    }
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Interrupt for Probe {
    type Error = Stop;

    fn slice(&self) -> Option<Duration> {
        self.slice
    }

    fn check(&mut self) -> Result<(), Stop> {
        let n = self.counts.checks.fetch_add(1, Ordering::SeqCst) + 1;
        if self.counts.abort.load(Ordering::SeqCst) || self.fail_after.is_some_and(|k| n >= k) {
            Err(Stop(n))
        } else {
            Ok(())
        }
    }

    fn before_sleep(&mut self) {
        self.counts.sleeps.fetch_add(1, Ordering::SeqCst);
    }

    fn after_sleep(&mut self) {
        self.counts.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// A tiny deterministic pseudo-random generator (xorshift64*), so stress
/// tests vary their operations without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Forks; the child runs `f` and exits 0 (101 if it panicked).
pub fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the test binary forks from a thread that holds no lock the
    // child needs; the child only runs `f` (tress calls and plain Rust) and
    // leaves with `_exit`, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = panic::catch_unwind(AssertUnwindSafe(f)).is_ok();
        // SAFETY: `_exit` ends the child without running the parent's
        // atexit handlers or flushing its copied stdio buffers.
        unsafe { libc::_exit(if ok { 0 } else { 101 }) };
    }
    pid
}

/// Waits up to `bound` for child `pid` to exit (then kills it and fails):
/// its exit status, or the signal that killed it as a negative number.
pub fn reap_within(pid: libc::pid_t, bound: Duration) -> i32 {
    let end = Instant::now() + bound;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return libc::WEXITSTATUS(status);
            }
            return -libc::WTERMSIG(status);
        }
        if Instant::now() > end {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {pid} did not finish within {bound:?}");
        }
        thread::sleep(Duration::from_millis(2));
    }
}
