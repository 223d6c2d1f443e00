//! `fork()` while parent threads wait in a `Queue` and a `SimpleQueue` and
//! one holds a queue's internal lock (inside a slow priority comparison):
//! in the child the first call forgets the parent's waiters and frees the
//! lock, so the child's own waiting threads get the items put for them
//! rather than a notification going to a thread that does not exist there.
//!
//! Its own test binary: the child must not inherit other tests' threads.

#![cfg(target_os = "linux")]

mod common;

use std::convert::Infallible;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{BOUND, Counts, Probe, Stop, spawn, wait_until};
use tress::queue::Priority;
use tress::{Queue, SimpleQueue};

/// `Queue::get_with` needs `I::Error: From<O::Error>`.
impl From<Infallible> for Stop {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// `a < b`, stalling while `hold` is set (bounded by [`BOUND`]), after
/// setting `inside`.
fn stalling(
    hold: Arc<AtomicBool>,
    inside: Arc<AtomicBool>,
) -> impl FnMut(&u32, &u32) -> Result<bool, Infallible> + Send {
    move |a, b| {
        if hold.load(Ordering::SeqCst) {
            inside.store(true, Ordering::SeqCst);
            let end = Instant::now() + BOUND;
            while hold.load(Ordering::SeqCst) && Instant::now() < end {
                thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(a < b)
    }
}

/// Runs `f(probe)` on a new thread in the child; returns its result
/// channel once the call sleeps.
fn child_waiter<T: Send + 'static>(
    f: impl FnOnce(&mut Probe) -> T + Send + 'static,
) -> mpsc::Receiver<T> {
    let probe = Probe::new();
    let counts: Arc<Counts> = probe.counts();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut probe = probe;
        let _ = tx.send(f(&mut probe));
    });
    wait_until("the child's waiter to sleep", || counts.slept());
    rx
}

#[test]
fn child_uses_queues_whose_waiters_and_lock_holder_stayed_in_the_parent() {
    let fifo: Arc<Queue<u32>> = Arc::new(Queue::new());
    let simple: Arc<SimpleQueue<u32>> = Arc::new(SimpleQueue::new());
    let hold = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicBool::new(false));
    let pq = Arc::new(Queue::with_order(
        Priority::by(stalling(Arc::clone(&hold), Arc::clone(&inside))),
        0,
    ));
    pq.put(5).unwrap();

    // Parent threads: one waits for an item in each queue, one holds the
    // priority queue's lock in a comparison.
    let q = Arc::clone(&fifo);
    let probe = Probe::new();
    let fifo_counts = probe.counts();
    let fifo_getter = spawn(move || {
        let mut probe = probe;
        q.get_with(Some(Instant::now() + BOUND), &mut probe)
    });
    let q = Arc::clone(&simple);
    let probe = Probe::new();
    let simple_counts = probe.counts();
    let simple_getter = spawn(move || {
        let mut probe = probe;
        q.get_with(Some(Instant::now() + BOUND), &mut probe)
    });
    hold.store(true, Ordering::SeqCst);
    let q = Arc::clone(&pq);
    let holder = spawn(move || q.put(1));
    wait_until("the parent's waiters to sleep", || {
        fifo_counts.slept() && simple_counts.slept()
    });
    wait_until("the comparison to hold the lock", || {
        inside.load(Ordering::SeqCst)
    });

    // SAFETY: the child runs only the closure below (allocating and
    // spawning threads: fine with glibc, whose malloc and pthread_create
    // reset their state at fork) and `_exit`, never returning into the
    // test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = panic::catch_unwind(AssertUnwindSafe(|| {
            let long = Duration::from_secs(5);
            // The parent's getter is oldest in line here; the child's own
            // getter must still get the item.
            let q = Arc::clone(&fifo);
            let got = child_waiter(move |p| q.get_with(None, p));
            fifo.put(7).unwrap();
            assert_eq!(got.recv_timeout(long), Ok(Ok(7)));
            let q = Arc::clone(&simple);
            let got = child_waiter(move |p| q.get_with(None, p));
            simple.put(8);
            assert_eq!(got.recv_timeout(long), Ok(Ok(Ok(8))));
            // The lock held by a parent thread is free here; whatever that
            // put left stored comes out, and the queue works.
            hold.store(false, Ordering::SeqCst);
            let mut left = Vec::new();
            while let Ok(x) = pq.try_get() {
                left.push(x);
            }
            assert!(left.contains(&5), "{left:?}");
            for x in [4, 2, 3] {
                pq.put(x).unwrap();
            }
            let out: Vec<u32> = (0..3).map(|_| pq.get().unwrap()).collect();
            assert_eq!(out, [2, 3, 4]);
        }))
        .is_ok();
        // SAFETY: `_exit` ends the child at once, running no destructors
        // or atexit handlers that belong to the parent's state.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }

    // Parent: wait for the child with a bounded poll.
    let deadline = Instant::now() + BOUND;
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
        thread::sleep(Duration::from_millis(2));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: status {status:#x}"
    );

    // The parent's threads are unaffected.
    hold.store(false, Ordering::SeqCst);
    assert_eq!(holder.join(), Ok(()));
    fifo.put(1).unwrap();
    assert_eq!(fifo_getter.join(), Ok(1));
    simple.put(2);
    assert_eq!(simple_getter.join(), Ok(Ok(2)));
    assert_eq!(pq.get(), Ok(1));
    assert_eq!(pq.get(), Ok(5));
}
