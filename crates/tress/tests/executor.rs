//! `tress::executor`: futures (states, waits with deadlines and
//! interrupts, results and errors, cancel while pending, done callbacks
//! exactly once), lazy workers, named threads, initializers that break the
//! pool, shutdown with and without waiting or cancelling, `map` with chunks,
//! stress runs checking every result in order, and the pool after `fork()`.
//!
//! Every wait is bounded: tasks block on channels with timeouts, threads
//! are joined through `common::spawn`, polls give up after `common::BOUND`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::{BOUND, Probe, Stop, spawn, wait_until};
use tress::executor::{Executor, FutureError, FutureState, SubmitError};

/// A task that blocks until released (or [`BOUND`] passes) and reports
/// when it started.
fn gate() -> (mpsc::Sender<()>, impl FnOnce() -> bool + Send + 'static) {
    let (tx, rx) = mpsc::channel::<()>();
    (tx, move || rx.recv_timeout(BOUND).is_ok())
}

/// The names of this process's threads that start with `prefix` (Linux:
/// `/proc/self/task/*/comm`, truncated to 15 bytes by the kernel).
#[cfg(target_os = "linux")]
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

// ---------------------------------------------------------------------------
// Futures

#[test]
fn submit_result_and_states() {
    let pool = Executor::with_workers(1);
    let (go, task) = gate();
    let started = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&started);
    let fut = pool
        .submit(move || {
            s.fetch_add(1, Ordering::SeqCst);
            task()
        })
        .unwrap();
    wait_until("the task to start", || started.load(Ordering::SeqCst) == 1);
    assert_eq!(fut.state(), FutureState::Running);
    assert!(fut.is_running() && !fut.is_done() && !fut.is_cancelled());
    assert!(!fut.wait_timeout(Duration::from_millis(20)));
    go.send(()).unwrap();
    assert!(fut.wait_deadline(Instant::now() + BOUND));
    assert_eq!(fut.state(), FutureState::Finished);
    assert_eq!(fut.result(), Ok(&true));
    assert_eq!(fut.result(), Ok(&true), "a result can be read again");
    assert_eq!(fut.into_result(), Ok(true));
}

#[test]
fn result_timeout_then_value() {
    let pool = Executor::with_workers(1);
    let (go, task) = gate();
    let fut = pool.submit(move || task().then_some(5)).unwrap();
    let start = Instant::now();
    let asked = Duration::from_millis(30);
    assert_eq!(fut.result_timeout(asked), Err(FutureError::Timeout));
    assert!(start.elapsed() >= asked, "returned early");
    assert_eq!(
        fut.result_deadline(Instant::now()),
        Err(FutureError::Timeout)
    );
    go.send(()).unwrap();
    assert_eq!(fut.result_timeout(BOUND), Ok(&Some(5)));
}

#[test]
fn interrupted_wait_leaves_the_future_alone() {
    let pool = Executor::with_workers(1);
    let (go, task) = gate();
    let fut = pool.submit(task).unwrap();
    let mut probe = Probe::failing_after(2, Duration::from_millis(5));
    let counts = probe.counts();
    let r = fut.result_with(Some(Instant::now() + BOUND), &mut probe);
    assert_eq!(r, Err(FutureError::Interrupted(Stop(2))));
    assert!(counts.slept(), "the call slept before the interrupt");
    assert_eq!(
        counts.sleeps.load(Ordering::SeqCst),
        counts.wakes.load(Ordering::SeqCst),
        "every before_sleep has its after_sleep"
    );
    assert!(!fut.is_done());
    go.send(()).unwrap();
    let mut probe = Probe::new();
    assert_eq!(fut.wait_with(None, &mut probe), Ok(true));
    assert_eq!(fut.into_result(), Ok(true));
}

#[test]
fn fallible_tasks_and_panics_fail_only_their_future() {
    let pool = Executor::with_workers(1);
    let bad = pool.submit_fallible(|| Err::<u8, _>("nope")).unwrap();
    let boom = pool.submit(|| -> u8 { panic!("boom {}", 7) }).unwrap();
    let ok = pool.submit(|| 3u8).unwrap();
    assert_eq!(bad.result(), Err(FutureError::Failed(&"nope")));
    match boom.result() {
        Err(FutureError::Panicked(p)) => assert_eq!(p.message(), "boom 7"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ok.into_result(), Ok(3));
    assert_eq!(pool.num_threads(), 1, "the panic did not kill the worker");
    match bad.into_result() {
        Err(FutureError::Failed(e)) => assert_eq!(e, "nope"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn cancel_only_while_pending() {
    let pool = Executor::with_workers(1);
    let (go, task) = gate();
    let busy = pool.submit(task).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    let queued = pool
        .submit(move || r.fetch_add(1, Ordering::SeqCst))
        .unwrap();
    wait_until("the first task to run", || busy.is_running());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let canceller = thread::current().id();
    queued.add_done_callback(move |f| {
        assert!(f.is_cancelled());
        assert_eq!(thread::current().id(), canceller, "the canceller runs it");
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(!busy.cancel(), "running: cannot cancel");
    assert!(queued.cancel());
    assert!(queued.cancel(), "cancelling again still says cancelled");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(queued.state(), FutureState::Cancelled);
    assert!(queued.wait());
    assert_eq!(queued.result(), Err(FutureError::Cancelled));
    go.send(()).unwrap();
    assert_eq!(busy.result_timeout(BOUND), Ok(&true));
    assert!(!busy.cancel(), "finished: cannot cancel");
    pool.shutdown(true, false);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a cancelled task never runs");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(queued.into_result(), Err(FutureError::Cancelled));
}

#[test]
fn callbacks_run_once_on_the_worker_or_at_once() {
    let pool = Executor::builder()
        .max_workers(1)
        .thread_name_prefix("cbw")
        .build()
        .unwrap();
    let (go, task) = gate();
    let fut = pool.submit(task).unwrap();
    let seen = Arc::new(tress::Mutex::new(Vec::new()));
    for i in 0..3 {
        let seen = Arc::clone(&seen);
        fut.add_done_callback(move |f| {
            assert_eq!(f.result(), Ok(&true), "the value is there for callbacks");
            let name = thread::current().name().unwrap_or("").to_owned();
            seen.lock().push((i, name));
        });
    }
    assert!(seen.lock().is_empty());
    go.send(()).unwrap();
    assert!(fut.wait_timeout(BOUND));
    // into_result waits for the callbacks, which read the value.
    let f2 = pool.submit(|| 1).unwrap();
    wait_until("callbacks", || seen.lock().len() == 3);
    let got = seen.lock().clone();
    assert_eq!(
        got,
        vec![
            (0, "cbw_0".into()),
            (1, "cbw_0".into()),
            (2, "cbw_0".into())
        ]
    );
    let here = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&here);
    fut.add_done_callback(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(
        here.load(Ordering::SeqCst),
        1,
        "added when done: runs at once"
    );
    assert_eq!(f2.into_result(), Ok(1));
    // A panicking callback is reported and does not stop the others.
    let f3 = pool.submit(|| 2).unwrap();
    f3.add_done_callback(|_| panic!("callback failure (expected in this test)"));
    let h = Arc::clone(&here);
    f3.add_done_callback(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(f3.into_result(), Ok(2));
    assert_eq!(here.load(Ordering::SeqCst), 2);
}

#[test]
fn callbacks_racing_completion_run_exactly_once() {
    let pool = Executor::with_workers(2);
    let calls = Arc::new(AtomicUsize::new(0));
    let n = 20_000;
    let mut futs = Vec::with_capacity(n);
    for i in 0..n {
        let fut = pool.submit(move || i).unwrap();
        let c = Arc::clone(&calls);
        fut.add_done_callback(move |f| {
            assert_eq!(f.result(), Ok(&i));
            c.fetch_add(1, Ordering::Relaxed);
        });
        futs.push(fut);
    }
    for (i, f) in futs.into_iter().enumerate() {
        assert_eq!(f.into_result(), Ok(i));
    }
    // into_result waits for each future's callbacks.
    assert_eq!(calls.load(Ordering::SeqCst), n);
}

#[test]
fn into_result_waits_for_the_callbacks() {
    let pool = Executor::with_workers(1);
    let (slow_go, slow) = gate();
    let done = Arc::new(AtomicUsize::new(0));
    let d = Arc::clone(&done);
    let (go, task) = gate();
    let fut = pool
        .submit(move || task().then(|| String::from("v")))
        .unwrap();
    fut.add_done_callback(move |f| {
        assert_eq!(f.result().map(Option::as_deref), Ok(Some("v")));
        slow();
        d.fetch_add(1, Ordering::SeqCst);
    });
    go.send(()).unwrap();
    assert!(fut.wait_timeout(BOUND), "waiters do not wait for callbacks");
    let t = spawn(move || fut.into_result());
    thread::sleep(Duration::from_millis(20));
    assert!(!t.is_finished(), "into_result waits while a callback runs");
    assert_eq!(done.load(Ordering::SeqCst), 0);
    slow_go.send(()).unwrap();
    assert_eq!(t.join(), Ok(Some(String::from("v"))));
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// Workers

#[test]
fn workers_start_lazily_and_are_reused() {
    let pool = Executor::with_workers(4);
    assert_eq!(pool.num_threads(), 0, "no thread before the first submit");
    for i in 0..50 {
        assert_eq!(pool.submit(move || i).unwrap().into_result(), Ok(i));
        // A finished future may be seen before its worker counts itself idle
        // again (as in CPython); reuse is promised for an idle worker.
        wait_until("the worker to be idle", || pool.idle_threads() == 1);
    }
    assert_eq!(pool.num_threads(), 1, "an idle worker is reused");
    // Blocked tasks need their own workers, up to max_workers.
    let barrier = Arc::new(Barrier::new(5));
    let futs: Vec<_> = (0..4)
        .map(|_| {
            let b = Arc::clone(&barrier);
            pool.submit(move || b.wait().is_leader()).unwrap()
        })
        .collect();
    let extra = pool.submit(|| 9).unwrap();
    assert_eq!(pool.num_threads(), 4, "never more than max_workers");
    assert!(!extra.wait_timeout(Duration::from_millis(20)));
    barrier.wait();
    for f in futs {
        assert!(f.wait_timeout(BOUND));
    }
    assert_eq!(extra.into_result(), Ok(9));
    assert_eq!(pool.max_workers(), 4);
}

#[test]
fn thread_names_carry_the_prefix() {
    let pool = Executor::builder()
        .max_workers(2)
        .thread_name_prefix("px")
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let names: Vec<_> = (0..2)
        .map(|_| {
            let b = Arc::clone(&barrier);
            pool.submit(move || {
                b.wait();
                thread::current().name().unwrap().to_owned()
            })
            .unwrap()
        })
        .collect();
    let mut names: Vec<String> = names
        .into_iter()
        .map(|f| f.into_result().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["px_0", "px_1"]);
    let default = Executor::with_workers(1);
    let name = default
        .submit(|| thread::current().name().unwrap().to_owned())
        .unwrap()
        .into_result()
        .unwrap();
    assert!(
        name.starts_with("ThreadPoolExecutor-") && name.ends_with("_0"),
        "{name}"
    );
}

#[test]
fn zero_workers_is_an_error() {
    let err = Executor::builder().max_workers(0).build().unwrap_err();
    assert_eq!(err.to_string(), "max_workers must be greater than 0");
}

#[test]
fn failing_initializer_breaks_the_pool() {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = tress::Mutex::new(rx);
    let pool = Executor::builder()
        .max_workers(1)
        .initializer(move || {
            // Hold the first task queued until the test says so.
            let _ = rx.lock().recv_timeout(BOUND);
            Err("no database")
        })
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..5)
        .map(|_| {
            let r = Arc::clone(&ran);
            pool.submit(move || r.fetch_add(1, Ordering::SeqCst))
                .unwrap()
        })
        .collect();
    tx.send(()).unwrap();
    for f in &futs {
        match f.result_timeout(BOUND) {
            Err(FutureError::Broken(b)) => {
                assert_eq!(
                    b.message(),
                    "A thread initializer failed, the thread pool is not usable anymore: no database"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(f.state(), FutureState::Finished);
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(pool.broken().is_some());
    match pool.submit(|| 1) {
        Err(SubmitError::Broken(f, b)) => {
            assert!(b.to_string().contains("no database"));
            assert_eq!(f(), 1, "the task comes back");
        }
        other => panic!("unexpected {other:?}"),
    }
    pool.shutdown(true, false);
}

#[test]
fn panicking_initializer_breaks_the_pool() {
    let pool = Executor::builder()
        .max_workers(2)
        .initializer(|| -> Result<(), String> { panic!("init exploded") })
        .build()
        .unwrap();
    let f = pool.submit(|| 1).unwrap();
    match f.result_timeout(BOUND) {
        Err(FutureError::Broken(b)) => assert!(b.message().contains("init exploded"), "{b}"),
        other => panic!("unexpected {other:?}"),
    }
    wait_until("submits to fail", || pool.submit(|| 1).is_err());
}

// ---------------------------------------------------------------------------
// Shutdown

#[test]
fn submit_after_shutdown_hands_the_task_back() {
    let pool = Executor::with_workers(2);
    assert_eq!(pool.submit(|| 1).unwrap().into_result(), Ok(1));
    pool.shutdown(true, false);
    assert!(pool.is_shutdown());
    let err = pool.submit(|| 41).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot schedule new futures after shutdown"
    );
    assert!(matches!(err, SubmitError::ShutDown(_)));
    assert_eq!(err.into_inner()() + 1, 42);
    assert!(pool.map(0..3, |x| x, 1).is_err());
    pool.shutdown(true, true); // again: harmless
}

#[test]
fn shutdown_without_cancel_runs_every_queued_task() {
    let pool = Executor::with_workers(2);
    let count = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..1000)
        .map(|i| {
            let c = Arc::clone(&count);
            pool.submit(move || {
                c.fetch_add(1, Ordering::Relaxed);
                i
            })
            .unwrap()
        })
        .collect();
    let t = spawn(move || {
        pool.shutdown(true, false);
        pool
    });
    let pool = t.join();
    assert_eq!(count.load(Ordering::SeqCst), 1000);
    for (i, f) in futs.into_iter().enumerate() {
        assert_eq!(f.into_result(), Ok(i));
    }
    drop(pool);
}

#[test]
fn shutdown_cancels_exactly_the_pending() {
    let pool = Executor::with_workers(2);
    let (go1, t1) = gate();
    let (go2, t2) = gate();
    let running = [pool.submit(t1).unwrap(), pool.submit(t2).unwrap()];
    wait_until("both workers busy", || {
        running.iter().all(|f| f.is_running())
    });
    let ran = Arc::new(AtomicUsize::new(0));
    let cancelled_cb = Arc::new(AtomicUsize::new(0));
    let pending: Vec<_> = (0..100)
        .map(|_| {
            let r = Arc::clone(&ran);
            let f = pool
                .submit(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            let c = Arc::clone(&cancelled_cb);
            f.add_done_callback(move |f| {
                if f.is_cancelled() {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            });
            f
        })
        .collect();
    let pool = Arc::new(pool);
    let p = Arc::clone(&pool);
    let shut = spawn(move || p.shutdown(true, true));
    wait_until("the pending futures to be cancelled", || {
        pending.iter().all(|f| f.is_cancelled())
    });
    assert!(
        !shut.is_finished(),
        "shutdown(wait) waits for the running tasks"
    );
    assert!(
        running.iter().all(|f| f.is_running()),
        "running tasks untouched"
    );
    go1.send(()).unwrap();
    go2.send(()).unwrap();
    shut.join();
    for f in &running {
        assert_eq!(f.result(), Ok(&true));
    }
    assert_eq!(
        pending
            .iter()
            .filter(|f| f.result() == Err(FutureError::Cancelled))
            .count(),
        100
    );
    assert_eq!(cancelled_cb.load(Ordering::SeqCst), 100);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn no_threads_left_after_shutdown_wait() {
    let pool = Executor::builder()
        .max_workers(6)
        .thread_name_prefix("leakchk")
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(7));
    let futs: Vec<_> = (0..6)
        .map(|_| {
            let b = Arc::clone(&barrier);
            pool.submit(move || {
                b.wait();
            })
            .unwrap()
        })
        .collect();
    barrier.wait();
    for f in futs {
        assert!(f.wait_timeout(BOUND));
    }
    assert_eq!(pool.num_threads(), 6);
    assert_eq!(threads_named("leakchk_"), 6);
    pool.shutdown(true, false);
    // joined; the kernel drops a joined thread's /proc entry a moment after
    // the join returns (the join wakes on the thread's exit, not its reaping)
    wait_until("every worker's /proc entry to go", || {
        threads_named("leakchk_") == 0
    });
}

#[test]
fn shutdown_from_a_worker_does_not_wait_for_itself() {
    let pool = Arc::new(Executor::with_workers(1));
    let p = Arc::clone(&pool);
    let (tx, rx) = mpsc::channel();
    pool.submit(move || {
        p.shutdown(true, false);
        tx.send(()).unwrap();
    })
    .unwrap();
    assert!(rx.recv_timeout(BOUND).is_ok());
}

// ---------------------------------------------------------------------------
// map

#[test]
fn map_yields_in_order_for_every_chunksize() {
    let pool = Executor::with_workers(3);
    for chunksize in [1, 2, 7, 100, 1000] {
        let out: Vec<u64> = pool
            .map(0..537u64, |x| x * 3, chunksize)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            out,
            (0..537u64).map(|x| x * 3).collect::<Vec<_>>(),
            "chunksize {chunksize}"
        );
    }
    assert_eq!(pool.map(Vec::<u8>::new(), |x| x, 1).unwrap().count(), 0);
}

#[test]
fn map_stops_at_the_first_failed_chunk() {
    let pool = Executor::with_workers(2);
    let mut it = pool
        .try_map(0..10u32, |x| if x == 5 { Err(x) } else { Ok(x) }, 2)
        .unwrap();
    let mut got = Vec::new();
    let mut err = None;
    for r in it.by_ref() {
        match r {
            Ok(x) => got.push(x),
            Err(e) => err = Some(e),
        }
    }
    assert_eq!(
        got,
        [0, 1, 2, 3],
        "the failing chunk [4, 5] yields no value"
    );
    assert_eq!(err, Some(FutureError::Failed(5)));
    assert!(it.next().is_none());
    let mut panics = pool.map(0..4u32, |x| assert!(x != 2, "two"), 1).unwrap();
    assert!(panics.next().unwrap().is_ok());
    assert!(panics.next().unwrap().is_ok());
    assert!(matches!(panics.next(), Some(Err(FutureError::Panicked(_)))));
    assert!(panics.next().is_none());
}

#[test]
fn map_next_with_times_out_then_resumes() {
    let pool = Executor::with_workers(1);
    let (go, task) = gate();
    let task = tress::Mutex::new(Some(task));
    let mut it = pool
        .map(
            0..3u32,
            move |x| {
                if x == 1 {
                    let t = task.lock().take();
                    assert!(t.is_some_and(|t| t()));
                }
                x
            },
            1,
        )
        .unwrap();
    let mut probe = Probe::new();
    assert_eq!(it.next_with(None, &mut probe), Some(Ok(0)));
    let d = Instant::now() + Duration::from_millis(20);
    assert_eq!(
        it.next_with(Some(d), &mut probe),
        Some(Err(FutureError::Timeout))
    );
    go.send(()).unwrap();
    assert_eq!(
        it.next_with(Some(Instant::now() + BOUND), &mut probe),
        Some(Ok(1))
    );
    assert_eq!(it.next(), Some(Ok(2)));
    assert_eq!(it.next(), None);
}

#[test]
fn dropping_a_map_cancels_what_did_not_start() {
    let pool = Executor::with_workers(1);
    let (go, task) = gate();
    let blocker = pool.submit(task).unwrap();
    wait_until("the blocker to run", || blocker.is_running());
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    let it = pool
        .map(
            0..100u32,
            move |x| {
                r.fetch_add(1, Ordering::SeqCst);
                x
            },
            10,
        )
        .unwrap();
    drop(it);
    go.send(()).unwrap();
    assert!(blocker.wait_timeout(BOUND));
    pool.shutdown(true, false);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// Stress

const STRESS: usize = 200_000;

#[test]
fn stress_submit_every_result_in_order() {
    let pool = Executor::with_workers(4);
    let futs: Vec<_> = (0..STRESS)
        .map(|i| pool.submit(move || i * 2).unwrap())
        .collect();
    let mut n = 0;
    for (i, f) in futs.into_iter().enumerate() {
        assert_eq!(f.into_result(), Ok(i * 2));
        n += 1;
    }
    assert_eq!(n, STRESS);
    pool.shutdown(true, false);
}

#[test]
fn stress_map_every_result_in_order() {
    let pool = Executor::with_workers(4);
    for chunksize in [1, 64] {
        let mut n = 0;
        for (i, r) in pool
            .map(0..STRESS, |x| x + 1, chunksize)
            .unwrap()
            .enumerate()
        {
            assert_eq!(r, Ok(i + 1));
            n += 1;
        }
        assert_eq!(n, STRESS, "chunksize {chunksize}");
    }
}

#[test]
fn stress_many_submitters_and_waiters() {
    let pool = Arc::new(Executor::with_workers(3));
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let pool = Arc::clone(&pool);
            spawn(move || {
                let futs: Vec<_> = (0..10_000usize)
                    .map(|i| pool.submit(move || (t, i)).unwrap())
                    .collect();
                futs.into_iter()
                    .enumerate()
                    .all(|(i, f)| f.into_result() == Ok((t, i)))
            })
        })
        .collect();
    for t in tasks {
        assert!(t.join());
    }
}

// ---------------------------------------------------------------------------
// Fork

/// In a forked child the pool is broken: submits fail, futures that were
/// not done never hang, and nothing waits for a parent thread.
#[cfg(target_os = "linux")]
#[test]
fn pool_after_fork_is_broken_and_nothing_hangs() {
    let pool = Executor::with_workers(1);
    let (go, task) = gate();
    let running = pool.submit(task).unwrap();
    wait_until("the task to run", || running.is_running());
    let queued = pool.submit(|| 1).unwrap();
    let done = pool.submit_fallible(|| Ok::<_, ()>(2));
    // SAFETY: the child only calls async-signal-safe-enough code of this
    // crate (atomics, futex, malloc, which glibc makes fork-safe) and
    // leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = (|| {
            if !matches!(running.result_timeout(BOUND), Err(FutureError::Broken(_))) {
                return 1;
            }
            if running.wait() {
                return 2;
            }
            if !matches!(pool.submit(|| 3), Err(SubmitError::Broken(..))) {
                return 3;
            }
            if !matches!(queued.result(), Err(FutureError::Broken(_))) {
                return 4;
            }
            pool.shutdown(true, true);
            5 * i32::from(done.is_err())
        })();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    let start = Instant::now();
    loop {
        // SAFETY: as above.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if start.elapsed() > BOUND {
            // SAFETY: `pid` is our child; it is reaped right after.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child hangs (killed)");
        }
        thread::sleep(Duration::from_millis(2));
    }
    assert!(libc::WIFEXITED(status), "child status {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child check failed");
    // The parent's pool is untouched.
    go.send(()).unwrap();
    assert_eq!(running.result_timeout(BOUND), Ok(&true));
    assert_eq!(queued.into_result(), Ok(1));
    assert_eq!(pool.submit(|| 4).unwrap().into_result(), Ok(4));
}
