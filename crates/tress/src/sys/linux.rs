//! Linux: `futex(2)` on the word itself, private to the process.

use std::sync::atomic::AtomicU32;
use std::time::Instant;

use super::Wake;

pub(super) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    wait_op(
        word,
        expected,
        deadline,
        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
    )
}

/// [`wait`] on a word in memory shared between processes.
pub(super) fn wait_shared(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    wait_op(word, expected, deadline, libc::FUTEX_WAIT)
}

fn wait_op(word: &AtomicU32, expected: u32, deadline: Option<Instant>, op: libc::c_int) -> Wake {
    let timeout = match deadline {
        None => None,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wake::TimedOut;
            }
            Some(libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: left.subsec_nanos() as libc::c_long,
            })
        }
    };
    let ts_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit atomic for the whole call; the
    // kernel only reads it. `ts_ptr` is null or points to `timeout`, which
    // outlives the call. FUTEX_WAIT takes a relative timeout.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, expected, ts_ptr) };
    if r == 0 {
        return Wake::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ETIMEDOUT) => Wake::TimedOut,
        Some(libc::EINTR) => Wake::Interrupted,
        // EAGAIN: the word had already changed.
        _ => Wake::Woken,
    }
}

pub(super) fn wake(word: &AtomicU32, n: u32) {
    wake_op(word, n, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG);
}

/// [`wake`] on a word in memory shared between processes.
pub(super) fn wake_shared(word: &AtomicU32, n: u32) {
    wake_op(word, n, libc::FUTEX_WAKE);
}

fn wake_op(word: &AtomicU32, n: u32, op: libc::c_int) {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not
    // dereference anything else.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), op, n);
    }
}

#[inline]
pub(super) fn current_thread_id() -> usize {
    // pthread_self() reads the thread pointer: cheaper than a thread-local
    // cache, whose lookup goes through `__tls_get_addr` in a shared library
    // (Python's extension module).
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as usize }
}
