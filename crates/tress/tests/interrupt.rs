//! The `Interrupt` protocol: checks run promptly when a signal handler runs
//! in a sleeping thread (Linux: the futex returns `EINTR`), an `Err` from
//! `check` abandons the wait and leaves the primitive untouched, and the
//! sleep hooks pair up. Slice-driven interrupts per primitive live in each
//! primitive's own test file.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Probe, Stop, spawn, stays, wait_until};
use tress::{Interrupt, Lock, Uninterruptible};

#[test]
fn interrupt_through_mut_ref_and_dyn() {
    let lock = Lock::new();
    lock.acquire();
    let mut probe = Probe::failing_after(2, Duration::from_millis(1));
    // `&mut I` is itself an `Interrupt`, and `?Sized` admits trait objects.
    let mut by_ref = &mut probe;
    assert_eq!(lock.acquire_with(None, &mut by_ref), Err(Stop(2)));
    let mut probe = Probe::failing_after(1, Duration::from_millis(1));
    let dynamic: &mut dyn Interrupt<Error = Stop> = &mut probe;
    assert_eq!(lock.acquire_with(None, dynamic), Err(Stop(1)));
    let c = &probe.counts;
    assert_eq!(
        c.sleeps.load(Ordering::SeqCst),
        c.wakes.load(Ordering::SeqCst)
    );
    lock.release().unwrap();
}

#[test]
fn uninterruptible_never_slices() {
    let mut u = Uninterruptible;
    assert_eq!(u.slice(), None);
    assert_eq!(u.check(), Ok(()));
    assert_eq!(tress::deadline_after(Duration::MAX), None);
    let d = tress::deadline_after(Duration::from_secs(1)).unwrap();
    assert!(d > Instant::now());
}

/// A slice too long for an `Instant` means "no slice", like a timeout too
/// long for one means "no deadline" (`deadline_after`); it must not panic.
#[test]
fn huge_slice_does_not_overflow() {
    let lock = Lock::new();
    lock.acquire();
    let mut probe = Probe {
        slice: Some(Duration::MAX),
        ..Probe::new()
    };
    let start = Instant::now();
    let d = Duration::from_millis(10);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lock.acquire_with(Some(start + d), &mut probe)
    }));
    assert_eq!(r.ok(), Some(Ok(false)), "a huge slice panicked");
    common::assert_timed(start.elapsed(), d);
    lock.release().unwrap();
}

#[test]
fn without_signals_or_slices_check_never_runs() {
    let lock = Arc::new(Lock::new());
    lock.acquire();
    let l = Arc::clone(&lock);
    let probe = Probe::new();
    let counts = probe.counts();
    let waiter = spawn(move || {
        let mut probe = probe;
        let r = l.acquire_with(None, &mut probe);
        l.release().unwrap();
        r
    });
    wait_until("the waiter to sleep", || counts.slept());
    stays("no check without a wake-up", || counts.checks() == 0);
    lock.release().unwrap();
    assert_eq!(waiter.join(), Ok(true));
    assert_eq!(counts.checks(), 0);
    assert_eq!(
        counts.sleeps.load(Ordering::SeqCst),
        counts.wakes.load(Ordering::SeqCst)
    );
}

#[cfg(target_os = "linux")]
mod signals {
    use std::fmt::Debug;
    use std::sync::Once;

    use tress::{Barrier, BarrierError, Condition, Event, RLock, Semaphore, WaitError, WaitQueue};

    use super::common::{BOUND, Counts, Task};
    use super::*;

    /// How soon after the signal the check must have run.
    const PROMPT: Duration = Duration::from_millis(100);

    extern "C" fn on_sigusr1(_: libc::c_int) {}

    /// Installs a no-op SIGUSR1 handler *without* `SA_RESTART`, so a futex
    /// wait in the signalled thread returns `EINTR`.
    fn install_handler() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: `sigaction` is plain old data, valid when zeroed.
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = on_sigusr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = 0;
            // SAFETY: `sa.sa_mask` is a valid sigset to initialise; the
            // handler is async-signal-safe (it does nothing); the pointers
            // are valid for the calls.
            let r = unsafe {
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut())
            };
            assert_eq!(r, 0, "sigaction failed");
        });
    }

    /// Sends SIGUSR1 to `task`'s thread.
    fn signal<T>(task: &Task<T>) {
        // SAFETY: the thread has not been joined (the `Task` still owns its
        // handle), so its pthread_t is valid; SIGUSR1 has a handler.
        let r = unsafe { libc::pthread_kill(task.pthread(), libc::SIGUSR1) };
        // ESRCH: it has just finished (and is waiting to be joined).
        assert!(r == 0 || r == libc::ESRCH, "pthread_kill failed: {r}");
    }

    /// Signals `task` until `done` holds; returns how long that took after
    /// the first signal. Re-sends every few ms in case a signal landed
    /// between the waiter's `before_sleep` and its futex call.
    fn signal_until<T>(task: &Task<T>, mut done: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        let mut next = start;
        while !done() {
            let now = Instant::now();
            assert!(now < start + BOUND, "the signal never took effect");
            if now >= next {
                signal(task);
                next = now + Duration::from_millis(20);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        start.elapsed()
    }

    /// Runs `wait` (a blocking call made with the given probe) on a thread
    /// and checks the protocol: it sleeps without checking; a signal makes
    /// it check promptly and, the check passing, keep waiting; a signal
    /// after `abort` makes it return promptly with `Err(Stop)`.
    fn check_signal_protocol<T: Debug + Send + 'static>(
        wait: impl FnOnce(&mut Probe) -> T + Send + 'static,
    ) -> T {
        install_handler();
        let probe = Probe::new();
        let counts: Arc<Counts> = probe.counts();
        let task = spawn(move || {
            let mut probe = probe;
            wait(&mut probe)
        });
        wait_until("the waiter to sleep", || counts.slept());
        // Let it get from `before_sleep` into the futex call.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(counts.checks(), 0);

        let took = signal_until(&task, || counts.checks() >= 1);
        assert!(took < PROMPT, "check ran {took:?} after the signal");
        stays("a passing check keeps the wait going", || {
            !task.is_finished()
        });

        counts.abort.store(true, Ordering::SeqCst);
        let took = signal_until(&task, || task.is_finished());
        assert!(took < PROMPT, "the wait ended {took:?} after the signal");
        assert_eq!(
            counts.sleeps.load(Ordering::SeqCst),
            counts.wakes.load(Ordering::SeqCst)
        );
        task.join()
    }

    #[test]
    fn lock_acquire_checks_on_signal() {
        let lock = Arc::new(Lock::new());
        lock.acquire();
        let l = Arc::clone(&lock);
        let r = check_signal_protocol(move |p| l.acquire_with(None, p));
        assert!(matches!(r, Err(Stop(n)) if n >= 2), "{r:?}");
        // The abandoned wait left the lock held by main, and consistent.
        assert!(lock.is_locked());
        lock.release().unwrap();
        assert!(lock.release().is_err());
        assert!(lock.try_acquire());
        lock.release().unwrap();
    }

    #[test]
    fn rlock_acquire_checks_on_signal() {
        let lock = Arc::new(RLock::new());
        lock.acquire().unwrap();
        let l = Arc::clone(&lock);
        let r = check_signal_protocol(move |p| l.acquire_with(None, p));
        assert!(matches!(r, Err(Ok(Stop(_)))), "{r:?}");
        assert_eq!(lock.recursion_count(), 1);
        lock.release().unwrap();
        assert!(!lock.is_locked());
    }

    #[test]
    fn condition_wait_checks_on_signal() {
        let cond = Arc::new(Condition::new());
        let c = Arc::clone(&cond);
        let r = check_signal_protocol(move |p| {
            c.acquire();
            let r = c.wait_with(None, p);
            let owned = c.lock().is_owned();
            c.release().unwrap();
            (r, owned)
        });
        assert!(
            matches!(r, (Err(WaitError::Interrupted(Stop(_))), true)),
            "{r:?}"
        );
        cond.acquire();
        assert_eq!(cond.notify_all(), Ok(0), "the ticket was withdrawn");
        cond.release().unwrap();
    }

    #[test]
    fn wait_queue_ticket_checks_on_signal() {
        let q = Arc::new(WaitQueue::new());
        let q2 = Arc::clone(&q);
        let r = check_signal_protocol(move |p| q2.enqueue().wait_with(None, p));
        assert!(matches!(r, Err(Stop(_))), "{r:?}");
        assert!(q.is_empty());
    }

    #[test]
    fn semaphore_acquire_checks_on_signal() {
        let sem = Arc::new(Semaphore::new(0));
        let s = Arc::clone(&sem);
        let r = check_signal_protocol(move |p| s.acquire_with(None, p));
        assert!(matches!(r, Err(Stop(_))), "{r:?}");
        assert_eq!(sem.value(), 0);
        sem.release(1).unwrap();
        assert!(sem.try_acquire());
    }

    #[test]
    fn event_wait_checks_on_signal() {
        let ev = Arc::new(Event::new());
        let e = Arc::clone(&ev);
        let r = check_signal_protocol(move |p| e.wait_with(None, p));
        assert!(matches!(r, Err(Stop(_))), "{r:?}");
        assert!(!ev.is_set());
    }

    #[test]
    fn barrier_wait_checks_on_signal() {
        let b = Arc::new(Barrier::new(2));
        let b2 = Arc::clone(&b);
        let r = check_signal_protocol(move |p| b2.wait_with(None, p));
        assert!(
            matches!(r, Err(BarrierError::Interrupted(Stop(_)))),
            "{r:?}"
        );
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    }

    #[test]
    fn signals_do_not_break_uninterruptible_waits() {
        install_handler();
        let lock = Arc::new(Lock::new());
        lock.acquire();
        let l = Arc::clone(&lock);
        let waiter = spawn(move || {
            let got = l.acquire_timeout(BOUND);
            l.release().unwrap();
            got
        });
        std::thread::sleep(Duration::from_millis(5));
        for _ in 0..10 {
            signal(&waiter);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(!waiter.is_finished());
        lock.release().unwrap();
        assert!(waiter.join());

        // A deadline still holds across signals (the remaining time is
        // recomputed, not restarted).
        let ev = Arc::new(Event::new());
        let e = Arc::clone(&ev);
        let d = Duration::from_millis(60);
        let waiter = spawn(move || {
            let start = Instant::now();
            (e.wait_timeout(d), start.elapsed())
        });
        while !waiter.is_finished() {
            signal(&waiter);
            std::thread::sleep(Duration::from_millis(3));
        }
        let (set, took) = waiter.join();
        assert!(!set);
        common::assert_timed(took, d);
    }
}
