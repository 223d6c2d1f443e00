//! `*_pending` releases: the state changes at once, the sleepers wake when
//! the token is woken or dropped, and never before.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tress::{Event, Lock, Semaphore};

const LIMIT: Duration = Duration::from_secs(10);

/// Runs `wait` on a thread; returns the receiver of its result.
fn sleeper(wait: impl FnOnce() -> bool + Send + 'static) -> mpsc::Receiver<bool> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(wait());
    });
    rx
}

/// Gives the sleeper time to fall asleep (it must then be woken by a
/// futex wake, which is what these tests are about).
fn let_it_sleep() {
    std::thread::sleep(Duration::from_millis(50));
}

/// Runs `attempt` until it reports that it caught the sleepers asleep (it
/// returns whether a wake-up token was owed), at most 10 times.
fn until_caught_asleep(mut attempt: impl FnMut() -> bool) {
    assert!(
        (0..10).any(|_| attempt()),
        "the sleepers were never caught asleep in 10 runs"
    );
}

#[test]
fn lock_release_pending_wakes_on_wake_or_drop() {
    for drop_it in [false, true] {
        until_caught_asleep(|| {
            let lock = Arc::new(Lock::new());
            lock.acquire();
            let l = Arc::clone(&lock);
            let rx = sleeper(move || l.acquire_timeout(LIMIT));
            let_it_sleep();
            let pending = lock.release_pending().unwrap();
            let owed = pending.is_some();
            match pending {
                Some(p) if drop_it => drop(p),
                Some(p) => p.wake(),
                None => {}
            }
            assert!(rx.recv_timeout(LIMIT).unwrap());
            owed
        });
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
    until_caught_asleep(|| {
        let ev = Arc::new(Event::new());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let e = Arc::clone(&ev);
                sleeper(move || e.wait_timeout(LIMIT))
            })
            .collect();
        let_it_sleep();
        let pending = ev.set_pending();
        assert!(ev.is_set());
        let owed = pending.is_some();
        drop(pending);
        for rx in waiters {
            assert!(rx.recv_timeout(LIMIT).unwrap());
        }
        assert!(ev.set_pending().is_none(), "already set: nothing to wake");
        owed
    });
}

#[test]
fn semaphore_release_pending_wakes_n() {
    until_caught_asleep(|| {
        let sem = Arc::new(Semaphore::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let s = Arc::clone(&sem);
                sleeper(move || s.acquire_timeout(LIMIT))
            })
            .collect();
        let_it_sleep();
        let pending = sem.release_pending(2).unwrap();
        let owed = pending.is_some();
        if let Some(p) = pending {
            p.wake();
        }
        for rx in waiters {
            assert!(rx.recv_timeout(LIMIT).unwrap());
        }
        assert_eq!(sem.value(), 0);
        owed
    });
}
