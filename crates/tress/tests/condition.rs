//! `WaitQueue` and `Condition`: exact wake counts, FIFO order, timeouts that
//! withdraw their ticket, predicates, ownership errors, both lock kinds,
//! interrupted waits, and a producer/consumer stress test.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{BOUND, Probe, Rng, Stop, Task, assert_timed, join_all, spawn, stays, wait_until};
use tress::{CondLock, Condition, Lock, NotOwned, RLock, Uninterruptible, WaitError, WaitQueue};

/// A condition and a count of the threads that reached `wait`, updated under
/// the condition's lock, so once the lock is free again with `ready == m`,
/// all `m` are queued.
struct Waiters<L: CondLock> {
    /// The condition under test.
    cond: Condition<L>,
    /// Threads that are (or were) waiting.
    ready: AtomicUsize,
    /// Threads whose wait returned.
    woken: AtomicUsize,
}

fn start_waiters<L: CondLock + Send + Sync + 'static>(
    cond: Condition<L>,
    m: usize,
) -> (Arc<Waiters<L>>, Vec<Task<bool>>) {
    let w = Arc::new(Waiters {
        cond,
        ready: AtomicUsize::new(0),
        woken: AtomicUsize::new(0),
    });
    let tasks = (0..m)
        .map(|_| {
            let w = Arc::clone(&w);
            spawn(move || {
                w.cond.acquire();
                w.ready.fetch_add(1, Ordering::SeqCst);
                let notified = w.cond.wait_timeout(BOUND).unwrap();
                w.woken.fetch_add(1, Ordering::SeqCst);
                w.cond.release().unwrap();
                notified
            })
        })
        .collect();
    wait_until("all waiters to queue", || {
        w.cond.acquire();
        let n = w.ready.load(Ordering::SeqCst);
        w.cond.release().unwrap();
        n == m
    });
    (w, tasks)
}

fn notify_wakes_exactly_n<L: CondLock + Send + Sync + 'static>(cond: Condition<L>) {
    const M: usize = 6;
    let (w, tasks) = start_waiters(cond, M);
    let mut expected = 0;
    for n in [2, 1, 0, 2] {
        w.cond.acquire();
        assert_eq!(w.cond.notify(n), Ok(n));
        w.cond.release().unwrap();
        expected += n;
        wait_until("the notified waiters to wake", || {
            w.woken.load(Ordering::SeqCst) >= expected
        });
        stays("no extra waiter wakes", || {
            w.woken.load(Ordering::SeqCst) == expected
        });
    }
    w.cond.acquire();
    assert_eq!(w.cond.notify_all(), Ok(M - expected));
    assert_eq!(w.cond.notify_all(), Ok(0));
    assert_eq!(w.cond.notify(3), Ok(0));
    w.cond.release().unwrap();
    assert!(join_all(tasks).into_iter().all(|notified| notified));
    assert_eq!(w.woken.load(Ordering::SeqCst), M);
}

#[test]
fn notify_n_wakes_exactly_n_over_rlock() {
    notify_wakes_exactly_n(Condition::new());
}

#[test]
fn notify_n_wakes_exactly_n_over_lock() {
    notify_wakes_exactly_n(Condition::with_lock(Lock::new()));
}

#[test]
fn notify_more_than_waiting_wakes_all() {
    let (w, tasks) = start_waiters(Condition::new(), 3);
    w.cond.acquire();
    assert_eq!(w.cond.notify(10), Ok(3));
    w.cond.release().unwrap();
    assert!(join_all(tasks).into_iter().all(|n| n));
}

#[test]
fn notify_all_wakes_everyone() {
    let (w, tasks) = start_waiters(Condition::with_lock(Lock::new()), 8);
    w.cond.acquire();
    assert_eq!(w.cond.notify_all(), Ok(8));
    w.cond.release().unwrap();
    assert!(join_all(tasks).into_iter().all(|n| n));
}

#[test]
fn notify_order_is_fifo() {
    const M: usize = 5;
    let cond = Arc::new(Condition::new());
    let order = Arc::new(tress::Mutex::new(Vec::new()));
    let queued = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..M {
        let (c, o, q) = (Arc::clone(&cond), Arc::clone(&order), Arc::clone(&queued));
        tasks.push(spawn(move || {
            c.acquire();
            q.fetch_add(1, Ordering::SeqCst);
            assert!(c.wait_timeout(BOUND).unwrap());
            o.lock().push(i);
            c.release().unwrap();
        }));
        // Queue them one at a time, in order.
        wait_until("waiter i to queue", || {
            cond.acquire();
            let n = queued.load(Ordering::SeqCst);
            cond.release().unwrap();
            n == i + 1
        });
    }
    for i in 0..M {
        cond.acquire();
        assert_eq!(cond.notify(1), Ok(1));
        cond.release().unwrap();
        wait_until("the oldest waiter to wake", || order.lock().len() == i + 1);
    }
    join_all(tasks);
    assert_eq!(*order.lock(), (0..M).collect::<Vec<_>>());
}

#[test]
fn wait_queue_is_fifo_and_counts() {
    let q = WaitQueue::new();
    assert!(q.is_empty());
    assert_eq!(q.notify(1), 0);
    let t1 = q.enqueue();
    let t2 = q.enqueue();
    let t3 = q.enqueue();
    assert_eq!(q.len(), 3);
    // The oldest ticket gets the notification.
    assert_eq!(q.notify(1), 1);
    assert!(
        !t2.wait_timeout(Duration::from_millis(5)),
        "t2 not notified"
    );
    assert!(t1.wait_timeout(Duration::ZERO), "t1 notified");
    assert_eq!(q.len(), 1);
    assert_eq!(q.notify_all(), 1);
    assert!(t3.wait());
    assert!(q.is_empty());
}

#[test]
fn wait_queue_timeout_and_drop_withdraw_the_ticket() {
    let q = WaitQueue::new();
    let a = q.enqueue();
    let b = q.enqueue();
    let c = q.enqueue();
    let start = Instant::now();
    assert!(!a.wait_timeout(Duration::from_millis(10)));
    assert_timed(start.elapsed(), Duration::from_millis(10));
    assert_eq!(q.len(), 2, "the timed-out ticket left");
    drop(b);
    assert_eq!(q.len(), 1, "the dropped ticket left");
    // The notification goes to the one real waiter left.
    assert_eq!(q.notify(1), 1);
    assert!(c.wait_timeout(Duration::ZERO));
    assert_eq!(q.notify(1), 0);

    // Interrupted: the ticket leaves too.
    let d = q.enqueue();
    let e = q.enqueue();
    let mut probe = Probe::failing_after(2, Duration::from_millis(1));
    assert_eq!(d.wait_with(None, &mut probe), Err(Stop(2)));
    assert_eq!(q.len(), 1);
    assert_eq!(q.notify(1), 1);
    assert_eq!(e.wait_with(None, &mut Uninterruptible), Ok(true));
}

#[test]
fn timed_out_waiter_does_not_swallow_a_later_notify() {
    let cond = Arc::new(Condition::new());
    let c = Arc::clone(&cond);
    let timed = spawn(move || {
        c.acquire();
        let start = Instant::now();
        let r = c.wait_timeout(Duration::from_millis(30)).unwrap();
        c.release().unwrap();
        (r, start.elapsed())
    });
    let c = Arc::clone(&cond);
    let patient = spawn(move || {
        c.acquire();
        let r = c.wait_timeout(BOUND).unwrap();
        c.release().unwrap();
        r
    });
    let (notified, took) = timed.join();
    assert!(!notified);
    assert_timed(took, Duration::from_millis(30));
    // `patient` may not have queued yet; notify until it has been woken,
    // checking that no notification went to the departed waiter.
    let deadline = Instant::now() + BOUND;
    loop {
        cond.acquire();
        let n = cond.notify(1).unwrap();
        cond.release().unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(patient.join());
}

/// The contract of `Ticket::wait_with`: a ticket that times out either left
/// the queue unnotified or reports the notification it got. So the
/// notifications counted by `notify` equal the waits that returned `true`.
/// Hammers the moment where a notifier has popped a ticket that is timing
/// out.
#[test]
fn wait_queue_notifications_are_never_lost_to_timeouts() {
    const ROUNDS: usize = 20_000;
    let q = Arc::new(WaitQueue::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (q2, stop2) = (Arc::clone(&q), Arc::clone(&stop));
    let notifier = spawn(move || {
        let mut sent = 0;
        while !stop2.load(Ordering::Relaxed) {
            sent += q2.notify(1);
        }
        sent
    });
    let mut rng = Rng::new(7);
    let mut received = 0;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        let t = q.enqueue();
        if t.wait_timeout(Duration::from_micros(rng.below(40))) {
            received += 1;
        }
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = notifier.join();
    assert!(q.is_empty());
    assert_eq!(
        sent, received,
        "notify() counted {sent} wake-ups but only {received} waits saw one"
    );
}

#[test]
fn wait_for_predicate_and_timeout() {
    let cond = Arc::new(Condition::new());
    let value = Arc::new(AtomicU64::new(0));

    // Already true: no wait, no notify needed.
    cond.acquire();
    let mut calls = 0;
    assert_eq!(
        cond.wait_for(
            || {
                calls += 1;
                true
            },
            Some(Duration::ZERO)
        ),
        Ok(true)
    );
    assert_eq!(calls, 1);

    // Never true: returns false after the timeout.
    let start = Instant::now();
    assert_eq!(
        cond.wait_for(|| false, Some(Duration::from_millis(30))),
        Ok(false)
    );
    assert_timed(start.elapsed(), Duration::from_millis(30));
    cond.release().unwrap();

    // Becomes true after several notifications.
    let (c, v) = (Arc::clone(&cond), Arc::clone(&value));
    let setter = spawn(move || {
        for i in 1..=5 {
            std::thread::sleep(Duration::from_millis(2));
            c.acquire();
            v.store(i, Ordering::SeqCst);
            c.notify_all().unwrap();
            c.release().unwrap();
        }
    });
    cond.acquire();
    let mut calls = 0;
    let ok = cond
        .wait_for(
            || {
                calls += 1;
                value.load(Ordering::SeqCst) == 5
            },
            Some(BOUND),
        )
        .unwrap();
    assert!(ok);
    assert!(calls >= 2);
    assert!(cond.lock().is_owned());
    cond.release().unwrap();
    setter.join();

    // No timeout at all.
    let (c, v) = (Arc::clone(&cond), Arc::clone(&value));
    let setter = spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        c.acquire();
        v.store(6, Ordering::SeqCst);
        c.notify(1).unwrap();
        c.release().unwrap();
    });
    cond.acquire();
    assert_eq!(
        cond.wait_for(|| value.load(Ordering::SeqCst) == 6, None),
        Ok(true)
    );
    cond.release().unwrap();
    setter.join();
}

#[test]
fn not_owned_errors() {
    let cond = Condition::new();
    assert_eq!(cond.wait(), Err(NotOwned));
    assert_eq!(cond.wait_timeout(Duration::from_millis(1)), Err(NotOwned));
    assert_eq!(cond.wait_for(|| false, None), Err(NotOwned));
    assert_eq!(
        cond.wait_with(None, &mut Uninterruptible),
        Err(WaitError::NotOwned)
    );
    assert_eq!(cond.notify(1), Err(NotOwned));
    assert_eq!(cond.notify_all(), Err(NotOwned));
    assert_eq!(cond.release(), Err(NotOwned));

    // Held by another thread: an RLock knows its owner.
    let cond = Arc::new(Condition::new());
    cond.acquire();
    let c = Arc::clone(&cond);
    spawn(move || {
        assert_eq!(c.notify(1), Err(NotOwned));
        assert_eq!(c.notify_all(), Err(NotOwned));
        assert_eq!(c.wait_timeout(Duration::from_millis(1)), Err(NotOwned));
        assert_eq!(c.release(), Err(NotOwned));
    })
    .join();
    cond.release().unwrap();

    // An owner-less Lock: any thread may notify while it is held (CPython
    // checks only that the lock is locked).
    let cond = Arc::new(Condition::with_lock(Lock::new()));
    assert_eq!(cond.notify(1), Err(NotOwned));
    cond.acquire();
    let c = Arc::clone(&cond);
    spawn(move || c.notify(1)).join().unwrap();
    cond.release().unwrap();
    assert_eq!(cond.release(), Err(NotOwned));
}

#[test]
fn wait_over_rlock_releases_every_level() {
    let cond = Arc::new(Condition::new());
    cond.acquire();
    cond.acquire();
    assert_eq!(cond.lock().recursion_count(), 2);
    let c = Arc::clone(&cond);
    let notifier = spawn(move || {
        // Only possible if the wait released both levels.
        c.acquire();
        assert_eq!(c.lock().recursion_count(), 1);
        assert_eq!(c.notify(1), Ok(1));
        c.release().unwrap();
    });
    assert_eq!(cond.wait_timeout(BOUND), Ok(true));
    notifier.join();
    assert_eq!(cond.lock().recursion_count(), 2);
    assert!(cond.lock().is_owned());
    cond.release().unwrap();
    cond.release().unwrap();
    assert!(!cond.lock().is_locked());
}

#[test]
fn two_conditions_share_one_lock() {
    let lock = Arc::new(Lock::new());
    let a = Arc::new(Condition::with_lock(Arc::clone(&lock)));
    let b = Arc::new(Condition::with_lock(Arc::clone(&lock)));
    let (a2, b2) = (Arc::clone(&a), Arc::clone(&b));
    let waiter_a = spawn(move || {
        a2.acquire();
        let r = a2.wait_timeout(BOUND).unwrap();
        a2.release().unwrap();
        r
    });
    let waiter_b = spawn(move || {
        b2.acquire();
        let r = b2.wait_timeout(Duration::from_millis(50)).unwrap();
        b2.release().unwrap();
        r
    });
    // Only `a` gets notified; `b`'s waiter times out.
    let deadline = Instant::now() + BOUND;
    loop {
        lock.acquire();
        let n = a.notify(1).unwrap();
        lock.release().unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(waiter_a.join());
    assert!(!waiter_b.join());
    assert!(!lock.is_locked());
}

fn interrupted_wait_reholds<L: CondLock>(cond: &Condition<L>, held: impl Fn(&L) -> bool) {
    let mut probe = Probe::failing_after(3, Duration::from_millis(1));
    let start = Instant::now();
    assert_eq!(
        cond.wait_with(None, &mut probe),
        Err(WaitError::Interrupted(Stop(3)))
    );
    assert!(start.elapsed() >= Duration::from_millis(3));
    assert!(held(cond.lock()));
    // The withdrawn ticket takes no notification.
    assert_eq!(cond.notify(1), Ok(0));
    // Timed out through the interruptible form.
    let start = Instant::now();
    let d = Duration::from_millis(10);
    assert_eq!(
        cond.wait_with(Some(start + d), &mut Uninterruptible),
        Ok(false)
    );
    assert_timed(start.elapsed(), d);
    assert!(held(cond.lock()));
}

#[test]
fn interrupted_wait_reholds_rlock() {
    let cond = Condition::new();
    cond.acquire();
    cond.acquire();
    interrupted_wait_reholds(&cond, |l: &RLock| l.recursion_count() == 2);
    cond.release().unwrap();
    cond.release().unwrap();
    assert!(!cond.lock().is_locked());
}

#[test]
fn interrupted_wait_reholds_lock() {
    let cond = Condition::with_lock(Lock::new());
    cond.acquire();
    interrupted_wait_reholds(&cond, Lock::is_locked);
    cond.release().unwrap();
    assert!(!cond.lock().is_locked());
}

#[test]
fn interrupted_wait_waits_for_the_lock_before_returning() {
    // The interrupt fires while another thread holds the lock: the waiter
    // returns only once it holds the lock again.
    let cond = Arc::new(Condition::with_lock(Lock::new()));
    let c = Arc::clone(&cond);
    let probe = Probe {
        slice: Some(Duration::from_millis(1)),
        ..Probe::new()
    };
    let counts = probe.counts();
    let waiter = spawn(move || {
        let mut probe = probe;
        c.acquire();
        let r = c.wait_with(None, &mut probe);
        let held = c.lock().is_locked();
        c.release().unwrap();
        r.map_err(|e| match e {
            WaitError::Interrupted(Stop(_)) => "interrupted",
            WaitError::NotOwned => "not owned",
        })
        .map(|notified| (notified, held))
    });
    wait_until("the waiter to check once", || counts.checks() > 0);
    cond.acquire();
    counts.abort.store(true, Ordering::SeqCst);
    let passed = counts.checks();
    wait_until("the failing check", || counts.checks() > passed);
    stays("the waiter waits for the lock", || !waiter.is_finished());
    cond.release().unwrap();
    assert_eq!(waiter.join(), Err("interrupted"));
    assert!(!cond.lock().is_locked());
}

/// A bounded queue in Python's style: one lock, two conditions.
struct Channel {
    /// The items; locked only while `lock` is held, so it never contends.
    items: tress::Mutex<VecDeque<u64>>,
    /// Guards `items` for the conditions.
    lock: Arc<Lock>,
    /// Signalled when an item was added.
    not_empty: Condition<Arc<Lock>>,
    /// Signalled when an item was taken.
    not_full: Condition<Arc<Lock>>,
    /// Capacity.
    cap: usize,
}

impl Channel {
    fn new(cap: usize) -> Self {
        let lock = Arc::new(Lock::new());
        Self {
            items: tress::Mutex::new(VecDeque::new()),
            not_empty: Condition::with_lock(Arc::clone(&lock)),
            not_full: Condition::with_lock(Arc::clone(&lock)),
            lock,
            cap,
        }
    }

    fn put(&self, v: u64, deadline: Instant) {
        self.lock.acquire();
        let full = || self.items.lock().len() >= self.cap;
        while full() {
            assert!(Instant::now() < deadline, "put timed out");
            self.not_full
                .wait_timeout(Duration::from_millis(100))
                .unwrap();
        }
        self.items.lock().push_back(v);
        self.not_empty.notify(1).unwrap();
        self.lock.release().unwrap();
    }

    fn get(&self, deadline: Instant) -> u64 {
        self.lock.acquire();
        let ok = self
            .not_empty
            .wait_for(
                || !self.items.lock().is_empty(),
                Some(deadline.saturating_duration_since(Instant::now())),
            )
            .unwrap();
        assert!(ok, "get timed out");
        let v = self.items.lock().pop_front().unwrap();
        self.not_full.notify(1).unwrap();
        self.lock.release().unwrap();
        v
    }
}

#[test]
fn stress_producer_consumer_exactly_once() {
    const ITEMS: u64 = 200_000;
    const PRODUCERS: u64 = 2;
    const CONSUMERS: usize = 2;
    const DONE: u64 = u64::MAX;
    let ch = Arc::new(Channel::new(64));
    let deadline = Instant::now() + Duration::from_secs(30);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let ch = Arc::clone(&ch);
            spawn(move || {
                let mut i = p;
                while i < ITEMS {
                    ch.put(i, deadline);
                    i += PRODUCERS;
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let ch = Arc::clone(&ch);
            spawn(move || {
                let mut got = Vec::new();
                let mut last = [None::<u64>; PRODUCERS as usize];
                loop {
                    let v = ch.get(deadline);
                    if v == DONE {
                        return got;
                    }
                    // FIFO: each producer's items arrive in order.
                    let p = (v % PRODUCERS) as usize;
                    assert!(last[p].is_none_or(|l| l < v), "out of order");
                    last[p] = Some(v);
                    got.push(v);
                }
            })
        })
        .collect();
    join_all(producers);
    for _ in 0..CONSUMERS {
        ch.put(DONE, deadline);
    }
    let mut seen = vec![false; ITEMS as usize];
    let mut total = 0;
    for got in join_all(consumers) {
        for v in got {
            assert!(!std::mem::replace(&mut seen[v as usize], true), "{v} twice");
            total += 1;
        }
    }
    assert_eq!(total, ITEMS);
    assert!(ch.items.lock().is_empty());
    assert!(!ch.lock.is_locked());
}

/// Several threads waiting with random timeouts and notifying random counts
/// through one condition: every notification `notify` counted is received
/// by exactly one wait that returns `true`, and the lock stays consistent.
#[test]
fn stress_mixed_waits_and_notifies() {
    const THREADS: u64 = 4;
    let cond = Arc::new(Condition::new());
    let sent = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + Duration::from_millis(1500);
    let tasks: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cond, sent, received) =
                (Arc::clone(&cond), Arc::clone(&sent), Arc::clone(&received));
            spawn(move || {
                let mut rng = Rng::new(t + 1);
                let mut ops = 0;
                while Instant::now() < end {
                    ops += 1;
                    cond.acquire();
                    if rng.below(4) == 0 {
                        // Reenter sometimes: the wait must release both.
                        cond.acquire();
                    }
                    let depth = cond.lock().recursion_count();
                    match rng.below(6) {
                        0..=2 => {
                            let d = Duration::from_micros(rng.below(2000));
                            if cond.wait_timeout(d).unwrap() {
                                received.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        3 => {
                            let k = rng.below(3) as usize;
                            sent.fetch_add(cond.notify(k).unwrap(), Ordering::SeqCst);
                        }
                        4 => {
                            sent.fetch_add(cond.notify_all().unwrap(), Ordering::SeqCst);
                        }
                        _ => {
                            let mut probe = Probe::failing_after(1, Duration::from_micros(300));
                            match cond.wait_with(None, &mut probe) {
                                // Notified before the slice ended.
                                Ok(true) => {
                                    received.fetch_add(1, Ordering::SeqCst);
                                }
                                // An interrupt may consume a notification
                                // that raced with it (documented).
                                Err(WaitError::Interrupted(Stop(n))) => assert_eq!(n, 1),
                                other => panic!("{other:?}"),
                            }
                        }
                    }
                    assert_eq!(cond.lock().recursion_count(), depth);
                    for _ in 0..depth {
                        cond.release().unwrap();
                    }
                }
                ops
            })
        })
        .collect();
    let ops: u64 = join_all(tasks).into_iter().sum();
    assert!(ops > 0);
    assert!(!cond.lock().is_locked());
    cond.acquire();
    assert_eq!(cond.notify_all(), Ok(0), "no ticket left behind");
    cond.release().unwrap();
    let (s, r) = (sent.load(Ordering::SeqCst), received.load(Ordering::SeqCst));
    assert!(r <= s, "received {r} > sent {s}");
}

#[test]
fn deferred_notifications_wake_on_flush_and_never_before() {
    // A notification is deferred only for a waiter already asleep on its
    // cell; one that was not yet asleep just sees it. Retry until a run
    // catches the waiter asleep (the WakeList then holds its wake-up).
    let mut deferred_runs = 0;
    for _ in 0..10 {
        let queue = Arc::new(WaitQueue::new());
        let wakes = tress::WakeList::new();
        let returned = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let (queue, returned) = (Arc::clone(&queue), Arc::clone(&returned));
            std::thread::spawn(move || {
                let ticket = queue.enqueue();
                tx.send(()).unwrap();
                let got = ticket.wait_timeout(Duration::from_secs(10));
                returned.store(true, Ordering::SeqCst);
                got
            })
        };
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(queue.notify_deferred(1, &wakes, || true), 1);
        if wakes.is_pending() {
            deferred_runs += 1;
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !returned.load(Ordering::SeqCst),
                "a deferred waiter woke before the flush"
            );
            wakes.flush();
        }
        assert!(waiter.join().unwrap(), "the waiter saw its notification");
        if deferred_runs > 0 {
            break;
        }
    }
    assert!(
        deferred_runs > 0,
        "the waiter was never caught asleep in 10 runs"
    );
}

#[test]
fn deferred_notification_with_the_lock_already_free_wakes_at_once() {
    let queue = Arc::new(WaitQueue::new());
    let wakes = tress::WakeList::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let queue = Arc::clone(&queue);
        std::thread::spawn(move || {
            let ticket = queue.enqueue();
            tx.send(()).unwrap();
            ticket.wait_timeout(Duration::from_secs(10))
        })
    };
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // The lock was released by someone else meanwhile: notify wakes itself.
    assert_eq!(queue.notify_all_deferred(&wakes, || false), 1);
    assert!(waiter.join().unwrap());
}
