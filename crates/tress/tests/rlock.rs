//! `RLock`: reentrancy, ownership across threads, `release_save` /
//! `acquire_restore`, recursion counts and interrupted waits.

mod common;

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Probe, Stop, assert_timed, join_all, spawn, stays, wait_until};
use tress::{NotOwned, RLock, Uninterruptible, current_thread_id};

#[test]
fn reentrancy_counts_levels() {
    let lock = RLock::new();
    assert!(!lock.is_locked());
    assert_eq!(lock.recursion_count(), 0);
    assert_eq!(lock.owner(), 0);
    for depth in 1..=3 {
        match depth {
            1 => lock.acquire().unwrap(),
            2 => assert_eq!(lock.try_acquire(), Ok(true)),
            _ => assert_eq!(lock.acquire_timeout(Duration::ZERO), Ok(true)),
        }
        assert_eq!(lock.recursion_count(), depth);
    }
    assert!(lock.is_owned());
    assert_eq!(lock.owner(), current_thread_id());
    assert_eq!(lock.count(), 3);
    for depth in (0..3).rev() {
        lock.release().unwrap();
        assert_eq!(lock.recursion_count(), depth);
        assert_eq!(lock.is_locked(), depth > 0);
    }
    assert_eq!(lock.release(), Err(NotOwned));
    assert_eq!(lock.owner(), 0);
    assert!(!lock.is_owned());
    assert_eq!(
        lock.acquire_with(None, &mut Uninterruptible),
        Ok(true),
        "free again"
    );
    lock.release().unwrap();
}

#[test]
fn thread_ids_are_distinct_and_nonzero() {
    let me = current_thread_id();
    assert_ne!(me, 0);
    assert_eq!(me, current_thread_id());
    let other = spawn(current_thread_id).join();
    assert_ne!(other, 0);
    assert_ne!(other, me);
}

#[test]
fn only_the_owner_may_release() {
    let lock = Arc::new(RLock::new());
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    let me = current_thread_id();
    let l = Arc::clone(&lock);
    spawn(move || {
        assert!(!l.is_owned());
        assert!(l.is_locked());
        assert_eq!(l.recursion_count(), 0);
        assert_eq!(l.owner(), me);
        assert_eq!(l.count(), 2);
        assert_eq!(l.release(), Err(NotOwned));
        assert_eq!(l.release_save(), Err(NotOwned));
        assert_eq!(l.try_acquire(), Ok(false));
        let start = Instant::now();
        assert_eq!(l.acquire_timeout(Duration::from_millis(20)), Ok(false));
        assert_timed(start.elapsed(), Duration::from_millis(20));
        assert_eq!(
            l.acquire_deadline(Instant::now() + Duration::from_millis(5)),
            Ok(false)
        );
    })
    .join();
    // Nothing changed.
    assert_eq!(lock.recursion_count(), 2);
    assert_eq!(lock.owner(), me);

    // A partial release keeps other threads out; the last one lets them in.
    let l = Arc::clone(&lock);
    let probe = Probe::new();
    let counts = probe.counts();
    let waiter = spawn(move || {
        let mut probe = probe;
        let got = l.acquire_with(None, &mut probe);
        let (id, depth) = (l.owner(), l.recursion_count());
        l.release().unwrap();
        (got, id == current_thread_id(), depth)
    });
    wait_until("the waiter to sleep", || counts.slept());
    lock.release().unwrap();
    stays("one level keeps the waiter out", || !waiter.is_finished());
    lock.release().unwrap();
    assert_eq!(waiter.join(), (Ok(true), true, 1));
    assert!(!lock.is_locked());
    assert_eq!(lock.owner(), 0);
}

#[test]
fn release_save_and_acquire_restore() {
    let lock = Arc::new(RLock::new());
    assert_eq!(lock.release_save(), Err(NotOwned), "free lock");
    for _ in 0..3 {
        lock.acquire().unwrap();
    }
    let saved = lock.release_save().unwrap();
    assert_eq!(saved.count, 3);
    assert_eq!(saved.owner, current_thread_id());
    assert!(!lock.is_locked());
    assert!(!lock.is_owned());
    assert_eq!(lock.recursion_count(), 0);
    assert_eq!(lock.release(), Err(NotOwned));

    // Meanwhile another thread can take and release it.
    let l = Arc::clone(&lock);
    spawn(move || {
        l.acquire().unwrap();
        assert_eq!(l.recursion_count(), 1);
        l.release().unwrap();
    })
    .join();

    lock.acquire_restore(saved);
    assert_eq!(lock.recursion_count(), 3);
    assert_eq!(lock.owner(), current_thread_id());
    for _ in 0..3 {
        lock.release().unwrap();
    }
    assert_eq!(lock.release(), Err(NotOwned));

    // Restoring waits for the current holder.
    lock.acquire().unwrap();
    let saved = lock.release_save().unwrap();
    let l = Arc::clone(&lock);
    let holder = spawn(move || {
        l.acquire().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        l.release().unwrap();
    });
    wait_until("the other thread to hold it", || lock.is_locked());
    lock.acquire_restore(saved);
    assert!(lock.is_owned());
    assert_eq!(lock.recursion_count(), 1);
    holder.join();
    lock.release().unwrap();
}

#[test]
fn interrupted_acquire_and_restore_leave_lock_consistent() {
    let lock = Arc::new(RLock::new());
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    let saved = lock.release_save().unwrap();

    let l = Arc::clone(&lock);
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let holder = spawn(move || {
        l.acquire().unwrap();
        go_rx.recv_timeout(common::BOUND).unwrap();
        l.release().unwrap();
    });
    wait_until("the other thread to hold it", || lock.is_locked());

    let mut probe = Probe::failing_after(2, Duration::from_millis(1));
    assert_eq!(lock.acquire_with(None, &mut probe), Err(Ok(Stop(2))));
    let mut probe = Probe::failing_after(3, Duration::from_millis(1));
    assert_eq!(lock.acquire_restore_with(saved, &mut probe), Err(Stop(3)));
    assert!(!lock.is_owned());
    assert_eq!(lock.recursion_count(), 0);
    assert_ne!(lock.owner(), current_thread_id());

    go_tx.send(()).unwrap();
    holder.join();
    let mut probe = Probe::new();
    assert_eq!(lock.acquire_restore_with(saved, &mut probe), Ok(()));
    assert_eq!(lock.recursion_count(), 2);
    lock.release().unwrap();
    lock.release().unwrap();
    assert!(!lock.is_locked());
}

/// A counter that only the owner of `lock` touches.
struct Guarded {
    /// Guards `value`.
    lock: RLock,
    /// Accessed only by the thread that owns `lock`.
    value: UnsafeCell<u64>,
}

// SAFETY: `value` is only accessed by the owner of `lock`, an exclusive lock.
unsafe impl Sync for Guarded {}

#[test]
fn reentrant_mutual_exclusion_counts_exactly() {
    const THREADS: usize = 4;
    const ITERS: usize = 20_000;
    let g = Arc::new(Guarded {
        lock: RLock::new(),
        value: UnsafeCell::new(0),
    });
    let tasks = (0..THREADS)
        .map(|_| {
            let g = Arc::clone(&g);
            spawn(move || {
                for i in 0..ITERS {
                    g.lock.acquire().unwrap();
                    if i % 2 == 0 {
                        assert_eq!(g.lock.try_acquire(), Ok(true));
                    } else {
                        g.lock.acquire().unwrap();
                    }
                    assert_eq!(g.lock.recursion_count(), 2);
                    // SAFETY: this thread owns `lock`.
                    unsafe { *g.value.get() += 1 };
                    g.lock.release().unwrap();
                    g.lock.release().unwrap();
                }
            })
        })
        .collect();
    join_all(tasks);
    assert!(!g.lock.is_locked());
    // SAFETY: all other threads have been joined.
    assert_eq!(unsafe { *g.value.get() }, (THREADS * ITERS) as u64);
}

#[test]
fn held_count_visible_from_other_threads() {
    let lock = Arc::new(RLock::new());
    let l = Arc::clone(&lock);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let holder = spawn(move || {
        for _ in 0..5 {
            l.acquire().unwrap();
        }
        let id = current_thread_id();
        rx.recv_timeout(common::BOUND).unwrap();
        for _ in 0..5 {
            l.release().unwrap();
        }
        id
    });
    wait_until("the holder to reach depth 5", || lock.count() == 5);
    assert_eq!(lock.recursion_count(), 0);
    assert_ne!(lock.owner(), 0);
    let owner = lock.owner();
    tx.send(()).unwrap();
    assert_eq!(holder.join(), owner);
    assert_eq!(lock.count(), 0);
    assert_eq!(lock.owner(), 0);
    assert!(lock.try_acquire().unwrap());
    lock.release().unwrap();
}

#[test]
fn reset_after_fork_frees_a_held_rlock() {
    let lock = RLock::new();
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    lock.reset_after_fork();
    assert!(!lock.is_locked());
    assert_eq!(lock.owner(), 0);
    assert_eq!(lock.recursion_count(), 0);
    assert_eq!(lock.try_acquire(), Ok(true));
    assert_eq!(lock.recursion_count(), 1);
    lock.release().unwrap();
}
