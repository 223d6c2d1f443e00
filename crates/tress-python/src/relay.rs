//! Ctrl-C that lands on another thread wakes the main thread.
//!
//! CPython runs Python's signal handlers on the main thread only, but the
//! C-level handler runs on whichever thread the kernel delivered the signal
//! to. A main thread asleep in a futex is woken (`EINTR`) only by a signal
//! delivered to it. Before the main thread sleeps in a tress wait, [`arm`]
//! puts a relay in front of Python's `SIGINT` handler: it calls Python's
//! handler, and when it runs on another thread it sends the main thread
//! `SIGURG`, whose handler here does nothing but interrupt the sleep. So a
//! blocked main thread needs no periodic wake-up to notice Ctrl-C.
//!
//! Python's `signal.signal(SIGINT, ...)` replaces the relay with Python's
//! handler (the next sleep puts it back in front); a `SIGINT` that is
//! ignored or left to its default action is never relayed, and neither is
//! anything if the program has a `SIGURG` handler of its own.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Python's `SIGINT` handler, `sa_sigaction` (0: none saved).
static PYTHON_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// Its `sa_flags`, to call it the way it expects (`SA_SIGINFO` or not).
static PYTHON_FLAGS: AtomicUsize = AtomicUsize::new(0);
/// The thread to wake (`pthread_t`, 0: none).
static TARGET: AtomicUsize = AtomicUsize::new(0);

const WAKE: libc::c_int = libc::SIGURG;

extern "C" fn wake_only(_sig: libc::c_int) {}

extern "C" fn relay(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let handler = PYTHON_HANDLER.load(Ordering::Acquire);
    if handler != 0 {
        let flags = PYTHON_FLAGS.load(Ordering::Relaxed) as libc::c_int;
        // SAFETY: `handler` is the function Python installed for this
        // signal (saved by `arm`, never SIG_DFL or SIG_IGN), called with
        // the arguments its flags say it takes.
        unsafe {
            if flags & libc::SA_SIGINFO != 0 {
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(handler);
                f(sig, info, ctx);
            } else {
                let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
                f(sig);
            }
        }
    }
    let target = TARGET.load(Ordering::Relaxed);
    // SAFETY: pthread_self and pthread_kill are async-signal-safe; the
    // target is the main thread of this process, which lives as long as
    // the process.
    unsafe {
        if target != 0 && libc::pthread_self() as usize != target {
            libc::pthread_kill(target as libc::pthread_t, WAKE);
        }
    }
}

/// In a forked child: the parent's main thread is not here (`arm` sets
/// the child's own before its main thread sleeps).
pub(crate) fn forget_target() {
    TARGET.store(0, Ordering::Relaxed);
    LOOKED.store(0, Ordering::Relaxed);
}

/// When `arm` last looked (ns of `CLOCK_MONOTONIC`, 0: never, or since a
/// fork).
static LOOKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How often `arm` looks again whether the relay is still in front (Python's
/// `signal.signal` puts its own handler back): a `sigaction` query per sleep
/// would cost a round trip between two processes a tenth of its time.
const LOOK_EVERY_NS: u64 = 100_000_000;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Puts the relay in front of Python's `SIGINT` handler, for the calling
/// thread (the main thread, about to sleep) to be woken by a Ctrl-C that
/// another thread receives. Looks (one `sigaction` query) at most every
/// 100 ms; between looks, a handler Python put back meanwhile is not
/// relayed (the wait's safety-net slice still sees the signal).
pub(crate) fn arm() {
    let now = monotonic_ns();
    let last = LOOKED.load(Ordering::Relaxed);
    if last != 0 && now.wrapping_sub(last) < LOOK_EVERY_NS {
        return;
    }
    LOOKED.store(now.max(1), Ordering::Relaxed);
    look();
}

fn look() {
    // SAFETY: plain sigaction queries and installs; the handlers installed
    // are async-signal-safe (see `relay` and `wake_only`).
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGINT, std::ptr::null(), &mut current) != 0 {
            return;
        }
        if current.sa_sigaction == relay as *const () as usize {
            TARGET.store(libc::pthread_self() as usize, Ordering::Relaxed);
            return;
        }
        if current.sa_sigaction == libc::SIG_DFL || current.sa_sigaction == libc::SIG_IGN {
            return;
        }
        let mut wake: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(WAKE, std::ptr::null(), &mut wake) != 0 {
            return;
        }
        if wake.sa_sigaction != wake_only as *const () as usize {
            if wake.sa_sigaction != libc::SIG_DFL && wake.sa_sigaction != libc::SIG_IGN {
                return; // the program's own SIGURG handler: left alone
            }
            let mut mine: libc::sigaction = std::mem::zeroed();
            mine.sa_sigaction = wake_only as *const () as usize;
            // No SA_RESTART: the futex wait returns EINTR.
            mine.sa_flags = 0;
            libc::sigemptyset(&mut mine.sa_mask);
            if libc::sigaction(WAKE, &mine, std::ptr::null_mut()) != 0 {
                return;
            }
        }
        PYTHON_FLAGS.store(current.sa_flags as usize, Ordering::Relaxed);
        PYTHON_HANDLER.store(current.sa_sigaction, Ordering::Release);
        TARGET.store(libc::pthread_self() as usize, Ordering::Relaxed);
        let mut front = current;
        front.sa_sigaction = relay as *const () as usize;
        front.sa_flags = (current.sa_flags | libc::SA_SIGINFO) & !libc::SA_RESTART;
        libc::sigaction(libc::SIGINT, &front, std::ptr::null_mut());
    }
}
