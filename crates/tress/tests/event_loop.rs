//! The event-loop core: parking without lost wake-ups, level-triggered
//! readiness, timers never early, one ready snapshot per iteration, signals.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tress::event_loop::{Core, Interest, Parking, Work};

/// Bound on every wait in this file: a lost wake-up fails, never hangs.
const BOUND: Duration = Duration::from_secs(20);

#[derive(Debug, PartialEq)]
enum Msg {
    Item(usize, usize),
    Watchdog,
}

#[test]
fn producers_never_lose_a_wake_up() {
    // Producers send in bursts with pauses, so the loop keeps parking and
    // unparking between them; a lost wake-up leaves it blocked until the
    // watchdog timer (a failure, not a hang).
    const PRODUCERS: usize = 4;
    const EACH: usize = 20_000;
    for round in 0..5 {
        let mut core: Core<Msg> = Core::new().unwrap();
        let start = Instant::now();
        core.call_at(start + BOUND, Msg::Watchdog);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let inbox = core.inbox().clone();
                thread::spawn(move || {
                    for i in 0..EACH {
                        inbox.send(Msg::Item(p, i));
                        if (i + p + round) % 997 == 0 {
                            thread::sleep(Duration::from_micros(50));
                        } else if i % 61 == 0 {
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = [0usize; PRODUCERS];
        let mut got = 0;
        let mut fired = false;
        while got < PRODUCERS * EACH && !fired {
            core.run_once(false, |_, work| match work {
                Work::Call(Msg::Item(p, i)) => {
                    assert_eq!(i, next[p], "producer {p}'s items out of order");
                    next[p] += 1;
                    got += 1;
                }
                Work::Call(Msg::Watchdog) => fired = true,
                other => panic!("unexpected {other:?}"),
            })
            .unwrap();
        }
        assert!(
            !fired,
            "round {round}: blocked with {got} of {} items: a lost wake-up",
            PRODUCERS * EACH
        );
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(next, [EACH; PRODUCERS]);
    }
}

#[test]
fn a_busy_loop_is_not_woken() {
    let parking = Parking::new();
    // running: producers never write the waker
    assert!(!parking.published());
    assert!(!parking.published());
    // work pending: the loop must not block
    assert!(!parking.park());
    parking.taking();
    // parked with nothing pending: the first producer writes, the rest do not
    assert!(parking.park());
    assert!(parking.published());
    assert!(!parking.published());
    parking.unpark();
    parking.taking();
    assert!(parking.park());
    assert!(parking.published(), "a new park cycle is woken again");
}

#[test]
fn readiness_is_level_triggered_and_deregistration_stops_it() {
    let mut core: Core<()> = Core::new().unwrap();
    let (mut a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    core.poller()
        .register(a.as_raw_fd(), 7, Interest::READ)
        .unwrap();
    core.call_at(Instant::now() + BOUND, ());
    b.write_all(b"hello").unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        core.run_once(false, |_, work| {
            if let Work::Io(r) = work {
                seen.push((r.token, r.readable, r.writable));
            }
        })
        .unwrap();
    }
    // not read: reported on every iteration
    assert_eq!(seen, vec![(7, true, false); 3]);
    let mut buf = [0; 16];
    assert_eq!(a.read(&mut buf).unwrap(), 5);
    core.poller()
        .modify(a.as_raw_fd(), 7, Interest::BOTH)
        .unwrap();
    seen.clear();
    core.run_once(true, |_, work| {
        if let Work::Io(r) = work {
            seen.push((r.token, r.readable, r.writable));
        }
    })
    .unwrap();
    assert_eq!(seen, vec![(7, false, true)]);
    core.poller().deregister(a.as_raw_fd()).unwrap();
    b.write_all(b"more").unwrap();
    seen.clear();
    core.run_once(true, |_, work| {
        if let Work::Io(r) = work {
            seen.push((r.token, r.readable, r.writable));
        }
    })
    .unwrap();
    assert!(seen.is_empty());
    // a peer that goes away: readable (a read then returns 0); a hang-up
    // reports both directions, as selectors' epoll does (callers keep what
    // they registered for)
    core.poller()
        .register(a.as_raw_fd(), 8, Interest::READ)
        .unwrap();
    drop(b);
    seen.clear();
    core.run_once(true, |_, work| {
        if let Work::Io(r) = work {
            seen.push((r.token, r.readable, r.writable));
        }
    })
    .unwrap();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].0 == 8 && seen[0].1);
    assert_eq!(a.read(&mut buf).unwrap(), 4);
    assert_eq!(a.read(&mut buf).unwrap(), 0);
}

#[test]
fn timers_never_fire_early_and_fire_in_order() {
    let mut core: Core<(usize, Instant)> = Core::new().unwrap();
    let t0 = Instant::now();
    for (k, us) in [300u64, 100, 2000, 100, 0, 1500].into_iter().enumerate() {
        let at = t0 + Duration::from_micros(us);
        core.call_at(at, (k, at));
    }
    let cancelled = core.call_at(t0 + Duration::from_micros(50), (99, t0));
    assert!(core.cancel(cancelled).is_some());
    let mut order = Vec::new();
    while order.len() < 6 {
        assert!(t0.elapsed() < BOUND);
        core.run_once(false, |_, work| {
            if let Work::Call((k, at)) = work {
                assert!(Instant::now() >= at, "timer {k} fired early");
                order.push(k);
            }
        })
        .unwrap();
    }
    assert_eq!(order, [4, 1, 3, 0, 5, 2]);
}

#[test]
fn one_snapshot_per_iteration() {
    // a callback that reschedules itself runs once per iteration, and the
    // poller (an inbox item here) is still looked at in between
    let mut core: Core<&'static str> = Core::new().unwrap();
    core.call_soon("again");
    let inbox = core.inbox().clone();
    let mut runs = 0;
    let mut other = false;
    let mut iterations = 0;
    while !other {
        iterations += 1;
        assert!(iterations < 1_000_000);
        if iterations == 10 {
            inbox.send("other");
        }
        let before = runs;
        core.run_once(false, |core, work| match work {
            Work::Call("again") => {
                runs += 1;
                core.call_soon("again");
            }
            Work::Call("other") => other = true,
            w => panic!("unexpected {w:?}"),
        })
        .unwrap();
        assert_eq!(runs, before + 1);
    }
    assert_eq!(iterations, 10);
}

#[test]
fn a_blocked_loop_is_woken_by_a_nudge_and_by_a_signal() {
    let mut core: Core<()> = Core::new().unwrap();
    let inbox = core.inbox().clone();
    let done = Arc::new(AtomicBool::new(false));
    let t = {
        let done = done.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            done.store(true, Ordering::SeqCst);
            inbox.nudge();
        })
    };
    core.call_at(Instant::now() + BOUND, ());
    let t0 = Instant::now();
    // no callback is ready: this blocks until the nudge (or the watchdog)
    while !done.load(Ordering::SeqCst) {
        core.run_once(false, |_, _| {}).unwrap();
    }
    assert!(t0.elapsed() < BOUND / 2, "the nudge did not wake the loop");
    t.join().unwrap();

    let pipe_fd = core.signals().unwrap().write_fd();
    assert!(pipe_fd >= 0);
    core.signals().unwrap().catch(libc::SIGUSR1).unwrap();
    let pid = std::process::id() as libc::pid_t;
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        // SAFETY: sends SIGUSR1 to this process, whose handler was set above.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
    });
    let mut got = Vec::new();
    let t0 = Instant::now();
    while got.is_empty() && t0.elapsed() < BOUND / 2 {
        core.run_once(false, |_, work| {
            if let Work::Signal(s) = work {
                got.push(s);
            }
        })
        .unwrap();
    }
    t.join().unwrap();
    tress::event_loop::SignalPipe::restore(libc::SIGUSR1).unwrap();
    assert_eq!(got, [libc::SIGUSR1 as u8]);
}
