//! `*_pending` releases: the state changes at once, the sleepers wake when
//! the token is woken or dropped, and never before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tress::{Event, Lock, Semaphore};

const LIMIT: Duration = Duration::from_secs(10);

/// Runs `wait` on a thread; returns a flag set once it returned and the
/// receiver of its result.
fn sleeper(
    wait: impl FnOnce() -> bool + Send + 'static,
) -> (Arc<AtomicBool>, mpsc::Receiver<bool>) {
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let d = Arc::clone(&done);
    std::thread::spawn(move || {
        let r = wait();
        d.store(true, Ordering::SeqCst);
        let _ = tx.send(r);
    });
    (done, rx)
}

/// Gives the sleeper time to fall asleep (it must then be woken by a
/// futex wake, which is what these tests are about).
fn let_it_sleep() {
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn lock_release_pending_wakes_on_wake_or_drop() {
    for drop_it in [false, true] {
        let lock = Arc::new(Lock::new());
        lock.acquire();
        let l = Arc::clone(&lock);
        let (done, rx) = sleeper(move || l.acquire_timeout(LIMIT));
        let_it_sleep();
        let pending = lock.release_pending().unwrap();
        assert!(!lock.is_locked() || done.load(Ordering::SeqCst));
        let pending = pending.expect("a sleeper was waiting: a wake is owed");
        if drop_it {
            drop(pending);
        } else {
            pending.wake();
        }
        assert!(rx.recv_timeout(LIMIT).unwrap());
    }
}

#[test]
fn uncontended_release_pending_owes_nothing() {
    let lock = Lock::new();
    lock.acquire();
    assert!(lock.release_pending().unwrap().is_none());
    assert!(lock.release_pending().is_err());
}

#[test]
fn event_set_pending_wakes_every_waiter() {
    let ev = Arc::new(Event::new());
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let e = Arc::clone(&ev);
            sleeper(move || e.wait_timeout(LIMIT))
        })
        .collect();
    let_it_sleep();
    let pending = ev.set_pending().expect("sleepers: a wake is owed");
    assert!(ev.is_set());
    drop(pending);
    for (_, rx) in waiters {
        assert!(rx.recv_timeout(LIMIT).unwrap());
    }
    assert!(ev.set_pending().is_none(), "already set: nothing to wake");
}

#[test]
fn semaphore_release_pending_wakes_n() {
    let sem = Arc::new(Semaphore::new(0));
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let s = Arc::clone(&sem);
            sleeper(move || s.acquire_timeout(LIMIT))
        })
        .collect();
    let_it_sleep();
    sem.release_pending(2)
        .unwrap()
        .expect("sleepers: a wake is owed")
        .wake();
    for (_, rx) in waiters {
        assert!(rx.recv_timeout(LIMIT).unwrap());
    }
    assert_eq!(sem.value(), 0);
}
