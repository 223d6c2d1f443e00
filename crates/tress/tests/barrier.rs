//! `Barrier`: indices per cycle, the action, breaking by an action error or
//! a timeout, abort/reset (mirroring CPython's `lock_tests.BarrierTests`),
//! and interrupted waits that leave the barrier intact.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Probe, Stop, assert_timed, join_all, spawn, stays, wait_until};
use tress::{Barrier, BarrierError, BrokenBarrier, Uninterruptible, current_thread_id};

/// CPython's `BarrierTests.N`.
const N: usize = 5;

/// Runs `f(thread index)` on `n` threads and returns their results in order.
fn run_threads<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let tasks = (0..n)
        .map(|i| {
            let f = Arc::clone(&f);
            spawn(move || f(i))
        })
        .collect();
    join_all(tasks)
}

#[test]
fn single_party_never_blocks() {
    let b = Barrier::new(1);
    assert_eq!(b.parties(), 1);
    for _ in 0..3 {
        assert_eq!(b.wait(), Ok(0));
        assert_eq!(b.wait_timeout(Duration::ZERO), Ok(0));
    }
    assert_eq!(b.n_waiting(), 0);
    assert!(!b.is_broken());
}

#[test]
#[should_panic(expected = "at least one party")]
fn zero_parties_panics() {
    let _ = Barrier::new(0);
}

#[test]
fn indices_cover_each_cycle_and_action_runs_once_per_cycle() {
    const CYCLES: usize = 300;
    // seen[cycle * N + index] counts the threads given `index` in `cycle`.
    let seen: Arc<Vec<AtomicUsize>> = Arc::new((0..CYCLES * N).map(|_| 0.into()).collect());
    let runs = Arc::new(AtomicUsize::new(0));
    // The thread that ran each cycle's action.
    let runners: Arc<Vec<AtomicUsize>> = Arc::new((0..CYCLES).map(|_| 0.into()).collect());
    let b = {
        let (runs, runners) = (Arc::clone(&runs), Arc::clone(&runners));
        Arc::new(Barrier::with_action(N, move || {
            let cycle = runs.fetch_add(1, Ordering::SeqCst);
            runners[cycle].store(current_thread_id(), Ordering::SeqCst);
        }))
    };
    assert_eq!(b.parties(), N);
    let (seen2, runs2, runners2, b2) = (
        Arc::clone(&seen),
        Arc::clone(&runs),
        Arc::clone(&runners),
        Arc::clone(&b),
    );
    run_threads(N, move |_| {
        for cycle in 0..CYCLES {
            let i = b2.wait_timeout(common::BOUND).unwrap();
            assert!(i < N);
            seen2[cycle * N + i].fetch_add(1, Ordering::SeqCst);
            // The action ran before anyone was released from this cycle,
            // and the next cannot run before this thread arrives again.
            assert_eq!(runs2.load(Ordering::SeqCst), cycle + 1);
            if i == N - 1 {
                // The last to arrive ran it.
                assert_eq!(runners2[cycle].load(Ordering::SeqCst), current_thread_id());
            }
        }
    });
    assert!(seen.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    assert_eq!(runs.load(Ordering::SeqCst), CYCLES);
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn n_waiting_counts_filling_threads() {
    let b = Arc::new(Barrier::new(3));
    let b1 = Arc::clone(&b);
    let t1 = spawn(move || b1.wait_timeout(common::BOUND));
    wait_until("one waiter", || b.n_waiting() == 1);
    let b2 = Arc::clone(&b);
    let t2 = spawn(move || b2.wait_timeout(common::BOUND));
    wait_until("two waiters", || b.n_waiting() == 2);
    stays("the barrier holds them", || {
        !t1.is_finished() && !t2.is_finished()
    });
    let i = b.wait().unwrap();
    let mut all = vec![i, t1.join().unwrap(), t2.join().unwrap()];
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2]);
    assert_eq!(b.n_waiting(), 0);
}

/// CPython `test_action_exception`, through `wait_with_action`: the failing
/// action's thread gets the error, the others `Broken`.
#[test]
fn action_error_breaks_the_barrier() {
    let b = Arc::new(Barrier::new(N));
    let b2 = Arc::clone(&b);
    let results = run_threads(N, move |_| {
        b2.wait_with_action(
            Some(Instant::now() + common::BOUND),
            &mut Uninterruptible,
            Some(|| Err::<(), _>("boom")),
        )
    });
    let actions = results
        .iter()
        .filter(|r| **r == Err(BarrierError::Action("boom")))
        .count();
    let broken = results
        .iter()
        .filter(|r| **r == Err(BarrierError::Broken))
        .count();
    assert_eq!((actions, broken), (1, N - 1), "{results:?}");
    assert!(b.is_broken());
    assert_eq!(b.wait(), Err(BrokenBarrier));
    b.reset();
    assert!(!b.is_broken());
    // Usable again.
    let b2 = Arc::clone(&b);
    let mut indices = run_threads(N, move |_| b2.wait_timeout(common::BOUND).unwrap());
    indices.sort_unstable();
    assert_eq!(indices, (0..N).collect::<Vec<_>>());
}

#[test]
fn successful_custom_action_runs_once() {
    let b = Arc::new(Barrier::new(3));
    let runs = Arc::new(AtomicUsize::new(0));
    let (b2, runs2) = (Arc::clone(&b), Arc::clone(&runs));
    let results = run_threads(3, move |_| {
        b2.wait_with_action(
            None,
            &mut Uninterruptible,
            Some(|| {
                runs2.fetch_add(1, Ordering::SeqCst);
                Ok::<(), ()>(())
            }),
        )
    });
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A Rust action that panics must break the barrier like CPython's action
/// that raises: the other parties get `Broken` instead of waiting forever,
/// and `abort`/`reset` from other threads do not hang.
#[test]
fn action_panic_breaks_the_barrier() {
    let b = Arc::new(Barrier::with_action(2, || panic!("action failed")));
    let b2 = Arc::clone(&b);
    let other = spawn(move || b2.wait_timeout(Duration::from_millis(200)));
    wait_until("the other party to wait", || b.n_waiting() == 1);
    let r = panic::catch_unwind(AssertUnwindSafe(|| b.wait()));
    assert!(
        r.is_err(),
        "the action's panic propagates to the last arrival"
    );
    assert_eq!(
        other.join_within(Duration::from_secs(2)),
        Err(BrokenBarrier),
        "the other party must see a broken barrier"
    );
    assert!(b.is_broken());
    let b3 = Arc::clone(&b);
    spawn(move || b3.reset()).join_within(Duration::from_secs(2));
    assert!(!b.is_broken());
}

/// CPython `test_timeout`: a wait that times out breaks the barrier.
#[test]
fn timeout_breaks_the_barrier() {
    let b = Arc::new(Barrier::new(3));
    let b1 = Arc::clone(&b);
    let patient = spawn(move || b1.wait());
    wait_until("one waiter", || b.n_waiting() == 1);
    let start = Instant::now();
    let d = Duration::from_millis(30);
    assert_eq!(b.wait_timeout(d), Err(BrokenBarrier));
    assert_timed(start.elapsed(), d);
    assert_eq!(patient.join(), Err(BrokenBarrier));
    assert!(b.is_broken());
    assert_eq!(b.wait_timeout(Duration::from_secs(1)), Err(BrokenBarrier));
    // Through the general form, with a deadline.
    b.reset();
    let start = Instant::now();
    assert_eq!(
        b.wait_with(Some(start + d), &mut Uninterruptible),
        Err(BarrierError::Broken)
    );
    assert_timed(start.elapsed(), d);
    assert!(b.is_broken());
}

/// CPython `test_default_timeout` (our waits take the timeout explicitly):
/// one thread is late to the second rendezvous, so the others' timed waits
/// break the barrier and every thread sees `Broken`.
#[test]
fn late_party_breaks_timed_waits() {
    let b = Arc::new(Barrier::new(N));
    let b2 = Arc::clone(&b);
    let results = run_threads(N, move |_| {
        let i = b2.wait_timeout(common::BOUND)?;
        if i == N / 2 {
            std::thread::sleep(Duration::from_millis(300));
        }
        b2.wait_timeout(Duration::from_millis(100))
    });
    assert!(
        results.iter().all(|r| *r == Err(BrokenBarrier)),
        "{results:?}"
    );
    assert!(b.is_broken());
}

/// CPython `test_abort`.
#[test]
fn abort() {
    let b = Arc::new(Barrier::new(N));
    let results1 = Arc::new(AtomicUsize::new(0));
    let results2 = Arc::new(AtomicUsize::new(0));
    let (b2, r1, r2) = (Arc::clone(&b), Arc::clone(&results1), Arc::clone(&results2));
    run_threads(N, move |_| {
        let r = b2.wait_timeout(common::BOUND).and_then(|i| {
            if i == N / 2 {
                b2.abort();
                return Ok(false);
            }
            b2.wait_timeout(common::BOUND).map(|_| true)
        });
        match r {
            Ok(true) => r1.fetch_add(1, Ordering::SeqCst),
            Ok(false) => 0,
            Err(BrokenBarrier) => r2.fetch_add(1, Ordering::SeqCst),
        };
    });
    assert_eq!(results1.load(Ordering::SeqCst), 0);
    assert_eq!(results2.load(Ordering::SeqCst), N - 1);
    assert!(b.is_broken());
}

/// CPython `test_reset`.
#[test]
fn reset() {
    let b = Arc::new(Barrier::new(N));
    let results1 = Arc::new(AtomicUsize::new(0));
    let results2 = Arc::new(AtomicUsize::new(0));
    let results3 = Arc::new(AtomicUsize::new(0));
    let (b2, r1, r2, r3) = (
        Arc::clone(&b),
        Arc::clone(&results1),
        Arc::clone(&results2),
        Arc::clone(&results3),
    );
    run_threads(N, move |_| {
        let i = b2.wait_timeout(common::BOUND).unwrap();
        if i == N / 2 {
            // Wait until the other threads are all in the barrier.
            wait_until("the others to wait", || b2.n_waiting() == N - 1);
            b2.reset();
        } else {
            match b2.wait_timeout(common::BOUND) {
                Ok(_) => r1.fetch_add(1, Ordering::SeqCst),
                Err(BrokenBarrier) => r2.fetch_add(1, Ordering::SeqCst),
            };
        }
        // Now, pass the barrier again.
        b2.wait_timeout(common::BOUND).unwrap();
        r3.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(results1.load(Ordering::SeqCst), 0);
    assert_eq!(results2.load(Ordering::SeqCst), N - 1);
    assert_eq!(results3.load(Ordering::SeqCst), N);
    assert!(!b.is_broken());
}

/// CPython `test_abort_and_reset`.
#[test]
fn abort_and_reset() {
    let b = Arc::new(Barrier::new(N));
    let b2nd = Arc::new(Barrier::new(N));
    let results1 = Arc::new(AtomicUsize::new(0));
    let results2 = Arc::new(AtomicUsize::new(0));
    let results3 = Arc::new(AtomicUsize::new(0));
    let (b1, b2, r1, r2, r3) = (
        Arc::clone(&b),
        Arc::clone(&b2nd),
        Arc::clone(&results1),
        Arc::clone(&results2),
        Arc::clone(&results3),
    );
    run_threads(N, move |_| {
        let r = b1.wait_timeout(common::BOUND).and_then(|i| {
            if i == N / 2 {
                b1.abort();
                return Ok(false);
            }
            b1.wait_timeout(common::BOUND).map(|_| true)
        });
        match r {
            Ok(true) => r1.fetch_add(1, Ordering::SeqCst),
            Ok(false) => 0,
            Err(BrokenBarrier) => r2.fetch_add(1, Ordering::SeqCst),
        };
        // Synchronize and reset the barrier. Must synchronize first so that
        // everyone has left it when we reset, and after so that no one
        // enters it before the reset.
        if b2.wait_timeout(common::BOUND).unwrap() == N / 2 {
            b1.reset();
        }
        b2.wait_timeout(common::BOUND).unwrap();
        b1.wait_timeout(common::BOUND).unwrap();
        r3.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(results1.load(Ordering::SeqCst), 0);
    assert_eq!(results2.load(Ordering::SeqCst), N - 1);
    assert_eq!(results3.load(Ordering::SeqCst), N);
}

#[test]
fn reset_of_idle_barrier_and_abort_without_waiters() {
    let b = Barrier::new(2);
    b.reset();
    assert!(!b.is_broken());
    b.abort();
    assert!(b.is_broken());
    assert_eq!(b.wait(), Err(BrokenBarrier));
    b.reset();
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn abort_and_reset_from_inside_the_action() {
    // tress deviation from CPython (which deadlocks): the action may break
    // or reset its own barrier, and every party then sees `Broken`.
    for reset in [false, true] {
        let b = Arc::new(Barrier::new(3));
        let b2 = Arc::clone(&b);
        let results = run_threads(3, move |_| {
            let b3 = Arc::clone(&b2);
            b2.wait_with_action(
                Some(Instant::now() + common::BOUND),
                &mut Uninterruptible,
                Some(move || {
                    if reset {
                        b3.reset()
                    } else {
                        b3.abort()
                    }
                    Ok::<(), ()>(())
                }),
            )
        });
        assert!(
            results.iter().all(|r| *r == Err(BarrierError::Broken)),
            "{results:?}"
        );
        assert_eq!(b.is_broken(), !reset);
        b.reset();
        let b2 = Arc::clone(&b);
        let mut indices = run_threads(3, move |_| b2.wait_timeout(common::BOUND).unwrap());
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2]);
    }
}

/// A party's wait, run on its own thread.
type Party = common::Task<Result<usize, BrokenBarrier>>;

/// Starts a 2-party barrier whose action bumps `progress` (to 1), sleeps
/// `d` and bumps it again (to 2); returns once the action runs, with the
/// party that waited first and the one running the action.
fn slow_action_cycle(d: Duration) -> (Arc<Barrier>, Arc<AtomicUsize>, Party, Party) {
    let progress = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&progress);
    let b = Arc::new(Barrier::with_action(2, move || {
        s.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(d);
        s.fetch_add(1, Ordering::SeqCst);
    }));
    let b1 = Arc::clone(&b);
    let first = spawn(move || b1.wait_timeout(common::BOUND));
    wait_until("one waiter", || b.n_waiting() == 1);
    let b2 = Arc::clone(&b);
    let releaser = spawn(move || b2.wait_timeout(common::BOUND));
    wait_until("the action to start", || {
        progress.load(Ordering::SeqCst) >= 1
    });
    (b, progress, first, releaser)
}

#[test]
fn abort_during_a_slow_action_waits_for_it() {
    let d = Duration::from_millis(50);
    let (b, progress, first, releaser) = slow_action_cycle(d);
    b.abort();
    assert_eq!(
        progress.load(Ordering::SeqCst),
        2,
        "abort waited for the action"
    );
    assert!(b.is_broken());
    // The action's thread was released before the abort took effect; the
    // first party may or may not have left before it.
    assert_eq!(releaser.join(), Ok(1));
    assert!(matches!(first.join(), Ok(0) | Err(BrokenBarrier)));
}

#[test]
fn interrupted_newcomer_during_the_action_leaves_the_cycle_intact() {
    // A third thread arrives while the action runs: it waits for the cycle
    // to drain, and interrupting that wait changes nothing.
    let (b, _progress, first, releaser) = slow_action_cycle(Duration::from_millis(60));
    let mut probe = Probe::failing_after(3, Duration::from_millis(1));
    assert_eq!(
        b.wait_with(None, &mut probe),
        Err(BarrierError::Interrupted(Stop(3)))
    );
    assert_eq!(releaser.join(), Ok(1));
    assert_eq!(first.join(), Ok(0));
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn interrupted_wait_leaves_the_barrier_intact() {
    let b = Arc::new(Barrier::new(3));
    let b1 = Arc::clone(&b);
    let patient = spawn(move || b1.wait_timeout(common::BOUND));
    wait_until("one waiter", || b.n_waiting() == 1);

    let mut probe = Probe::failing_after(3, Duration::from_millis(1));
    let start = Instant::now();
    assert_eq!(
        b.wait_with(None, &mut probe),
        Err(BarrierError::Interrupted(Stop(3)))
    );
    assert!(start.elapsed() >= Duration::from_millis(3));
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 1, "the interrupted party left");
    assert!(!patient.is_finished());

    // Two more parties complete the cycle with the patient one.
    let b2 = Arc::clone(&b);
    let second = spawn(move || b2.wait_timeout(common::BOUND));
    wait_until("two waiters", || b.n_waiting() == 2);
    let last = b.wait_timeout(common::BOUND).unwrap();
    assert_eq!(last, 2);
    assert!(patient.join().is_ok());
    assert!(second.join().is_ok());
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn interrupted_sole_waiter_leaves_the_barrier_empty() {
    let b = Arc::new(Barrier::new(2));
    let mut probe = Probe::failing_after(1, Duration::from_millis(1));
    assert_eq!(
        b.wait_with(None, &mut probe),
        Err(BarrierError::Interrupted(Stop(1)))
    );
    assert_eq!(b.n_waiting(), 0);
    let b1 = Arc::clone(&b);
    let t = spawn(move || b1.wait_timeout(common::BOUND));
    assert!(b.wait_timeout(common::BOUND).is_ok());
    assert!(t.join().is_ok());
}
