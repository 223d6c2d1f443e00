//! `Lock` and `Mutex`: mutual exclusion, release by any thread, errors,
//! timeouts and interrupted waits.

mod common;

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Probe, Stop, assert_timed, join_all, spawn, stays, wait_until};
use tress::{Lock, NotLocked, Uninterruptible};

const THREADS: usize = 8;
const ITERS: usize = 100_000;

/// A counter that only the holder of `lock` touches.
struct Guarded {
    /// Guards `value`.
    lock: Lock,
    /// Read and written only while `lock` is held.
    value: UnsafeCell<u64>,
}

// SAFETY: `value` is only accessed through `bump`, which holds `lock`
// (a mutual-exclusion lock) for the whole access.
unsafe impl Sync for Guarded {}

impl Guarded {
    /// A non-atomic read-modify-write; the caller holds `lock`.
    fn bump(&self) {
        debug_assert!(self.lock.is_locked());
        // SAFETY: the caller holds `lock`, so no other thread accesses
        // `value` until it is released; the release/acquire pair orders
        // the accesses between holders.
        unsafe {
            let v = self.value.get().read_volatile();
            self.value.get().write_volatile(v + 1);
        }
    }
}

#[test]
fn mutual_exclusion_counts_exactly() {
    let g = Arc::new(Guarded {
        lock: Lock::new(),
        value: UnsafeCell::new(0),
    });
    let tasks = (0..THREADS)
        .map(|t| {
            let g = Arc::clone(&g);
            spawn(move || {
                for i in 0..ITERS {
                    // Every acquire form takes part.
                    match (t + i) % 5 {
                        0 => g.lock.acquire(),
                        1 => assert!(g.lock.acquire_timeout(Duration::from_secs(10))),
                        2 => assert!(
                            g.lock
                                .acquire_deadline(Instant::now() + Duration::from_secs(10))
                        ),
                        3 => assert_eq!(g.lock.acquire_with(None, &mut Uninterruptible), Ok(true)),
                        _ => {
                            while !g.lock.try_acquire() {
                                std::hint::spin_loop();
                            }
                        }
                    }
                    g.bump();
                    g.lock.release().unwrap();
                }
            })
        })
        .collect();
    join_all(tasks);
    assert!(!g.lock.is_locked());
    // SAFETY: every thread that touched `value` has been joined.
    assert_eq!(unsafe { *g.value.get() }, (THREADS * ITERS) as u64);
}

#[test]
fn mutex_counts_exactly() {
    let m = Arc::new(tress::Mutex::new(0u64));
    let tasks = (0..THREADS)
        .map(|_| {
            let m = Arc::clone(&m);
            spawn(move || {
                for _ in 0..ITERS / 4 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    join_all(tasks);
    assert_eq!(*m.lock(), (THREADS * ITERS / 4) as u64);
}

#[test]
fn mutex_timed_lock() {
    let m = Arc::new(tress::Mutex::new(()));
    let held = m.lock();
    let m2 = Arc::clone(&m);
    let t = spawn(move || {
        let start = Instant::now();
        let got = m2.try_lock_for(Duration::from_millis(30)).is_some();
        (got, start.elapsed())
    });
    let (got, took) = t.join();
    assert!(!got);
    assert_timed(took, Duration::from_millis(30));
    drop(held);
    assert!(m.try_lock_until(Instant::now()).is_some());
}

#[test]
fn release_by_another_thread() {
    let lock = Arc::new(Lock::new());
    lock.acquire();
    let l = Arc::clone(&lock);
    spawn(move || l.release()).join().unwrap();
    assert!(!lock.is_locked());
    assert!(lock.try_acquire());

    // A third thread releases a lock a second one is blocked on.
    let l = Arc::clone(&lock);
    let probe = Probe::new();
    let counts = probe.counts();
    let waiter = spawn(move || {
        let mut probe = probe;
        l.acquire_with(None, &mut probe)
    });
    wait_until("the waiter to sleep", || counts.slept());
    assert!(!waiter.is_finished());
    let l = Arc::clone(&lock);
    spawn(move || l.release()).join().unwrap();
    assert_eq!(waiter.join(), Ok(true));
    // The waiter holds it now; main releases it for them.
    assert!(lock.is_locked());
    lock.release().unwrap();
    assert!(!lock.is_locked());
}

#[test]
fn release_unlocked_errors_and_changes_nothing() {
    let lock = Lock::new();
    assert_eq!(lock.release(), Err(NotLocked));
    assert!(!lock.is_locked());
    assert!(lock.try_acquire());
    assert!(lock.is_locked());
    assert_eq!(lock.release(), Ok(()));
    assert_eq!(lock.release(), Err(NotLocked));
    assert!(!lock.is_locked());
    assert!(lock.acquire_timeout(Duration::ZERO));
    assert!(!lock.try_acquire());
    lock.release().unwrap();
    assert_eq!(NotLocked.to_string(), "release unlocked lock");
}

#[test]
fn release_after_contention_errors_once_free() {
    // Drive the lock through the contended state, then check that a stray
    // release is still refused.
    let lock = Arc::new(Lock::new());
    lock.acquire();
    let l = Arc::clone(&lock);
    let probe = Probe::new();
    let counts = probe.counts();
    let waiter = spawn(move || {
        let mut probe = probe;
        let got = l.acquire_with(None, &mut probe);
        l.release().unwrap();
        got
    });
    wait_until("the waiter to sleep", || counts.slept());
    lock.release().unwrap();
    assert_eq!(waiter.join(), Ok(true));
    assert_eq!(lock.release(), Err(NotLocked));
    assert!(lock.try_acquire());
    lock.release().unwrap();
}

#[test]
fn timeouts_are_honoured() {
    let lock = Lock::new();
    lock.acquire();
    for ms in [1, 20, 60] {
        let d = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(!lock.acquire_timeout(d));
        assert_timed(start.elapsed(), d);

        let start = Instant::now();
        assert!(!lock.acquire_deadline(start + d));
        assert_timed(start.elapsed(), d);

        let start = Instant::now();
        assert_eq!(
            lock.acquire_with(Some(start + d), &mut Uninterruptible),
            Ok(false)
        );
        assert_timed(start.elapsed(), d);
    }
    // Zero and past deadlines fail at once.
    let start = Instant::now();
    assert!(!lock.acquire_timeout(Duration::ZERO));
    assert!(!lock.acquire_deadline(start));
    assert!(start.elapsed() < common::LATE);
    assert!(lock.is_locked());
    lock.release().unwrap();
}

#[test]
fn timeout_acquires_when_released_in_time() {
    let lock = Arc::new(Lock::new());
    lock.acquire();
    let l = Arc::clone(&lock);
    let t = spawn(move || {
        let start = Instant::now();
        (l.acquire_timeout(Duration::from_secs(10)), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(20));
    lock.release().unwrap();
    let (got, took) = t.join();
    assert!(got);
    assert!(took < Duration::from_secs(10));
    // A timeout too large for an `Instant` waits without limit.
    let l = Arc::clone(&lock);
    let t = spawn(move || l.acquire_timeout(Duration::MAX));
    std::thread::sleep(Duration::from_millis(20));
    lock.release().unwrap();
    assert!(t.join());
    lock.release().unwrap();
}

#[test]
fn interrupt_after_k_checks_returns_error_and_keeps_lock_consistent() {
    let lock = Arc::new(Lock::new());
    lock.acquire();
    // A plain waiter queued behind the interrupted one must still be woken.
    let l = Arc::clone(&lock);
    let plain_probe = Probe::new();
    let plain_counts = plain_probe.counts();
    let plain = spawn(move || {
        let mut p = plain_probe;
        let got = l.acquire_with(None, &mut p);
        l.release().unwrap();
        got
    });
    wait_until("the plain waiter to sleep", || plain_counts.slept());

    let mut probe = Probe::failing_after(3, Duration::from_millis(1));
    let start = Instant::now();
    assert_eq!(lock.acquire_with(None, &mut probe), Err(Stop(3)));
    assert!(start.elapsed() >= Duration::from_millis(3));
    assert_eq!(probe.counts.checks(), 3);
    let c = &probe.counts;
    assert_eq!(
        c.sleeps.load(Ordering::SeqCst),
        c.wakes.load(Ordering::SeqCst)
    );
    assert!(c.sleeps.load(Ordering::SeqCst) >= 3);

    // Still held by main, and the plain waiter still waits.
    assert!(lock.is_locked());
    assert!(!plain.is_finished());
    lock.release().unwrap();
    assert_eq!(plain.join(), Ok(true));
    assert!(!lock.is_locked());
    assert!(lock.try_acquire());
    lock.release().unwrap();
    assert_eq!(lock.release(), Err(NotLocked));
}

#[test]
fn interrupt_with_deadline_inside_slice() {
    // The deadline ends the wait when it comes before the next slice, and
    // the check does not run for it.
    let lock = Lock::new();
    lock.acquire();
    let mut probe = Probe::failing_after(1, Duration::from_secs(5));
    let start = Instant::now();
    let d = Duration::from_millis(20);
    assert_eq!(lock.acquire_with(Some(start + d), &mut probe), Ok(false));
    assert_timed(start.elapsed(), d);
    assert_eq!(probe.counts.checks(), 0);

    // Slices shorter than the deadline: checks run, the deadline still wins.
    let mut probe = Probe {
        slice: Some(Duration::from_millis(2)),
        ..Probe::new()
    };
    let start = Instant::now();
    assert_eq!(lock.acquire_with(Some(start + d), &mut probe), Ok(false));
    assert_timed(start.elapsed(), d);
    assert!(probe.counts.checks() >= 1);
    lock.release().unwrap();
}

#[test]
fn fast_path_never_sleeps_or_checks() {
    let lock = Lock::new();
    let mut probe = Probe::failing_after(1, Duration::from_millis(1));
    assert_eq!(lock.acquire_with(None, &mut probe), Ok(true));
    lock.release().unwrap();
    assert_eq!(probe.counts.sleeps.load(Ordering::SeqCst), 0);
    assert_eq!(probe.counts.checks(), 0);
}

#[test]
fn blocked_acquire_wakes_on_release() {
    let lock = Arc::new(Lock::new());
    lock.acquire();
    let done = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (l, done) = (Arc::clone(&lock), Arc::clone(&done));
            spawn(move || {
                l.acquire();
                assert!(done.load(Ordering::SeqCst));
                l.release().unwrap();
            })
        })
        .collect();
    stays("the lock keeps the waiters out", || {
        tasks.iter().all(|t| !t.is_finished())
    });
    done.store(true, Ordering::SeqCst);
    lock.release().unwrap();
    join_all(tasks);
    assert!(!lock.is_locked());
}

#[test]
fn reset_after_fork_frees_a_held_lock() {
    let lock = Lock::new();
    lock.acquire();
    lock.reset_after_fork();
    assert!(!lock.is_locked());
    assert!(lock.try_acquire());
    lock.release().unwrap();
}
