//! `tress::queue`: `Queue` (FIFO, LIFO, priority), bound and `Full`,
//! timeouts, `task_done` / `join`, Python 3.13's `shutdown`, interrupted
//! waits that lose nothing, priority comparisons that fail, and stress runs
//! checking that every item is delivered exactly once; the same for
//! `SimpleQueue`.
//!
//! Every wait is bounded (threads are joined through `common::spawn`, polls
//! give up after `common::BOUND`); timed waits are checked never to end
//! early, and never against an upper bound.

mod common;

use std::cell::Cell;
use std::convert::Infallible;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{BOUND, Probe, Rng, Stop, Task, join_all, spawn, stays, wait_until};
use tress::queue::{Fifo, Order, Priority};
use tress::{
    GetError, Interrupt, LifoQueue, PriorityQueue, PutError, Queue, SimpleQueue, TooManyTaskDone,
    Uninterruptible,
};

/// A timeout long enough to measure, short enough to wait for often.
const SHORT: Duration = Duration::from_millis(30);

/// A queue's `put_with` / `get_with` need `I::Error: From<O::Error>`; plain
/// orders fail with `Infallible`.
impl From<Infallible> for Stop {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// What the priority orders below fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Boom;

/// Asserts that a timed call that asked for `asked` did not return early.
#[track_caller]
fn not_early(start: Instant, asked: Duration) {
    let took = start.elapsed();
    assert!(took >= asked, "returned early: {took:?} < {asked:?}");
}

/// A probe-driven call running on its own thread, with its counters.
fn sleeper<T: Send + 'static>(
    f: impl FnOnce(&mut Probe) -> T + Send + 'static,
) -> (Task<T>, Arc<common::Counts>) {
    let probe = Probe::new();
    let counts = probe.counts();
    let task = spawn(move || {
        let mut probe = probe;
        f(&mut probe)
    });
    (task, counts)
}

/// A deadline `BOUND` from now: long enough never to pass in a test.
fn far() -> Option<Instant> {
    Some(Instant::now() + BOUND)
}

// ---------------------------------------------------------------------------
// Order

#[test]
fn fifo_order_and_counts() {
    let q = Queue::new();
    assert!(q.is_empty());
    assert_eq!(q.maxsize(), 0);
    for x in 0..100 {
        q.put(x).unwrap();
    }
    assert_eq!(q.len(), 100);
    assert!(!q.is_full(), "an unbounded queue is never full");
    assert_eq!(q.unfinished_tasks(), 100);
    let out: Vec<i32> = (0..100).map(|_| q.get().unwrap()).collect();
    assert_eq!(out, (0..100).collect::<Vec<_>>());
    assert!(q.is_empty());
    assert_eq!(q.unfinished_tasks(), 100, "a get finishes no task");
    assert_eq!(q.try_get(), Err(GetError::Empty));
    assert!(!q.is_shutdown());
    let shown = format!("{q:?}");
    assert!(shown.contains("unfinished_tasks: 100"), "{shown}");
}

#[test]
fn lifo_order() {
    let q: LifoQueue<i32> = LifoQueue::default();
    for x in 0..10 {
        q.put(x).unwrap();
    }
    let out: Vec<i32> = (0..10).map(|_| q.try_get().unwrap()).collect();
    assert_eq!(out, (0..10).rev().collect::<Vec<_>>());
    q.put(10).unwrap();
    assert_eq!(q.get(), Ok(10));
    q.put(11).unwrap();
    q.put(12).unwrap();
    assert_eq!(q.get(), Ok(12));
    q.put(13).unwrap();
    assert_eq!(q.get(), Ok(13));
    assert_eq!(q.get(), Ok(11));
    assert_eq!(q.try_get(), Err(GetError::Empty));
}

#[test]
fn priority_order() {
    // Python's idiom: (priority, sequence) pairs come out sorted.
    let q: PriorityQueue<(u8, usize)> = PriorityQueue::default();
    let mut rng = Rng::new(1);
    let mut items = Vec::new();
    for seq in 0..500 {
        let item = (rng.below(10) as u8, seq);
        items.push(item);
        q.put(item).unwrap();
    }
    items.sort_unstable();
    let out: Vec<_> = (0..500).map(|_| q.get().unwrap()).collect();
    assert_eq!(out, items);

    // A caller's comparison: largest first, in a bounded queue.
    let q = Queue::with_order(
        Priority::by(|a: &i32, b: &i32| Ok::<_, Infallible>(a > b)),
        3,
    );
    for x in [5, 1, 9] {
        q.put(x).unwrap();
    }
    assert!(q.is_full());
    assert_eq!(q.try_put(7), Err(PutError::Full(7)));
    assert_eq!(q.get(), Ok(9));
    q.put(7).unwrap();
    let out: Vec<i32> = (0..3).map(|_| q.get().unwrap()).collect();
    assert_eq!(out, [7, 5, 1]);
}

#[test]
fn with_order_counts_preloaded_items_as_stored_not_unfinished() {
    let mut order = Fifo::default();
    order.push(1).unwrap();
    order.push(2).unwrap();
    let q = Queue::with_order(order, 2);
    assert_eq!(q.len(), 2);
    assert!(q.is_full());
    assert_eq!(q.unfinished_tasks(), 0);
    assert!(q.join_timeout(Duration::ZERO));
    assert_eq!(q.get(), Ok(1));
    assert_eq!(q.task_done(), Err(TooManyTaskDone));
    assert_eq!(q.get(), Ok(2));
}

#[test]
fn store_and_take_bypass_counting_and_bound() {
    // Python's `_put` / `_get`: no bound, no shutdown, no task count.
    let q: Queue<u8> = Queue::bounded(1);
    q.store_with(1, &mut Uninterruptible).unwrap();
    q.store_with(2, &mut Uninterruptible).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.unfinished_tasks(), 0);
    let mut seen = Vec::new();
    q.inspect_with(&mut Uninterruptible, |o| o.for_each(&mut |x| seen.push(*x)))
        .unwrap();
    assert_eq!(seen, [1, 2]);
    assert_eq!(q.try_inspect(|o| o.len()), Some(2));
    assert_eq!(q.take_with(&mut Uninterruptible), Ok(Some(1)));
    assert_eq!(q.len(), 1);
    q.shutdown(false);
    q.store_with(3, &mut Uninterruptible).unwrap();
    assert_eq!(q.take_with(&mut Uninterruptible), Ok(Some(2)));
    assert_eq!(q.take_with(&mut Uninterruptible), Ok(Some(3)));
    assert_eq!(q.take_with(&mut Uninterruptible), Ok(None));
}

// ---------------------------------------------------------------------------
// Bound, Full, Empty and timeouts

#[test]
fn bounded_full_and_non_blocking_puts() {
    let q = Queue::bounded(2);
    assert_eq!(q.maxsize(), 2);
    q.try_put('a').unwrap();
    q.put('b').unwrap();
    assert!(q.is_full());
    assert_eq!(q.try_put('c'), Err(PutError::Full('c')));
    assert_eq!(q.try_put('c').unwrap_err().into_inner(), 'c');
    assert_eq!(q.len(), 2);
    assert_eq!(q.unfinished_tasks(), 2, "a failed put counts no task");

    // A deadline already past: non-blocking, and it never sleeps.
    let mut probe = Probe::new();
    assert_eq!(
        q.put_with('d', Some(Instant::now()), &mut probe),
        Err(PutError::Full('d'))
    );
    assert_eq!(q.try_put_with('d', &mut probe), Err(PutError::Full('d')));
    assert!(!probe.counts.slept());

    assert_eq!(q.get(), Ok('a'));
    assert!(!q.is_full());
    q.try_put('c').unwrap();
    assert_eq!(q.get(), Ok('b'));
    assert_eq!(q.get(), Ok('c'));
}

#[test]
fn timed_puts_on_a_full_queue_wait_then_fail_full() {
    let q = Queue::bounded(1);
    q.put(0).unwrap();
    let start = Instant::now();
    assert_eq!(q.put_timeout(1, SHORT), Err(PutError::Full(1)));
    not_early(start, SHORT);
    let deadline = Instant::now() + SHORT;
    assert_eq!(q.put_deadline(2, deadline), Err(PutError::Full(2)));
    assert!(Instant::now() >= deadline);
    let mut probe = Probe::new();
    let start = Instant::now();
    assert_eq!(
        q.put_with(3, Some(start + SHORT), &mut probe),
        Err(PutError::Full(3))
    );
    not_early(start, SHORT);
    assert!(probe.counts.slept());
    assert_eq!(q.len(), 1);
    assert_eq!(q.unfinished_tasks(), 1);
    // A timeout too long for an `Instant` means no deadline; with room it
    // does not wait at all.
    assert_eq!(q.get(), Ok(0));
    q.put_timeout(4, Duration::MAX).unwrap();
    assert_eq!(q.get(), Ok(4));
}

#[test]
fn timed_gets_on_an_empty_queue_wait_then_fail_empty() {
    let q: Queue<u8> = Queue::new();
    let start = Instant::now();
    assert_eq!(q.get_timeout(SHORT), Err(GetError::Empty));
    not_early(start, SHORT);
    let deadline = Instant::now() + SHORT;
    assert_eq!(q.get_deadline(deadline), Err(GetError::Empty));
    assert!(Instant::now() >= deadline);
    let mut probe = Probe::new();
    assert_eq!(
        q.get_with(Some(Instant::now()), &mut probe),
        Err(GetError::Empty)
    );
    assert_eq!(q.try_get_with(&mut probe), Err(GetError::Empty));
    assert!(!probe.counts.slept(), "a past deadline never sleeps");
    let start = Instant::now();
    assert_eq!(
        q.get_with(Some(start + SHORT), &mut probe),
        Err(GetError::Empty)
    );
    not_early(start, SHORT);
    assert!(probe.counts.slept());
}

#[test]
fn blocked_get_takes_an_item_put_later() {
    let q = Arc::new(Queue::new());
    let q2 = Arc::clone(&q);
    let (getter, counts) = sleeper(move |p| q2.get_with(far(), p));
    wait_until("the getter to sleep", || counts.slept());
    stays("the getter waits", || !getter.is_finished());
    q.put("x").unwrap();
    assert_eq!(getter.join(), Ok("x"));
    // A plain timed get gets an item put while it waits.
    let q2 = Arc::clone(&q);
    let getter = spawn(move || q2.get_timeout(BOUND));
    thread::sleep(Duration::from_millis(5));
    q.put("y").unwrap();
    assert_eq!(getter.join(), Ok("y"));
    assert_eq!(q.unfinished_tasks(), 2);
}

#[test]
fn blocked_put_proceeds_when_room_appears() {
    let q = Arc::new(Queue::bounded(1));
    q.put(1).unwrap();
    let q2 = Arc::clone(&q);
    let (putter, counts) = sleeper(move |p| q2.put_with(2, far(), p));
    wait_until("the putter to sleep", || counts.slept());
    stays("the putter waits", || !putter.is_finished());
    assert_eq!(q.len(), 1);
    assert_eq!(q.get(), Ok(1));
    assert_eq!(putter.join(), Ok(()));
    assert_eq!(q.get_timeout(BOUND), Ok(2));
    assert_eq!(q.unfinished_tasks(), 2);
}

/// Waiting putters are served oldest first (no thread barges in here).
#[test]
fn waiting_putters_are_served_in_arrival_order() {
    let q = Arc::new(Queue::bounded(1));
    q.put('0').unwrap();
    let mut putters = Vec::new();
    for c in ['a', 'b', 'c'] {
        let q2 = Arc::clone(&q);
        let (t, counts) = sleeper(move |p| q2.put_with(c, far(), p));
        wait_until("the putter to sleep", || counts.slept());
        putters.push(t);
    }
    let out: Vec<char> = (0..4).map(|_| q.get_timeout(BOUND).unwrap()).collect();
    assert_eq!(out, ['0', 'a', 'b', 'c']);
    for r in join_all(putters) {
        assert_eq!(r, Ok(()));
    }
}

#[test]
fn set_maxsize_lets_waiting_putters_in_and_keeps_items() {
    let q = Arc::new(Queue::bounded(1));
    q.put(0).unwrap();
    let mut putters = Vec::new();
    for x in 1..=2 {
        let q2 = Arc::clone(&q);
        let (t, counts) = sleeper(move |p| q2.put_with(x, far(), p));
        wait_until("the putter to sleep", || counts.slept());
        putters.push(t);
    }
    q.set_maxsize(3);
    for r in join_all(putters) {
        assert_eq!(r, Ok(()));
    }
    assert_eq!(q.len(), 3);
    assert!(q.is_full());
    // Shrinking below the length keeps the items; puts wait for room.
    q.set_maxsize(2);
    assert_eq!(q.len(), 3);
    assert!(q.is_full());
    assert_eq!(q.try_put(9), Err(PutError::Full(9)));
    assert_eq!(q.get(), Ok(0));
    assert_eq!(q.try_put(9), Err(PutError::Full(9)), "still 2 of 2");
    // Both putters were woken at once: 1 and 2 in either order.
    assert!(matches!(q.get(), Ok(1 | 2)));
    q.try_put(3).unwrap();
    // 0: unbounded.
    q.set_maxsize(0);
    for x in 4..100 {
        q.try_put(x).unwrap();
    }
    assert!(!q.is_full());
    assert_eq!(q.len(), 98);
}

// ---------------------------------------------------------------------------
// task_done and join

#[test]
fn task_done_and_join() {
    let q = Queue::new();
    assert!(q.join_timeout(Duration::ZERO), "nothing put: done");
    q.join();
    for x in 0..3 {
        q.put(x).unwrap();
    }
    let start = Instant::now();
    assert!(!q.join_timeout(SHORT));
    not_early(start, SHORT);
    for _ in 0..3 {
        q.get().unwrap();
        assert!(!q.join_timeout(Duration::ZERO), "a get finishes no task");
        q.task_done().unwrap();
    }
    assert_eq!(q.unfinished_tasks(), 0);
    assert!(q.join_timeout(Duration::ZERO));
    q.join();
    // Too many: an error, and the count stays at zero.
    assert_eq!(q.task_done(), Err(TooManyTaskDone));
    assert_eq!(q.task_done(), Err(TooManyTaskDone));
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(
        q.task_done_with(&mut Uninterruptible),
        Ok(Err(TooManyTaskDone))
    );
    assert_eq!(
        TooManyTaskDone.to_string(),
        "task_done() called too many times"
    );
    // As in Python, task_done counts puts, not gets.
    q.put(7).unwrap();
    q.task_done().unwrap();
    assert!(q.join_timeout(Duration::ZERO));
    assert_eq!(q.get(), Ok(7));
    assert_eq!(q.task_done(), Err(TooManyTaskDone));
}

#[test]
fn last_task_done_wakes_every_joiner() {
    let q = Arc::new(Queue::new());
    q.put(1).unwrap();
    q.put(2).unwrap();
    let mut joiners = Vec::new();
    for _ in 0..3 {
        let q2 = Arc::clone(&q);
        let (t, counts) = sleeper(move |p| q2.join_with(far(), p));
        wait_until("the joiner to sleep", || counts.slept());
        joiners.push(t);
    }
    q.get().unwrap();
    q.task_done().unwrap();
    stays("the joiners wait for the last task", || {
        joiners.iter().all(|j| !j.is_finished())
    });
    q.get().unwrap();
    q.task_done().unwrap();
    for r in join_all(joiners) {
        assert_eq!(r, Ok(true));
    }
    // A plain join in a thread, released the same way.
    q.put(3).unwrap();
    let q2 = Arc::clone(&q);
    let joiner = spawn(move || q2.join());
    thread::sleep(Duration::from_millis(5));
    q.get().unwrap();
    q.task_done().unwrap();
    joiner.join();
}

#[test]
fn join_with_deadline_and_interrupt() {
    let q = Queue::new();
    q.put(()).unwrap();
    let mut probe = Probe::new();
    let start = Instant::now();
    assert_eq!(q.join_with(Some(start + SHORT), &mut probe), Ok(false));
    not_early(start, SHORT);
    let mut probe = Probe::failing_after(3, Duration::from_millis(1));
    assert_eq!(q.join_with(None, &mut probe), Err(Stop(3)));
    assert_eq!(q.unfinished_tasks(), 1);
    q.task_done().unwrap();
    assert_eq!(q.join_with(None, &mut Probe::new()), Ok(true));
}

// ---------------------------------------------------------------------------
// shutdown (Python 3.13)

#[test]
fn shutdown_fails_puts_and_drains_gets() {
    let q = Queue::bounded(3);
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.shutdown(false);
    assert!(q.is_shutdown());
    assert_eq!(q.put(3), Err(PutError::ShutDown(3)));
    assert_eq!(q.try_put(3), Err(PutError::ShutDown(3)));
    assert_eq!(q.put_timeout(3, SHORT), Err(PutError::ShutDown(3)));
    assert_eq!(
        q.put_with(3, None, &mut Probe::new()),
        Err(PutError::ShutDown(3))
    );
    assert_eq!(q.put(3).unwrap_err().to_string(), "the queue is shut down");
    assert_eq!(q.len(), 2);
    assert_eq!(q.unfinished_tasks(), 2);
    // Gets drain what is left, then fail ShutDown (not Empty), at once.
    assert_eq!(q.get(), Ok(1));
    assert_eq!(q.try_get(), Ok(2));
    assert_eq!(q.get(), Err(GetError::ShutDown));
    assert_eq!(q.try_get(), Err(GetError::ShutDown));
    assert_eq!(q.get_timeout(BOUND), Err(GetError::ShutDown));
    assert_eq!(q.get_with(None, &mut Probe::new()), Err(GetError::ShutDown));
    // A plain shutdown finishes no task: join waits for the task_done calls.
    assert!(!q.join_timeout(Duration::ZERO));
    q.task_done().unwrap();
    q.task_done().unwrap();
    assert!(q.join_timeout(Duration::ZERO));
    // Shutting down again changes nothing.
    q.shutdown(false);
    assert!(q.is_shutdown());
}

#[test]
fn shutdown_beats_full() {
    let q = Queue::bounded(1);
    q.put(1).unwrap();
    q.shutdown(false);
    // Python checks is_shutdown before the bound.
    assert_eq!(q.try_put(2), Err(PutError::ShutDown(2)));
    assert_eq!(q.put_timeout(2, SHORT), Err(PutError::ShutDown(2)));
}

#[test]
fn shutdown_wakes_blocked_getters() {
    let q: Arc<Queue<u32>> = Arc::new(Queue::new());
    let mut getters = Vec::new();
    for _ in 0..3 {
        let q2 = Arc::clone(&q);
        let (t, counts) = sleeper(move |p| q2.get_with(far(), p));
        wait_until("the getter to sleep", || counts.slept());
        getters.push(t);
    }
    let q2 = Arc::clone(&q);
    let untimed = spawn(move || q2.get());
    let q2 = Arc::clone(&q);
    let timed = spawn(move || q2.get_timeout(BOUND));
    thread::sleep(Duration::from_millis(5));
    q.shutdown(false);
    for r in join_all(getters) {
        assert_eq!(r, Err(GetError::ShutDown));
    }
    assert_eq!(untimed.join(), Err(GetError::ShutDown));
    assert_eq!(timed.join(), Err(GetError::ShutDown));
}

#[test]
fn shutdown_wakes_blocked_putters_and_hands_their_items_back() {
    let q = Arc::new(Queue::bounded(1));
    q.put(0).unwrap();
    let mut putters = Vec::new();
    for x in 1..=3 {
        let q2 = Arc::clone(&q);
        let (t, counts) = sleeper(move |p| q2.put_with(x, far(), p));
        wait_until("the putter to sleep", || counts.slept());
        putters.push(t);
    }
    let q2 = Arc::clone(&q);
    let untimed = spawn(move || q2.put(4));
    thread::sleep(Duration::from_millis(5));
    q.shutdown(false);
    for (x, r) in (1..=3).zip(join_all(putters)) {
        assert_eq!(r, Err(PutError::ShutDown(x)));
    }
    assert_eq!(untimed.join(), Err(PutError::ShutDown(4)));
    assert_eq!(q.unfinished_tasks(), 1);
    assert_eq!(q.get(), Ok(0));
    assert_eq!(q.get(), Err(GetError::ShutDown));
}

#[test]
fn immediate_shutdown_drops_items_and_releases_join() {
    let token = Arc::new(());
    let q = Arc::new(Queue::new());
    for _ in 0..4 {
        q.put(Arc::clone(&token)).unwrap();
    }
    // One item is out with a consumer, not yet done.
    let taken = q.get().unwrap();
    let q2 = Arc::clone(&q);
    let (joiner, counts) = sleeper(move |p| q2.join_with(far(), p));
    wait_until("the joiner to sleep", || counts.slept());
    q.shutdown(true);
    assert!(q.is_shutdown());
    assert_eq!(q.len(), 0);
    assert_eq!(
        Arc::strong_count(&token),
        2,
        "the queued items were dropped"
    );
    assert_eq!(
        q.unfinished_tasks(),
        1,
        "only the dropped items count as done"
    );
    assert_eq!(q.get(), Err(GetError::ShutDown));
    assert_eq!(q.try_get(), Err(GetError::ShutDown));
    assert!(matches!(
        q.put(Arc::clone(&token)),
        Err(PutError::ShutDown(_))
    ));
    stays("the joiner waits for the item still out", || {
        !joiner.is_finished()
    });
    drop(taken);
    q.task_done().unwrap();
    assert_eq!(joiner.join(), Ok(true));
    assert_eq!(Arc::strong_count(&token), 1);
}

#[test]
fn immediate_shutdown_wakes_getters_and_joiners_at_once() {
    let q = Arc::new(Queue::new());
    let q2 = Arc::clone(&q);
    let (getter, g) = sleeper(move |p| q2.get_with(far(), p));
    wait_until("the getter to sleep", || g.slept());
    for x in 0..3 {
        // The getter takes the first one.
        q.put(x).unwrap();
    }
    assert_eq!(getter.join(), Ok(0));
    let q2 = Arc::clone(&q);
    let joiner = spawn(move || q2.join());
    q.task_done().unwrap();
    thread::sleep(Duration::from_millis(5));
    let removed = q.shutdown_with(true, &mut Uninterruptible).unwrap();
    assert_eq!(removed, [1, 2], "the dropped items, handed back");
    joiner.join();
    assert_eq!(q.unfinished_tasks(), 0);
    assert!(q.join_timeout(Duration::ZERO));
}

#[test]
fn shutdown_with_returns_nothing_unless_immediate() {
    let q = Queue::new();
    q.put(1).unwrap();
    assert_eq!(q.shutdown_with(false, &mut Probe::new()), Ok(vec![]));
    assert_eq!(q.len(), 1);
    // A later immediate shutdown drops what a plain one left.
    assert_eq!(q.shutdown_with(true, &mut Probe::new()), Ok(vec![1]));
    assert_eq!(q.get(), Err(GetError::ShutDown));
    assert_eq!(q.unfinished_tasks(), 0);
}

#[test]
fn immediate_shutdown_never_takes_unfinished_below_zero() {
    let q = Queue::new();
    q.store_with(1, &mut Uninterruptible).unwrap();
    q.store_with(2, &mut Uninterruptible).unwrap();
    q.put(3).unwrap();
    assert_eq!(q.unfinished_tasks(), 1);
    let removed = q.shutdown_with(true, &mut Uninterruptible).unwrap();
    assert_eq!(removed.len(), 3);
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(q.task_done(), Err(TooManyTaskDone));
    assert!(q.join_timeout(Duration::ZERO));
}

#[test]
fn plain_shutdown_does_not_release_join() {
    let q = Arc::new(Queue::new());
    q.put(1).unwrap();
    let q2 = Arc::clone(&q);
    let (joiner, counts) = sleeper(move |p| q2.join_with(far(), p));
    wait_until("the joiner to sleep", || counts.slept());
    q.shutdown(false);
    stays("the joiner still waits", || !joiner.is_finished());
    assert_eq!(q.get(), Ok(1));
    q.task_done().unwrap();
    assert_eq!(joiner.join(), Ok(true));
}

// ---------------------------------------------------------------------------
// Interrupted waits lose nothing

/// Shared state of a [`Gate`].
#[derive(Debug, Default)]
struct GateState {
    /// Set from outside: the next check holds and then fails.
    armed: AtomicBool,
    /// Set by the check once it holds.
    in_check: AtomicBool,
    /// Set from outside to let the held check fail.
    open: AtomicBool,
    /// How often the call went to sleep.
    sleeps: AtomicUsize,
}

/// An [`Interrupt`] that wakes every millisecond and, once armed, holds its
/// next check open until told to go on, then abandons the wait: a
/// deterministic way to have a notification land while the waiter is
/// deciding to give up (still queued as a waiter, not yet withdrawn).
#[derive(Debug, Clone, Default)]
struct Gate(Arc<GateState>);

impl Gate {
    fn slept(&self) -> bool {
        self.0.sleeps.load(Ordering::SeqCst) > 0
    }

    /// Arms the gate and waits until its call holds in `check`.
    fn arm_and_catch(&self) {
        self.0.armed.store(true, Ordering::SeqCst);
        wait_until("the check to hold", || {
            self.0.in_check.load(Ordering::SeqCst)
        });
    }

    fn open(&self) {
        self.0.open.store(true, Ordering::SeqCst);
    }
}

impl Interrupt for Gate {
    type Error = Stop;

    fn slice(&self) -> Option<Duration> {
        Some(Duration::from_millis(1))
    }

    fn check(&mut self) -> Result<(), Stop> {
        if !self.0.armed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.0.in_check.store(true, Ordering::SeqCst);
        let end = Instant::now() + BOUND;
        while !self.0.open.load(Ordering::SeqCst) && Instant::now() < end {
            thread::sleep(Duration::from_micros(100));
        }
        Err(Stop(0))
    }

    fn before_sleep(&mut self) {
        self.0.sleeps.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn abandoned_waits_leave_the_queue_unchanged() {
    // A getter abandoned from another thread through a flag and a slice.
    let q: Arc<Queue<u32>> = Arc::new(Queue::bounded(1));
    let probe = Probe {
        slice: Some(Duration::from_millis(1)),
        ..Probe::new()
    };
    let counts = probe.counts();
    let q2 = Arc::clone(&q);
    let getter = spawn(move || {
        let mut probe = probe;
        q2.get_with(None, &mut probe)
    });
    wait_until("the getter to sleep", || counts.slept());
    counts.abort.store(true, Ordering::SeqCst);
    assert!(matches!(getter.join(), Err(GetError::Failed(Stop(_)))));
    assert!(q.is_empty());

    // A putter likewise gets its item back.
    q.put(1).unwrap();
    let probe = Probe {
        slice: Some(Duration::from_millis(1)),
        ..Probe::new()
    };
    let counts = probe.counts();
    let q2 = Arc::clone(&q);
    let putter = spawn(move || {
        let mut probe = probe;
        q2.put_with(2, None, &mut probe)
    });
    wait_until("the putter to sleep", || counts.slept());
    counts.abort.store(true, Ordering::SeqCst);
    assert!(matches!(putter.join(), Err(PutError::Failed(2, Stop(_)))));
    assert_eq!(q.len(), 1);
    assert_eq!(q.unfinished_tasks(), 1);
    assert_eq!(q.try_get(), Ok(1));
    // Both directions still work.
    q.put(3).unwrap();
    assert_eq!(q.get(), Ok(3));
}

/// The oldest waiting getter is notified of an item just as it gives up:
/// the notification goes on to the next waiting getter, which gets the item.
#[test]
fn interrupted_getter_passes_its_notification_on() {
    let q: Arc<Queue<u32>> = Arc::new(Queue::new());
    let gate = Gate::default();
    let (q2, g) = (Arc::clone(&q), gate.clone());
    let first = spawn(move || {
        let mut g = g;
        q2.get_with(None, &mut g)
    });
    wait_until("the first getter to sleep", || gate.slept());
    let q2 = Arc::clone(&q);
    let (second, counts) = sleeper(move |p| q2.get_with(far(), p));
    wait_until("the second getter to sleep", || counts.slept());

    gate.arm_and_catch();
    q.put(7).unwrap(); // notifies the first getter, which is leaving
    gate.open();
    assert_eq!(first.join(), Err(GetError::Failed(Stop(0))));
    assert_eq!(second.join(), Ok(7), "the item went to the other getter");
    assert!(q.is_empty());
    assert_eq!(q.unfinished_tasks(), 1);
}

/// The same with nobody else waiting: the item stays queued.
#[test]
fn interrupted_lone_getter_leaves_the_item_queued() {
    let q: Arc<Queue<u32>> = Arc::new(Queue::new());
    let gate = Gate::default();
    let (q2, g) = (Arc::clone(&q), gate.clone());
    let getter = spawn(move || {
        let mut g = g;
        q2.get_with(None, &mut g)
    });
    wait_until("the getter to sleep", || gate.slept());
    gate.arm_and_catch();
    q.put(7).unwrap();
    gate.open();
    assert_eq!(getter.join(), Err(GetError::Failed(Stop(0))));
    assert_eq!(q.len(), 1);
    assert_eq!(q.try_get(), Ok(7));
}

/// The oldest waiting putter is notified of room just as it gives up: it
/// gets its item back, and the room goes to the next waiting putter.
#[test]
fn interrupted_putter_passes_the_room_on_and_gets_its_item_back() {
    let q: Arc<Queue<u32>> = Arc::new(Queue::bounded(1));
    q.put(0).unwrap();
    let gate = Gate::default();
    let (q2, g) = (Arc::clone(&q), gate.clone());
    let first = spawn(move || {
        let mut g = g;
        q2.put_with(1, None, &mut g)
    });
    wait_until("the first putter to sleep", || gate.slept());
    let q2 = Arc::clone(&q);
    let (second, counts) = sleeper(move |p| q2.put_with(2, far(), p));
    wait_until("the second putter to sleep", || counts.slept());

    gate.arm_and_catch();
    assert_eq!(q.get(), Ok(0)); // room: notifies the first putter, which is leaving
    gate.open();
    assert_eq!(first.join(), Err(PutError::Failed(1, Stop(0))));
    assert_eq!(second.join(), Ok(()), "the room went to the other putter");
    assert_eq!(q.len(), 1);
    assert_eq!(q.unfinished_tasks(), 2, "the abandoned put counts no task");
    assert_eq!(q.get(), Ok(2));
}

/// A caller waiting for the queue's internal lock (held here by a thread in
/// a slow priority comparison) is interruptible too, and gets its item back.
#[test]
fn wait_for_the_internal_lock_is_interruptible() {
    let hold = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicBool::new(false));
    let (h, i) = (Arc::clone(&hold), Arc::clone(&inside));
    let less = move |a: &u32, b: &u32| {
        if h.load(Ordering::SeqCst) {
            i.store(true, Ordering::SeqCst);
            let end = Instant::now() + BOUND;
            while h.load(Ordering::SeqCst) && Instant::now() < end {
                thread::sleep(Duration::from_micros(100));
            }
        }
        Ok::<_, Infallible>(a < b)
    };
    let q = Arc::new(Queue::with_order(Priority::by(less), 0));
    q.put(5).unwrap();
    hold.store(true, Ordering::SeqCst);
    let q2 = Arc::clone(&q);
    let slow = spawn(move || q2.put(1));
    wait_until("the comparison to hold the lock", || {
        inside.load(Ordering::SeqCst)
    });
    let mut probe = Probe::failing_after(2, Duration::from_millis(1));
    assert_eq!(
        q.put_with(9, None, &mut probe),
        Err(PutError::Failed(9, Stop(2)))
    );
    let mut probe = Probe::failing_after(2, Duration::from_millis(1));
    assert_eq!(q.get_with(None, &mut probe), Err(GetError::Failed(Stop(2))));
    let mut probe = Probe::failing_after(1, Duration::from_millis(1));
    assert_eq!(q.join_with(None, &mut probe), Err(Stop(1)));
    assert_eq!(q.task_done_with(&mut probe), Err(Stop(2)));
    hold.store(false, Ordering::SeqCst);
    assert_eq!(slow.join(), Ok(()));
    assert_eq!(q.unfinished_tasks(), 2);
    assert_eq!(q.get(), Ok(1));
    assert_eq!(q.get(), Ok(5));
    assert_eq!(q.try_get(), Err(GetError::Empty));
}

/// Shared state of a [`LateStop`].
#[derive(Debug, Default)]
struct LateStopState {
    /// Set from outside: the next wake-up holds in `after_sleep`.
    armed: AtomicBool,
    /// Set by `after_sleep` once it holds.
    held: AtomicBool,
    /// Set from outside to let the held wake-up go on.
    go: AtomicBool,
    /// Set by the first `before_sleep` after `go`: the call sleeps again
    /// (waiting for the internal lock), and its checks now fail.
    failing: AtomicBool,
    /// How often the call went to sleep.
    sleeps: AtomicUsize,
}

/// An [`Interrupt`] that wakes every millisecond; once armed, it holds the
/// next wake-up in `after_sleep` until told to go on, and then fails every
/// check made after the call next goes to sleep. With the notification
/// made while it holds, the wait for the item (or the room) succeeds and the
/// failure lands in the wait for the queue's internal lock that follows.
#[derive(Debug, Clone, Default)]
struct LateStop(Arc<LateStopState>);

impl LateStop {
    fn slept(&self) -> bool {
        self.0.sleeps.load(Ordering::SeqCst) > 0
    }

    fn arm_and_catch(&self) {
        self.0.armed.store(true, Ordering::SeqCst);
        wait_until("the wake-up to hold", || self.0.held.load(Ordering::SeqCst));
    }
}

impl Interrupt for LateStop {
    type Error = Stop;

    fn slice(&self) -> Option<Duration> {
        Some(Duration::from_millis(1))
    }

    fn check(&mut self) -> Result<(), Stop> {
        if self.0.failing.load(Ordering::SeqCst) {
            Err(Stop(0))
        } else {
            Ok(())
        }
    }

    fn before_sleep(&mut self) {
        self.0.sleeps.fetch_add(1, Ordering::SeqCst);
        if self.0.go.load(Ordering::SeqCst) {
            self.0.failing.store(true, Ordering::SeqCst);
        }
    }

    fn after_sleep(&mut self) {
        if self.0.armed.load(Ordering::SeqCst) && !self.0.held.swap(true, Ordering::SeqCst) {
            let end = Instant::now() + BOUND;
            while !self.0.go.load(Ordering::SeqCst) && Instant::now() < end {
                thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

/// Holds `q`'s internal lock on a new thread (through `inspect_with`) until
/// `hold` is cleared; returns once it holds it.
fn hold_internal_lock<T, O>(q: &Arc<Queue<T, O>>, hold: &Arc<AtomicBool>) -> Task<usize>
where
    T: Send + 'static,
    O: Order<T> + Send + 'static,
{
    hold.store(true, Ordering::SeqCst);
    let inside = Arc::new(AtomicBool::new(false));
    let (q, h, i) = (Arc::clone(q), Arc::clone(hold), Arc::clone(&inside));
    let holder = spawn(move || {
        q.inspect_with(&mut Uninterruptible, |o| {
            i.store(true, Ordering::SeqCst);
            let end = Instant::now() + BOUND;
            while h.load(Ordering::SeqCst) && Instant::now() < end {
                thread::sleep(Duration::from_micros(100));
            }
            o.len()
        })
        .unwrap()
    });
    wait_until("the holder to hold the lock", || {
        inside.load(Ordering::SeqCst)
    });
    holder
}

/// Waits up to 5 s for `task` to finish; if it does not, runs `release`
/// (so the thread does not stay blocked) and fails with `what`.
#[track_caller]
fn finishes_or<T>(task: &Task<T>, what: &str, release: impl FnOnce()) {
    let end = Instant::now() + Duration::from_secs(5);
    while !task.is_finished() && Instant::now() < end {
        thread::sleep(Duration::from_micros(200));
    }
    if !task.is_finished() {
        release();
        panic!("{what}");
    }
}

/// A getter notified of an item, then interrupted while it waits for the
/// queue's internal lock (another thread holds it), must pass its
/// notification on, as a getter interrupted in the wait for the item does:
/// otherwise the next waiting getter sleeps on while an item is queued.
#[test]
fn getter_interrupted_at_the_internal_lock_passes_its_notification_on() {
    let q: Arc<Queue<u32>> = Arc::new(Queue::new());
    let stop = LateStop::default();
    let (q2, s) = (Arc::clone(&q), stop.clone());
    let first = spawn(move || {
        let mut s = s;
        q2.get_with(None, &mut s)
    });
    wait_until("the first getter to sleep", || stop.slept());
    let q2 = Arc::clone(&q);
    let (second, counts) = sleeper(move |p| q2.get_with(None, p));
    wait_until("the second getter to sleep", || counts.slept());

    stop.arm_and_catch();
    q.put(7).unwrap(); // notifies the first getter, held just after a wake-up
    let hold = Arc::new(AtomicBool::new(false));
    let holder = hold_internal_lock(&q, &hold);
    stop.0.go.store(true, Ordering::SeqCst);
    assert_eq!(first.join(), Err(GetError::Failed(Stop(0))));
    hold.store(false, Ordering::SeqCst);
    assert_eq!(holder.join(), 1);
    // The second getter may already have taken the item it was passed.
    finishes_or(
        &second,
        "lost wake-up: an item is queued and a waiting getter sleeps on",
        || q.put(8).unwrap(),
    );
    assert_eq!(second.join(), Ok(7));
}

/// The same for a putter notified of room: the room goes to the next
/// waiting putter, and the interrupted one gets its item back.
#[test]
fn putter_interrupted_at_the_internal_lock_passes_the_room_on() {
    let q: Arc<Queue<u32>> = Arc::new(Queue::bounded(1));
    q.put(0).unwrap();
    let stop = LateStop::default();
    let (q2, s) = (Arc::clone(&q), stop.clone());
    let first = spawn(move || {
        let mut s = s;
        q2.put_with(1, None, &mut s)
    });
    wait_until("the first putter to sleep", || stop.slept());
    let q2 = Arc::clone(&q);
    let (second, counts) = sleeper(move |p| q2.put_with(2, None, p));
    wait_until("the second putter to sleep", || counts.slept());

    stop.arm_and_catch();
    assert_eq!(q.get(), Ok(0)); // room: notifies the first putter, held
    let hold = Arc::new(AtomicBool::new(false));
    let holder = hold_internal_lock(&q, &hold);
    stop.0.go.store(true, Ordering::SeqCst);
    assert_eq!(first.join(), Err(PutError::Failed(1, Stop(0))));
    hold.store(false, Ordering::SeqCst);
    assert_eq!(holder.join(), 0);
    // The second putter may already have used the room it was passed.
    finishes_or(
        &second,
        "lost wake-up: the queue has room and a waiting putter sleeps on",
        || q.set_maxsize(0),
    );
    assert_eq!(second.join(), Ok(()));
    assert_eq!(q.get_timeout(BOUND), Ok(2));
}

// ---------------------------------------------------------------------------
// Priority comparisons that fail

/// A comparison failing every few calls, checked against a model: every
/// failed put hands its item back and counts nothing, every failed get
/// leaves the heap as it was, every successful get returns the smallest
/// item; in the end every item came out once, in order.
#[test]
fn failing_priority_comparisons_lose_nothing() {
    // Random failures: a fixed period could match the number of
    // comparisons a pop needs and fail every retry.
    let mut coin = Rng::new(3);
    let less = move |a: &u32, b: &u32| {
        if coin.below(8) == 0 {
            Err(Boom)
        } else {
            Ok(a < b)
        }
    };
    let q = Queue::with_order(Priority::by(less), 0);
    let mut model: Vec<u32> = Vec::new(); // sorted
    let mut rng = Rng::new(7);
    let (mut put_failures, mut get_failures, mut puts) = (0, 0, 0u64);
    let mut got = Vec::new();
    for _ in 0..3000 {
        if rng.below(2) == 0 {
            let x = rng.below(50) as u32;
            let before = (q.len(), q.unfinished_tasks());
            match q.put(x) {
                Ok(()) => {
                    puts += 1;
                    let at = model.partition_point(|&y| y <= x);
                    model.insert(at, x);
                }
                Err(PutError::Failed(back, Boom)) => {
                    assert_eq!(back, x, "the item comes back");
                    assert_eq!((q.len(), q.unfinished_tasks()), before);
                    put_failures += 1;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        } else {
            let len = q.len();
            match q.try_get() {
                Ok(x) => {
                    assert_eq!(x, model.remove(0), "the smallest comes out");
                    got.push(x);
                }
                Err(GetError::Empty) => assert!(model.is_empty()),
                Err(GetError::Failed(Boom)) => {
                    assert_eq!(q.len(), len);
                    get_failures += 1;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(q.len(), model.len());
    }
    assert!(
        put_failures > 0 && get_failures > 0,
        "the comparison failed"
    );
    // Drain, retrying failed gets.
    let mut tail = Vec::new();
    let mut attempts = 0;
    while tail.len() < model.len() {
        attempts += 1;
        assert!(attempts < 100_000, "a get keeps failing");
        match q.get_timeout(BOUND) {
            Ok(x) => tail.push(x),
            Err(GetError::Failed(Boom)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(tail, model, "the rest come out in order");
    assert_eq!(got.len() + tail.len(), puts as usize);
    assert_eq!(q.unfinished_tasks(), puts);
    assert!(q.is_empty());
}

thread_local! {
    /// Makes the comparison below fail in this thread.
    static POISONED: Cell<bool> = const { Cell::new(false) };
}

/// `a < b`, failing in a poisoned thread.
fn poisonable(a: &u32, b: &u32) -> Result<bool, Boom> {
    if POISONED.with(Cell::get) {
        Err(Boom)
    } else {
        Ok(a < b)
    }
}

/// A putter woken for room whose comparison fails passes the room on.
#[test]
fn failed_priority_put_passes_the_room_on() {
    let q = Arc::new(Queue::with_order(Priority::by(poisonable), 2));
    q.put(10).unwrap();
    q.put(20).unwrap();
    let q2 = Arc::clone(&q);
    let (first, c1) = sleeper(move |p| {
        POISONED.with(|x| x.set(true));
        q2.put_with(1, far(), &mut OrBoom(p))
    });
    wait_until("the first putter to sleep", || c1.slept());
    let q2 = Arc::clone(&q);
    let (second, c2) = sleeper(move |p| q2.put_with(2, far(), &mut OrBoom(p)));
    wait_until("the second putter to sleep", || c2.slept());
    assert_eq!(q.get(), Ok(10));
    assert_eq!(first.join(), Err(PutError::Failed(1, Fail::Boom)));
    assert_eq!(second.join(), Ok(()));
    assert_eq!(q.get(), Ok(2));
    assert_eq!(q.get(), Ok(20));
    assert_eq!(q.unfinished_tasks(), 3);
}

/// A getter woken for an item whose comparison fails passes the item on.
#[test]
fn failed_priority_get_passes_the_item_on() {
    let q = Arc::new(Queue::with_order(Priority::by(poisonable), 0));
    let q2 = Arc::clone(&q);
    let (first, c1) = sleeper(move |p| {
        POISONED.with(|x| x.set(true));
        q2.get_with(far(), &mut OrBoom(p))
    });
    wait_until("the first getter to sleep", || c1.slept());
    let q2 = Arc::clone(&q);
    let (second, c2) = sleeper(move |p| q2.get_with(far(), &mut OrBoom(p)));
    wait_until("the second getter to sleep", || c2.slept());
    // Two items stored silently, the third put wakes the first getter,
    // whose pop of three items needs a comparison, and fails.
    q.store_with(3, &mut OrBoom(&mut Probe::new())).unwrap();
    q.store_with(4, &mut OrBoom(&mut Probe::new())).unwrap();
    q.put(5).unwrap();
    assert_eq!(first.join(), Err(GetError::Failed(Fail::Boom)));
    assert_eq!(second.join(), Ok(3));
    assert_eq!(q.len(), 2);
    assert_eq!(q.get(), Ok(4));
    assert_eq!(q.get(), Ok(5));
}

/// The interrupt's error or the comparison's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Stop,
    Boom,
}

impl From<Boom> for Fail {
    fn from(Boom: Boom) -> Self {
        Fail::Boom
    }
}

/// A [`Probe`] whose error is a [`Fail`].
struct OrBoom<'a>(&'a mut Probe);

impl Interrupt for OrBoom<'_> {
    type Error = Fail;
    fn slice(&self) -> Option<Duration> {
        self.0.slice()
    }
    fn check(&mut self) -> Result<(), Fail> {
        self.0.check().map_err(|_| Fail::Stop)
    }
    fn before_sleep(&mut self) {
        self.0.before_sleep();
    }
    fn after_sleep(&mut self) {
        self.0.after_sleep();
    }
}

/// A comparison that panics (say `partial_cmp(..).unwrap()` on a NaN) in
/// a get: the item being taken must not vanish, and the counts must stay
/// true.
#[test]
fn priority_comparison_panicking_in_get_loses_nothing() {
    let q = Queue::with_order(Priority::by(panicky), 0);
    for x in [1, 2, 3, 4, 5] {
        q.put(x).unwrap();
    }
    PANICKY.with(|p| p.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(|| q.try_get()));
    PANICKY.with(|p| p.set(false));
    assert!(r.is_err(), "the comparison panicked");
    let stored = q.try_inspect(|o| o.len()).expect("the lock was released");
    let mut out = Vec::new();
    while let Ok(x) = q.try_get() {
        out.push(x);
    }
    out.sort_unstable();
    assert_eq!(
        (out, stored, q.unfinished_tasks()),
        (vec![1, 2, 3, 4, 5], 5, 5),
        "(items left, stored count, unfinished) after the panic"
    );
}

/// The same in a put: the item is either in (and counted) or out.
#[test]
fn priority_comparison_panicking_in_put_keeps_counts_true() {
    let q = Queue::with_order(Priority::by(panicky), 0);
    for x in [1, 2, 3] {
        q.put(x).unwrap();
    }
    PANICKY.with(|p| p.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(|| q.put(0)));
    PANICKY.with(|p| p.set(false));
    assert!(r.is_err(), "the comparison panicked");
    let stored = q.try_inspect(|o| o.len()).expect("the lock was released");
    assert_eq!(
        (q.len(), q.unfinished_tasks()),
        (stored, stored as u64),
        "len and unfinished_tasks agree with the {stored} items stored"
    );
}

thread_local! {
    /// Makes [`panicky`] panic in this thread.
    static PANICKY: Cell<bool> = const { Cell::new(false) };
}

/// `a < b`, panicking when asked to.
fn panicky(a: &u32, b: &u32) -> Result<bool, Infallible> {
    assert!(!PANICKY.with(Cell::get), "comparison panicked (on purpose)");
    Ok(a < b)
}

// ---------------------------------------------------------------------------
// SimpleQueue

#[test]
fn simple_queue_basics() {
    let q = SimpleQueue::default();
    assert!(q.is_empty());
    assert_eq!(q.try_get(), None);
    for x in 0..10 {
        q.put(x);
    }
    assert_eq!(q.len(), 10);
    assert_eq!(q.try_inspect(|d| d.iter().sum::<i32>()), Some(45));
    assert!(format!("{q:?}").contains("len: 10"));
    let out: Vec<i32> = (0..10).map(|_| q.get()).collect();
    assert_eq!(out, (0..10).collect::<Vec<_>>());
    assert!(q.is_empty());

    let start = Instant::now();
    assert_eq!(q.get_timeout(SHORT), None);
    not_early(start, SHORT);
    let deadline = Instant::now() + SHORT;
    assert_eq!(q.get_deadline(deadline), None);
    assert!(Instant::now() >= deadline);
    let mut probe = Probe::new();
    assert_eq!(
        q.get_with(Some(Instant::now()), &mut probe),
        Ok(Err(GetError::Empty))
    );
    assert!(!probe.counts.slept());
    q.put(1);
    assert_eq!(q.get_timeout(SHORT), Some(1));
}

#[test]
fn simple_queue_blocked_get_and_interrupt() {
    let q = Arc::new(SimpleQueue::new());
    let q2 = Arc::clone(&q);
    let (getter, counts) = sleeper(move |p| q2.get_with(None, p));
    wait_until("the getter to sleep", || counts.slept());
    stays("the getter waits", || !getter.is_finished());
    q.put("a");
    assert_eq!(getter.join(), Ok(Ok("a")));

    let q2 = Arc::clone(&q);
    let getter = spawn(move || {
        let mut p = Probe::failing_after(3, Duration::from_millis(1));
        q2.get_with(None, &mut p)
    });
    assert_eq!(getter.join(), Err(Stop(3)));
    assert!(q.is_empty());
    q.put("b");
    assert_eq!(q.get(), "b");
}

#[test]
fn simple_queue_interrupted_getter_passes_its_notification_on() {
    let q: Arc<SimpleQueue<u32>> = Arc::new(SimpleQueue::new());
    let gate = Gate::default();
    let (q2, g) = (Arc::clone(&q), gate.clone());
    let first = spawn(move || {
        let mut g = g;
        q2.get_with(None, &mut g)
    });
    wait_until("the first getter to sleep", || gate.slept());
    let q2 = Arc::clone(&q);
    let (second, counts) = sleeper(move |p| q2.get_with(far(), p));
    wait_until("the second getter to sleep", || counts.slept());
    gate.arm_and_catch();
    q.put(7);
    gate.open();
    assert_eq!(first.join(), Err(Stop(0)));
    assert_eq!(second.join(), Ok(Ok(7)));
    assert!(q.is_empty());
}

// ---------------------------------------------------------------------------
// Stress: every item delivered exactly once

/// Generous: a stress stage on a slow, loaded machine.
const STRESS_BOUND: Duration = Duration::from_secs(120);

/// Items are `producer << 32 | sequence`.
fn item(p: u64, seq: u64) -> u64 {
    (p << 32) | seq
}

/// Marks `x` seen in the bitmap; fails if it was already.
fn see(seen: &[AtomicBool], per: u64, x: u64) {
    let (p, seq) = (x >> 32, x & 0xFFFF_FFFF);
    assert!(seq < per, "bad item {x:#x}");
    let was = seen[(p * per + seq) as usize].swap(true, Ordering::Relaxed);
    assert!(!was, "item {x:#x} delivered twice");
}

/// Runs `producers` threads putting `per` numbered items each through `q`
/// and `consumers` threads taking them (with task_done), mixing the
/// blocking, non-blocking and timed forms; checks every item arrives once
/// (and, for a FIFO, each producer's items in order, per consumer), that a
/// bounded queue never holds more than its bound, and that join returns.
fn stress_queue<O>(q: Queue<u64, O>, producers: u64, per: u64, consumers: u64, fifo: bool)
where
    O: Order<u64, Error = Infallible> + Send + 'static,
{
    let q = Arc::new(q);
    let maxsize = q.maxsize();
    let seen: Arc<Vec<AtomicBool>> = Arc::new(
        (0..producers * per)
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let consumer_tasks: Vec<Task<u64>> = (0..consumers)
        .map(|c| {
            let (q, seen) = (Arc::clone(&q), Arc::clone(&seen));
            spawn(move || {
                let mut rng = Rng::new(100 + c);
                let mut last = vec![-1i64; producers as usize];
                let mut n = 0;
                loop {
                    let r = match rng.below(32) {
                        0 => q.try_get(),
                        1 => q.get_timeout(Duration::from_micros(100)),
                        _ => q.get(),
                    };
                    let x = match r {
                        Ok(x) => x,
                        Err(GetError::Empty) => continue,
                        Err(GetError::ShutDown) => return n,
                        Err(GetError::Failed(never)) => match never {},
                    };
                    see(&seen, per, x);
                    if fifo {
                        let (p, seq) = ((x >> 32) as usize, (x & 0xFFFF_FFFF) as i64);
                        assert!(seq > last[p], "producer {p}: {seq} after {}", last[p]);
                        last[p] = seq;
                    }
                    q.task_done().unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    let producer_tasks: Vec<Task<()>> = (0..producers)
        .map(|p| {
            let q = Arc::clone(&q);
            spawn(move || {
                let mut rng = Rng::new(p);
                for seq in 0..per {
                    let x = item(p, seq);
                    match rng.below(16) {
                        0 => match q.try_put(x) {
                            Ok(()) => {}
                            Err(PutError::Full(x)) => q.put(x).unwrap(),
                            Err(e) => panic!("{e:?}"),
                        },
                        1 => {
                            let mut x = x;
                            loop {
                                match q.put_timeout(x, Duration::from_micros(100)) {
                                    Ok(()) => break,
                                    Err(PutError::Full(back)) => x = back,
                                    Err(e) => panic!("{e:?}"),
                                }
                            }
                        }
                        _ => q.put(x).unwrap(),
                    }
                    if maxsize > 0 {
                        let len = q.len();
                        assert!(len <= maxsize, "{len} items in a queue of {maxsize}");
                    }
                }
            })
        })
        .collect();
    for t in producer_tasks {
        t.join_within(STRESS_BOUND);
    }
    assert!(q.join_timeout(STRESS_BOUND), "join returns");
    assert_eq!(q.unfinished_tasks(), 0);
    assert!(q.is_empty());
    q.shutdown(false);
    let total: u64 = consumer_tasks
        .into_iter()
        .map(|t| t.join_within(STRESS_BOUND))
        .sum();
    assert_eq!(total, producers * per);
    assert!(seen.iter().all(|s| s.load(Ordering::Relaxed)));
}

#[test]
fn stress_fifo_bounded_8x8() {
    stress_queue(Queue::bounded(64), 8, 100_000, 8, true);
}

#[test]
fn stress_fifo_unbounded_8x8() {
    stress_queue(Queue::new(), 8, 100_000, 8, true);
}

#[test]
fn stress_lifo_and_priority() {
    stress_queue(
        LifoQueue::with_order(Default::default(), 16),
        4,
        20_000,
        4,
        false,
    );
    stress_queue(PriorityQueue::default(), 4, 20_000, 4, false);
}

#[test]
fn stress_simple_queue_8x8() {
    let (producers, per, consumers) = (8u64, 100_000u64, 8u64);
    let q = Arc::new(SimpleQueue::new());
    let seen: Arc<Vec<AtomicBool>> = Arc::new(
        (0..producers * per)
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let consumer_tasks: Vec<Task<u64>> = (0..consumers)
        .map(|c| {
            let (q, seen) = (Arc::clone(&q), Arc::clone(&seen));
            spawn(move || {
                let mut rng = Rng::new(200 + c);
                let mut last = vec![-1i64; producers as usize];
                let mut n = 0;
                loop {
                    let x = match rng.below(32) {
                        0 => q.try_get(),
                        1 => q.get_timeout(Duration::from_micros(100)),
                        _ => Some(q.get()),
                    };
                    let Some(x) = x else { continue };
                    if x == u64::MAX {
                        return n;
                    }
                    see(&seen, per, x);
                    let (p, seq) = ((x >> 32) as usize, (x & 0xFFFF_FFFF) as i64);
                    assert!(seq > last[p], "producer {p}: {seq} after {}", last[p]);
                    last[p] = seq;
                    n += 1;
                }
            })
        })
        .collect();
    let producer_tasks: Vec<Task<()>> = (0..producers)
        .map(|p| {
            let q = Arc::clone(&q);
            spawn(move || (0..per).for_each(|seq| q.put(item(p, seq))))
        })
        .collect();
    for t in producer_tasks {
        t.join_within(STRESS_BOUND);
    }
    // One end marker per consumer; each stops at the first it sees.
    for _ in 0..consumers {
        q.put(u64::MAX);
    }
    let total: u64 = consumer_tasks
        .into_iter()
        .map(|t| t.join_within(STRESS_BOUND))
        .sum();
    assert_eq!(total, producers * per);
    assert!(q.is_empty());
    assert!(seen.iter().all(|s| s.load(Ordering::Relaxed)));
}

/// An [`Interrupt`] with a short slice whose checks fail at random.
struct Flaky(Rng);

impl Interrupt for Flaky {
    type Error = Stop;
    fn slice(&self) -> Option<Duration> {
        Some(Duration::from_micros(50))
    }
    /// Waits sleep at once (no spinning first), so they are interrupted
    /// often; the spinning paths are stressed by the uninterruptible runs.
    fn may_spin(&self) -> bool {
        false
    }
    fn check(&mut self) -> Result<(), Stop> {
        if self.0.below(4) == 0 {
            Err(Stop(0))
        } else {
            Ok(())
        }
    }
}

/// Producers and consumers whose waits time out and are interrupted all
/// the time, on a small bound: a failed put keeps its item (and retries
/// it), a failed get takes nothing, and every item arrives exactly once.
#[test]
fn stress_with_timeouts_and_interrupts_loses_nothing() {
    let (producers, per, consumers) = (4u64, 20_000u64, 4u64);
    let q: Arc<Queue<u64>> = Arc::new(Queue::bounded(4));
    let seen: Arc<Vec<AtomicBool>> = Arc::new(
        (0..producers * per)
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let failures = Arc::new(AtomicUsize::new(0));
    let consumer_tasks: Vec<Task<u64>> = (0..consumers)
        .map(|c| {
            let (q, seen, failures) = (Arc::clone(&q), Arc::clone(&seen), Arc::clone(&failures));
            spawn(move || {
                let mut rng = Rng::new(300 + c);
                let mut flaky = Flaky(Rng::new(400 + c));
                let mut n = 0;
                loop {
                    let deadline = Instant::now() + Duration::from_micros(rng.below(300));
                    match q.get_with(Some(deadline), &mut flaky) {
                        Ok(x) => {
                            see(&seen, per, x);
                            q.task_done().unwrap();
                            n += 1;
                        }
                        Err(GetError::Empty) => {}
                        Err(GetError::Failed(Stop(_))) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(GetError::ShutDown) => return n,
                    }
                }
            })
        })
        .collect();
    let producer_tasks: Vec<Task<()>> = (0..producers)
        .map(|p| {
            let (q, failures) = (Arc::clone(&q), Arc::clone(&failures));
            spawn(move || {
                let mut rng = Rng::new(500 + p);
                let mut flaky = Flaky(Rng::new(600 + p));
                for seq in 0..per {
                    let mut x = item(p, seq);
                    loop {
                        let deadline = Instant::now() + Duration::from_micros(rng.below(300));
                        match q.put_with(x, Some(deadline), &mut flaky) {
                            Ok(()) => break,
                            Err(PutError::Full(back)) => x = back,
                            Err(PutError::Failed(back, Stop(_))) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                                x = back;
                            }
                            Err(PutError::ShutDown(_)) => panic!("not shut down"),
                        }
                        assert_eq!(x, item(p, seq), "the same item came back");
                    }
                }
            })
        })
        .collect();
    for t in producer_tasks {
        t.join_within(STRESS_BOUND);
    }
    assert!(q.join_timeout(STRESS_BOUND), "join returns");
    q.shutdown(false);
    let total: u64 = consumer_tasks
        .into_iter()
        .map(|t| t.join_within(STRESS_BOUND))
        .sum();
    assert_eq!(total, producers * per);
    assert!(seen.iter().all(|s| s.load(Ordering::Relaxed)));
    // How many waits the random checks interrupted depends on the
    // scheduling (a loaded machine may let every wait end by its deadline
    // or a wake before a slice ends): counted, not required. One
    // interrupted wait on a queue of the same kind, for certain: it takes
    // nothing and leaves the queue usable.
    let q: Queue<u64> = Queue::bounded(4);
    let mut probe = Probe::failing_after(1, Duration::from_millis(1));
    match q.get_with(Some(Instant::now() + BOUND), &mut probe) {
        Err(GetError::Failed(Stop(1))) => {}
        other => panic!("an interrupted get: {other:?}"),
    }
    q.put(7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
}
