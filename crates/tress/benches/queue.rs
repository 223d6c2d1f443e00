//! Criterion benches for `tress::queue` against crossbeam-channel, flume and
//! a `Mutex<VecDeque>` + `Condvar` queue on `std` and on `parking_lot`.
//!
//! Every scenario moves `iters` numbered messages from P producer threads to
//! C consumer threads through one queue, so criterion's time per iteration
//! is the time per message, end to end (threads start together at a
//! barrier, the clock stops when the last one is done). Sampling is flat:
//! every sample moves the same, large, number of messages, which keeps
//! thread start-up out of the figures. All implementations of a scenario run
//! in the same group, interleaved in one run (PERF-NOTES lesson 9: thread
//! benchmarks swing with core placement; compare within a run only).
//!
//! The DESIGN target for the Rust API is "within 1.2x of crossbeam-channel".
//!
//! ```text
//! cargo bench -p tress --bench queue                  # ~2 minutes
//! cargo bench -p tress --bench queue -- --quick       # quicker, noisier
//! cargo bench -p tress --bench queue -- 4p4c          # one scenario
//! ```

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};

// ---------------------------------------------------------------------------
// The implementations, behind one trait.

/// A multi-producer, multi-consumer queue of `u64`.
trait Channel: Send + Sync + 'static {
    const NAME: &'static str;
    /// Whether it can be bounded (`SimpleQueue` cannot).
    const BOUNDABLE: bool = true;
    /// A queue holding at most `bound` messages (0: unbounded).
    fn new(bound: usize) -> Self;
    fn send(&self, x: u64);
    fn recv(&self) -> u64;
}

/// `tress::Queue` (FIFO), put and get, no `task_done`.
struct TressQueue(tress::Queue<u64>);
/// `tress::Queue` with `task_done` after every get, as Python code uses it.
struct TressQueueTaskDone(tress::Queue<u64>);
/// `tress::SimpleQueue` (unbounded only).
struct TressSimple(tress::SimpleQueue<u64>);
/// `crossbeam_channel::{unbounded, bounded}`.
struct Crossbeam(
    crossbeam_channel::Sender<u64>,
    crossbeam_channel::Receiver<u64>,
);
/// `flume::{unbounded, bounded}`.
struct Flume(flume::Sender<u64>, flume::Receiver<u64>);

impl Channel for TressQueue {
    const NAME: &'static str = "tress Queue";
    fn new(bound: usize) -> Self {
        Self(tress::Queue::bounded(bound))
    }
    #[inline]
    fn send(&self, x: u64) {
        self.0.put(x).unwrap();
    }
    #[inline]
    fn recv(&self) -> u64 {
        self.0.get().unwrap()
    }
}

impl Channel for TressQueueTaskDone {
    const NAME: &'static str = "tress Queue+task_done";
    fn new(bound: usize) -> Self {
        Self(tress::Queue::bounded(bound))
    }
    #[inline]
    fn send(&self, x: u64) {
        self.0.put(x).unwrap();
    }
    #[inline]
    fn recv(&self) -> u64 {
        let x = self.0.get().unwrap();
        self.0.task_done().unwrap();
        x
    }
}

impl Channel for TressSimple {
    const NAME: &'static str = "tress SimpleQueue";
    const BOUNDABLE: bool = false;
    fn new(bound: usize) -> Self {
        assert_eq!(bound, 0, "SimpleQueue is unbounded");
        Self(tress::SimpleQueue::new())
    }
    #[inline]
    fn send(&self, x: u64) {
        self.0.put(x);
    }
    #[inline]
    fn recv(&self) -> u64 {
        self.0.get()
    }
}

impl Channel for Crossbeam {
    const NAME: &'static str = "crossbeam-channel";
    fn new(bound: usize) -> Self {
        let (tx, rx) = if bound == 0 {
            crossbeam_channel::unbounded()
        } else {
            crossbeam_channel::bounded(bound)
        };
        Self(tx, rx)
    }
    #[inline]
    fn send(&self, x: u64) {
        self.0.send(x).unwrap();
    }
    #[inline]
    fn recv(&self) -> u64 {
        self.1.recv().unwrap()
    }
}

impl Channel for Flume {
    const NAME: &'static str = "flume";
    fn new(bound: usize) -> Self {
        let (tx, rx) = if bound == 0 {
            flume::unbounded()
        } else {
            flume::bounded(bound)
        };
        Self(tx, rx)
    }
    #[inline]
    fn send(&self, x: u64) {
        self.0.send(x).unwrap();
    }
    #[inline]
    fn recv(&self) -> u64 {
        self.1.recv().unwrap()
    }
}

/// The textbook queue: `std::sync::Mutex<VecDeque>` and two `Condvar`s,
/// notifying after every operation (after unlocking).
struct StdQueue {
    items: std::sync::Mutex<VecDeque<u64>>,
    not_empty: std::sync::Condvar,
    not_full: std::sync::Condvar,
    bound: usize,
}

impl Channel for StdQueue {
    const NAME: &'static str = "std Mutex+Condvar";
    fn new(bound: usize) -> Self {
        Self {
            items: std::sync::Mutex::new(VecDeque::new()),
            not_empty: std::sync::Condvar::new(),
            not_full: std::sync::Condvar::new(),
            bound,
        }
    }
    #[inline]
    fn send(&self, x: u64) {
        let mut items = self.items.lock().unwrap();
        while self.bound > 0 && items.len() >= self.bound {
            items = self.not_full.wait(items).unwrap();
        }
        items.push_back(x);
        drop(items);
        self.not_empty.notify_one();
    }
    #[inline]
    fn recv(&self) -> u64 {
        let mut items = self.items.lock().unwrap();
        let x = loop {
            match items.pop_front() {
                Some(x) => break x,
                None => items = self.not_empty.wait(items).unwrap(),
            }
        };
        drop(items);
        if self.bound > 0 {
            self.not_full.notify_one();
        }
        x
    }
}

/// The same on `parking_lot` (whose notify with nobody waiting is free).
struct PlQueue {
    items: parking_lot::Mutex<VecDeque<u64>>,
    not_empty: parking_lot::Condvar,
    not_full: parking_lot::Condvar,
    bound: usize,
}

impl Channel for PlQueue {
    const NAME: &'static str = "parking_lot Mutex+Condvar";
    fn new(bound: usize) -> Self {
        Self {
            items: parking_lot::Mutex::new(VecDeque::new()),
            not_empty: parking_lot::Condvar::new(),
            not_full: parking_lot::Condvar::new(),
            bound,
        }
    }
    #[inline]
    fn send(&self, x: u64) {
        let mut items = self.items.lock();
        while self.bound > 0 && items.len() >= self.bound {
            self.not_full.wait(&mut items);
        }
        items.push_back(x);
        drop(items);
        self.not_empty.notify_one();
    }
    #[inline]
    fn recv(&self) -> u64 {
        let mut items = self.items.lock();
        let x = loop {
            match items.pop_front() {
                Some(x) => break x,
                None => self.not_empty.wait(&mut items),
            }
        };
        drop(items);
        if self.bound > 0 {
            self.not_full.notify_one();
        }
        x
    }
}

// ---------------------------------------------------------------------------
// The scenario.

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Thread `i` of `n`'s share of `total` messages.
fn share(total: u64, n: u64, i: u64) -> u64 {
    total / n + u64::from(i < total % n)
}

/// `iters` messages from `producers` threads to `consumers` threads through
/// one fresh `C` holding at most `bound` (0: unbounded); the time from the
/// common start to the last thread's end.
fn transfer<C: Channel>(g: &mut Group<'_>, bound: usize, producers: u64, consumers: u64) {
    if bound > 0 && !C::BOUNDABLE {
        return;
    }
    g.bench_function(C::NAME, |b| {
        b.iter_custom(|iters| {
            let ch = Arc::new(C::new(bound));
            let start = Arc::new(Barrier::new((producers + consumers + 1) as usize));
            let mut threads = Vec::new();
            for p in 0..producers {
                let (ch, start) = (Arc::clone(&ch), Arc::clone(&start));
                let n = share(iters, producers, p);
                threads.push(std::thread::spawn(move || {
                    start.wait();
                    for x in 0..n {
                        ch.send(x);
                    }
                    0
                }));
            }
            for c in 0..consumers {
                let (ch, start) = (Arc::clone(&ch), Arc::clone(&start));
                let n = share(iters, consumers, c);
                threads.push(std::thread::spawn(move || {
                    start.wait();
                    let mut sum = 0u64;
                    for _ in 0..n {
                        sum = sum.wrapping_add(black_box(ch.recv()));
                    }
                    sum
                }));
            }
            start.wait();
            let t0 = Instant::now();
            let sum = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .fold(0u64, u64::wrapping_add);
            let took = t0.elapsed();
            let expected = (0..producers)
                .map(|p| {
                    let n = share(iters, producers, p);
                    n * n.saturating_sub(1) / 2
                })
                .fold(0u64, u64::wrapping_add);
            assert_eq!(sum, expected, "{}: messages lost or duplicated", C::NAME);
            took
        });
    });
}

fn scenario(c: &mut Criterion, producers: u64, consumers: u64, bound: usize) {
    let name = match bound {
        0 => format!("queue/{producers}p{consumers}c-unbounded"),
        n => format!("queue/{producers}p{consumers}c-bounded{n}"),
    };
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.sampling_mode(SamplingMode::Flat);
    transfer::<TressQueue>(&mut g, bound, producers, consumers);
    transfer::<TressQueueTaskDone>(&mut g, bound, producers, consumers);
    transfer::<TressSimple>(&mut g, bound, producers, consumers);
    transfer::<Crossbeam>(&mut g, bound, producers, consumers);
    transfer::<Flume>(&mut g, bound, producers, consumers);
    transfer::<PlQueue>(&mut g, bound, producers, consumers);
    transfer::<StdQueue>(&mut g, bound, producers, consumers);
    g.finish();
}

fn queues(c: &mut Criterion) {
    for (producers, consumers) in [(1, 1), (4, 4)] {
        for bound in [0, 100] {
            scenario(c, producers, consumers, bound);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = queues
}
criterion_main!(benches);
