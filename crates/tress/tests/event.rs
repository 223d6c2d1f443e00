//! `Event`: set/clear/wait, the generation rule (a set-then-clear still
//! wakes a sleeping waiter with `true`), many waiters, timeouts, interrupts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Probe, Stop, Task, assert_timed, join_all, spawn, stays, wait_until};
use tress::{Event, Uninterruptible};

#[test]
fn set_clear_is_set() {
    let ev = Event::new();
    assert!(!ev.is_set());
    ev.set();
    assert!(ev.is_set());
    ev.set();
    assert!(ev.is_set());
    assert!(ev.wait());
    assert!(ev.wait_timeout(Duration::ZERO));
    assert!(ev.wait_deadline(Instant::now()));
    assert_eq!(ev.wait_with(None, &mut Uninterruptible), Ok(true));
    ev.clear();
    assert!(!ev.is_set());
    ev.clear();
    assert!(!ev.is_set());
    assert!(!ev.wait_timeout(Duration::ZERO));
    assert!(!ev.wait_deadline(Instant::now()));
}

#[test]
fn timeouts_are_honoured() {
    let ev = Event::new();
    for ms in [1, 30] {
        let d = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(!ev.wait_timeout(d));
        assert_timed(start.elapsed(), d);
        let start = Instant::now();
        assert!(!ev.wait_deadline(start + d));
        assert_timed(start.elapsed(), d);
        let start = Instant::now();
        assert_eq!(
            ev.wait_with(Some(start + d), &mut Uninterruptible),
            Ok(false)
        );
        assert_timed(start.elapsed(), d);
    }
    // A set-and-clear before the wait started is not seen.
    ev.set();
    ev.clear();
    assert!(!ev.wait_timeout(Duration::from_millis(5)));
}

/// A waiter asleep in `wait_with`, and a handle on its probe.
fn sleeping_waiter(ev: &Arc<Event>, timeout: Duration) -> Task<Result<bool, Stop>> {
    let e = Arc::clone(ev);
    let probe = Probe::new();
    let counts = probe.counts();
    let t = spawn(move || {
        let mut probe = probe;
        e.wait_with(Some(Instant::now() + timeout), &mut probe)
    });
    wait_until("the waiter to sleep", || counts.slept());
    t
}

#[test]
fn set_then_clear_still_wakes_a_sleeper_with_true() {
    // CPython issue #13502: a waiter woken by `set` returns true even if
    // `clear` ran before it looked.
    let ev = Arc::new(Event::new());
    for _ in 0..50 {
        let waiter = sleeping_waiter(&ev, common::BOUND);
        ev.set();
        ev.clear();
        assert_eq!(waiter.join(), Ok(true));
        assert!(!ev.is_set());
    }
}

#[test]
fn set_then_clear_wakes_a_timed_waiter_with_true() {
    // The same through the timed form, letting the timeout pass before
    // the woken waiter is joined.
    let ev = Arc::new(Event::new());
    let waiter = sleeping_waiter(&ev, Duration::from_millis(500));
    ev.set();
    ev.clear();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(waiter.join(), Ok(true));
}

#[test]
fn many_waiters_all_wake() {
    const M: usize = 16;
    let ev = Arc::new(Event::new());
    let woken = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..M)
        .map(|i| {
            let (e, w) = (Arc::clone(&ev), Arc::clone(&woken));
            let probe = Probe::new();
            let counts = probe.counts();
            let t = spawn(move || {
                let r = match i % 3 {
                    0 => e.wait(),
                    1 => e.wait_timeout(common::BOUND),
                    _ => {
                        let mut probe = probe;
                        e.wait_with(None, &mut probe).unwrap()
                    }
                };
                w.fetch_add(1, Ordering::SeqCst);
                r
            });
            if i % 3 == 2 {
                wait_until("the waiter to sleep", || counts.slept());
            }
            t
        })
        .collect();
    stays("nobody wakes before set", || {
        woken.load(Ordering::SeqCst) == 0
    });
    ev.set();
    assert!(join_all(tasks).into_iter().all(|r| r));
    assert!(ev.is_set());
}

#[test]
fn waiters_after_clear_wait_for_the_next_set() {
    let ev = Arc::new(Event::new());
    for round in 0..20 {
        let waiters: Vec<_> = (0..3)
            .map(|_| sleeping_waiter(&ev, common::BOUND))
            .collect();
        ev.set();
        assert!(
            join_all(waiters).into_iter().all(|r| r == Ok(true)),
            "round {round}"
        );
        ev.clear();
    }
}

#[test]
fn interrupted_wait_leaves_event_usable() {
    let ev = Arc::new(Event::new());
    let mut probe = Probe::failing_after(3, Duration::from_millis(1));
    let start = Instant::now();
    assert_eq!(ev.wait_with(None, &mut probe), Err(Stop(3)));
    assert!(start.elapsed() >= Duration::from_millis(3));
    assert!(!ev.is_set());
    // Checks that pass keep the wait going until the set.
    let e = Arc::clone(&ev);
    let probe = Probe {
        slice: Some(Duration::from_millis(1)),
        ..Probe::new()
    };
    let counts = probe.counts();
    let waiter = spawn(move || {
        let mut probe = probe;
        e.wait_with(None, &mut probe)
    });
    wait_until("a few checks", || counts.checks() >= 3);
    ev.set();
    assert_eq!(waiter.join(), Ok(true));
}

#[test]
fn stress_set_clear_cycles() {
    // A setter flips the event; waiters with short timeouts never see a
    // `false` while it is set, and every wait returns within its bound.
    let ev = Arc::new(Event::new());
    let end = Instant::now() + Duration::from_millis(500);
    let setter = {
        let ev = Arc::clone(&ev);
        spawn(move || {
            let mut flips = 0u64;
            while Instant::now() < end {
                ev.set();
                std::thread::yield_now();
                ev.clear();
                flips += 1;
            }
            ev.set();
            flips
        })
    };
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let ev = Arc::clone(&ev);
            spawn(move || {
                let mut trues = 0u64;
                while Instant::now() < end {
                    if ev.wait_timeout(Duration::from_millis(5)) {
                        trues += 1;
                    }
                }
                // After the last set, it stays set.
                wait_until("the final set", || ev.is_set());
                assert!(ev.wait_timeout(Duration::ZERO));
                trues
            })
        })
        .collect();
    assert!(setter.join() > 0);
    let trues: u64 = join_all(waiters).into_iter().sum();
    assert!(trues > 0);
}
