//! `fork()` while other threads hold a tress lock and sleep on tress
//! primitives: the child (one thread, the forking one) can create and use
//! every kind of primitive, and reset the inherited ones. On Linux every wait
//! is a private futex on the primitive's own word, so there is no global
//! waiter table a parent thread could have left locked.

#![cfg(target_os = "linux")]

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Probe, spawn, wait_until};
use tress::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, Mutex, RLock, Semaphore, WaitQueue,
};

/// What the parent's threads hold or sleep on when it forks.
struct Inherited {
    /// Held by a parent thread at the fork.
    held: Lock,
    /// A parent thread sleeps in `wait` on it at the fork.
    cond: Condition,
    /// A parent thread sleeps on it at the fork; also ends the holder.
    event: Event,
}

/// Runs in the child: every primitive, new and inherited. Returns normally
/// only if all checks pass.
fn child(inherited: &Inherited) {
    let short = Duration::from_millis(5);
    let long = Duration::from_secs(5);

    // The inherited lock is held by a thread that does not exist here.
    assert!(inherited.held.is_locked());
    assert!(!inherited.held.acquire_timeout(short));
    inherited.held.reset_after_fork();
    assert!(inherited.held.try_acquire());
    inherited.held.release().unwrap();
    // The inherited event and condition still work for this thread.
    assert!(!inherited.event.is_set());
    inherited.event.set();
    assert!(inherited.event.wait_timeout(short));
    inherited.cond.acquire();
    assert!(!inherited.cond.wait_timeout(short).unwrap());
    inherited.cond.release().unwrap();

    // New primitives, single-threaded.
    let lock = Lock::new();
    assert!(lock.try_acquire());
    assert!(!lock.acquire_timeout(short));
    lock.release().unwrap();
    let rlock = RLock::new();
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    assert_eq!(rlock.recursion_count(), 2);
    let saved = rlock.release_save().unwrap();
    rlock.acquire_restore(saved);
    rlock.release().unwrap();
    rlock.release().unwrap();
    let sem = Semaphore::new(1);
    assert!(sem.try_acquire());
    assert!(!sem.acquire_timeout(short));
    sem.release(1).unwrap();
    let bounded = BoundedSemaphore::new(1);
    assert!(bounded.release(1).is_err());
    let q = WaitQueue::new();
    let t = q.enqueue();
    assert_eq!(q.notify(1), 1);
    assert!(t.wait_timeout(short));
    let m = Mutex::new(1);
    *m.lock() += 1;
    assert_eq!(*m.lock(), 2);
    assert_eq!(Barrier::new(1).wait(), Ok(0));

    // New primitives across threads started in the child.
    let shared = Arc::new((
        Lock::new(),
        Condition::new(),
        Event::new(),
        Semaphore::new(0),
        Barrier::new(2),
        AtomicUsize::new(0),
    ));
    let s = Arc::clone(&shared);
    shared.0.acquire();
    let helper = std::thread::spawn(move || {
        let (lock, cond, event, sem, barrier, flag) = &*s;
        // Lock released by another thread.
        lock.release().unwrap();
        // Condition handshake.
        cond.acquire();
        flag.store(1, Ordering::SeqCst);
        cond.notify_all().unwrap();
        cond.release().unwrap();
        assert!(event.wait_timeout(long));
        sem.release(1).unwrap();
        barrier.wait_timeout(long).unwrap()
    });
    let (lock, cond, event, sem, barrier, flag) = &*shared;
    assert!(lock.acquire_timeout(long), "released by the helper");
    lock.release().unwrap();
    cond.acquire();
    assert!(
        cond.wait_for(|| flag.load(Ordering::SeqCst) == 1, Some(long))
            .unwrap()
    );
    cond.release().unwrap();
    event.set();
    assert!(sem.acquire_timeout(long));
    let mine = barrier.wait_timeout(long).unwrap();
    let theirs = helper.join().unwrap();
    assert_eq!(mine + theirs, 1);
}

#[test]
fn child_uses_primitives_while_parent_threads_hold_and_wait() {
    let inherited = Arc::new(Inherited {
        held: Lock::new(),
        cond: Condition::new(),
        event: Event::new(),
    });

    // A thread holds `held` until `event` is set.
    let i = Arc::clone(&inherited);
    let holding = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&holding);
    let holder = spawn(move || {
        i.held.acquire();
        h.store(1, Ordering::SeqCst);
        assert!(i.event.wait_timeout(common::BOUND));
        i.held.release().unwrap();
    });
    // A thread sleeps in a condition wait.
    let i = Arc::clone(&inherited);
    let probe = Probe::new();
    let cond_counts = probe.counts();
    let cond_waiter = spawn(move || {
        let mut probe = probe;
        i.cond.acquire();
        let r = i
            .cond
            .wait_with(Some(Instant::now() + common::BOUND), &mut probe);
        i.cond.release().unwrap();
        r
    });
    // A thread sleeps on the event.
    let i = Arc::clone(&inherited);
    let probe = Probe::new();
    let event_counts = probe.counts();
    let event_waiter = spawn(move || {
        let mut probe = probe;
        i.event.wait_with(None, &mut probe)
    });
    wait_until("the holder to hold", || holding.load(Ordering::SeqCst) == 1);
    wait_until("the waiters to sleep", || {
        cond_counts.slept() && event_counts.slept()
    });

    // SAFETY: the child calls only `child` (which allocates and spawns
    // threads: fine with glibc, whose malloc and pthread_create reset their
    // state at fork) and `_exit`, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = panic::catch_unwind(AssertUnwindSafe(|| child(&inherited))).is_ok();
        // SAFETY: `_exit` ends the child at once, running no destructors
        // or atexit handlers that belong to the parent's state.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }

    // Parent: wait for the child with a bounded poll.
    let deadline = Instant::now() + common::BOUND;
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        assert_eq!(r, 0, "waitpid failed");
        if Instant::now() > deadline {
            // SAFETY: `pid` is our un-reaped child, so it cannot have been
            // recycled; SIGKILL then reaping it leaves no zombie.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child hung");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: status {status:#x}"
    );

    // The parent's threads are unaffected.
    inherited.cond.acquire();
    assert_eq!(inherited.cond.notify(1), Ok(1));
    inherited.cond.release().unwrap();
    assert_eq!(cond_waiter.join(), Ok(true));
    inherited.event.set();
    assert_eq!(event_waiter.join(), Ok(true));
    holder.join();
    assert!(!inherited.held.is_locked());
}
