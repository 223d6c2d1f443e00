//! Platform waits: one futex-shaped interface over each operating system.
//!
//! Every blocking primitive in [`crate::sync`] parks on a 32-bit atomic word
//! through [`wait`] and is woken through [`wake`]. On Linux that is the
//! `futex(2)` system call on the word itself, with no global table, so a child
//! created by `fork()` never inherits a lock that another parent thread held
//! inside the waiting machinery. Elsewhere `parking_lot_core`'s address-keyed
//! parking lot provides the same contract.
//!
//! The contract of [`wait`]: it returns when the word no longer holds
//! `expected`, when it was woken (possibly spuriously), when the deadline
//! passes, or when a signal handler ran in this thread ([`Wake::Interrupted`]).
//! Callers always re-check their own condition afterwards.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(not(target_os = "linux"))]
mod parking;
#[cfg(not(target_os = "linux"))]
use parking as imp;

/// Why [`wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, or the word had already changed, or a spurious wake-up.
    Woken,
    /// The deadline passed.
    TimedOut,
    /// A signal handler ran in this thread while it slept (`EINTR`).
    Interrupted,
}

/// Sleeps while `word == expected`, until `deadline` (forever if `None`).
#[inline]
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    imp::wait(word, expected, deadline)
}

/// Wakes at most `n` threads sleeping on `word`.
#[inline]
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    imp::wake(word, n);
}

/// Wakes every thread sleeping on `word`.
#[inline]
pub(crate) fn wake_all(word: &AtomicU32) {
    imp::wake(word, u32::MAX);
}

/// Sleeps while `word == expected`, `word` being in memory shared between
/// processes (a futex without `FUTEX_PRIVATE_FLAG`).
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn wait_shared(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    imp::wait_shared(word, expected, deadline)
}

/// Wakes at most `n` waiters, in any process, sleeping on the shared `word`.
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn wake_shared(word: &AtomicU32, n: u32) {
    imp::wake_shared(word, n);
}

/// This process's id, read once per fork generation (glibc no longer caches
/// `getpid`, and the system call is on every queue operation's path).
#[cfg(unix)]
pub(crate) fn process_id() -> u32 {
    use std::sync::atomic::AtomicU64;
    static CACHED: AtomicU64 = AtomicU64::new(u64::MAX);
    watch_forks();
    let generation = u64::from(fork_generation());
    let cached = CACHED.load(Ordering::Relaxed);
    if cached >> 32 == generation {
        return cached as u32;
    }
    let pid = std::process::id();
    CACHED.store(generation << 32 | u64::from(pid), Ordering::Relaxed);
    pid
}

/// Whether process `pid` still runs: it exists and is not a zombie (a
/// killed child its parent has not reaped yet counts as gone).
#[cfg(target_os = "linux")]
pub(crate) fn process_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => match stat.iter().rposition(|&b| b == b')') {
            Some(i) => !matches!(stat.get(i + 2), Some(b'Z' | b'X')),
            None => true,
        },
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// A number that identifies the calling thread among the live threads of this
/// process and is never 0. On POSIX it is `pthread_self()`, which is what
/// Python's `threading.get_ident()` returns, so owners read the same from
/// both languages.
#[inline]
pub fn current_thread_id() -> usize {
    imp::current_thread_id()
}

/// How many times this process's ancestry forked since tress first watched
/// (see [`watch_forks`]); never `u32::MAX`, which callers may use as a
/// marker.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

/// Starts counting forks: from now on every child process created by
/// `fork()` sees [`fork_generation`] one higher than its parent did. Cheap
/// after the first call.
pub(crate) fn watch_forks() {
    #[cfg(unix)]
    {
        extern "C" fn child() {
            let next = FORK_GENERATION.load(Ordering::Relaxed).wrapping_add(1);
            let next = if next == u32::MAX { 0 } else { next };
            FORK_GENERATION.store(next, Ordering::Relaxed);
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: `child` is async-signal-safe (two atomic operations on
            // a static) and, being part of this library, lives as long as
            // the process.
            unsafe {
                libc::pthread_atfork(None, None, Some(child));
            }
        });
    }
}

/// The fork generation of this process (see [`watch_forks`]).
#[inline]
pub(crate) fn fork_generation() -> u32 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// The fork generation a structure's waiting machinery belongs to: the
/// first use in a forked child runs the structure's reset (forgetting the
/// parent's waiting threads) exactly once, while other threads of the child
/// that arrive meanwhile wait for it to finish.
#[derive(Debug)]
pub(crate) struct ForkEpoch(AtomicU32);

/// `ForkEpoch` while a thread runs the reset.
const RESETTING: u32 = u32::MAX;

impl ForkEpoch {
    /// The current generation (and fork counting started).
    pub(crate) fn new() -> Self {
        watch_forks();
        Self(AtomicU32::new(fork_generation()))
    }

    /// Runs `reset` if this is the first use since a fork.
    #[inline]
    pub(crate) fn enter(&self, reset: impl FnOnce()) {
        if self.0.load(Ordering::Relaxed) != fork_generation() {
            self.after_fork(reset);
        }
    }

    #[cold]
    fn after_fork(&self, reset: impl FnOnce()) {
        let now = fork_generation();
        loop {
            let seen = self.0.load(Ordering::Acquire);
            if seen == now {
                return;
            }
            if seen == RESETTING {
                std::thread::yield_now();
                continue;
            }
            if self
                .0
                .compare_exchange(seen, RESETTING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                reset();
                self.0.store(now, Ordering::Release);
                return;
            }
        }
    }
}
