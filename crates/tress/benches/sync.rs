//! Criterion benches for `tress::sync` against `parking_lot` and `std`.
//!
//! Each scenario is written once, generic over a tiny trait
//! ([`RawLock`], [`Reentrant`], [`Notifier`], [`PingPong`]), and run on every
//! implementation in the same group, interleaved in one run (PERF-NOTES
//! lesson 9: thread benchmarks swing with core placement, so only compare
//! numbers from the same run).
//!
//! ```text
//! cargo bench -p tress --bench sync                 # ~1 minute
//! cargo bench -p tress --bench sync -- --quick      # quicker, noisier
//! cargo bench -p tress --bench sync -- lock/        # one group
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};

// ---------------------------------------------------------------------------
// The baselines, behind one trait per scenario.

/// A mutual-exclusion lock taken and released around a critical section.
trait RawLock: Send + Sync + 'static {
    const NAME: &'static str;
    fn new() -> Self;
    fn with<R>(&self, f: impl FnOnce() -> R) -> R;
}

/// `tress::Lock`, the futex lock under `threading.Lock`.
struct TressLock(tress::Lock);
/// `parking_lot::Mutex<()>`.
struct PlMutex(parking_lot::Mutex<()>);
/// `std::sync::Mutex<()>`.
struct StdMutex(std::sync::Mutex<()>);

impl RawLock for TressLock {
    const NAME: &'static str = "tress";
    fn new() -> Self {
        Self(tress::Lock::new())
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        self.0.acquire();
        let r = f();
        self.0.release().unwrap();
        r
    }
}

impl RawLock for PlMutex {
    const NAME: &'static str = "parking_lot";
    fn new() -> Self {
        Self(parking_lot::Mutex::new(()))
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.0.lock();
        f()
    }
}

impl RawLock for StdMutex {
    const NAME: &'static str = "std";
    fn new() -> Self {
        Self(std::sync::Mutex::new(()))
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.0.lock().unwrap();
        f()
    }
}

/// A reentrant lock taken twice by its owner.
trait Reentrant: Send + Sync + 'static {
    const NAME: &'static str;
    fn new() -> Self;
    fn with<R>(&self, f: impl FnOnce() -> R) -> R;
}

/// `tress::RLock`.
struct TressRLock(tress::RLock);
/// `parking_lot::ReentrantMutex<()>`.
struct PlReentrant(parking_lot::ReentrantMutex<()>);

impl Reentrant for TressRLock {
    const NAME: &'static str = "tress";
    fn new() -> Self {
        Self(tress::RLock::new())
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        self.0.acquire().unwrap();
        let r = f();
        self.0.release().unwrap();
        r
    }
}

impl Reentrant for PlReentrant {
    const NAME: &'static str = "parking_lot";
    fn new() -> Self {
        Self(parking_lot::ReentrantMutex::new(()))
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.0.lock();
        f()
    }
}

/// A condition variable notified (under its lock) with nobody waiting.
trait Notifier: Send + Sync + 'static {
    const NAME: &'static str;
    fn new() -> Self;
    fn notify_one_locked(&self);
}

/// `tress::Condition<Lock>`.
struct TressCond(tress::Condition<tress::Lock>);
/// `parking_lot::Mutex` + `Condvar`.
struct PlCond(parking_lot::Mutex<()>, parking_lot::Condvar);
/// `std::sync::Mutex` + `Condvar`.
struct StdCond(std::sync::Mutex<()>, std::sync::Condvar);

impl Notifier for TressCond {
    const NAME: &'static str = "tress";
    fn new() -> Self {
        Self(tress::Condition::with_lock(tress::Lock::new()))
    }
    #[inline]
    fn notify_one_locked(&self) {
        self.0.acquire();
        black_box(self.0.notify(1).unwrap());
        self.0.release().unwrap();
    }
}

impl Notifier for PlCond {
    const NAME: &'static str = "parking_lot";
    fn new() -> Self {
        Self(parking_lot::Mutex::new(()), parking_lot::Condvar::new())
    }
    #[inline]
    fn notify_one_locked(&self) {
        let _g = self.0.lock();
        black_box(self.1.notify_one());
    }
}

impl Notifier for StdCond {
    const NAME: &'static str = "std";
    fn new() -> Self {
        Self(std::sync::Mutex::new(()), std::sync::Condvar::new())
    }
    #[inline]
    fn notify_one_locked(&self) {
        let _g = self.0.lock().unwrap();
        self.1.notify_one();
    }
}

/// Two threads taking turns: `wait_turn(t)` blocks until the turn counter
/// reads `t`, `pass(t + 1)` hands over.
trait PingPong: Send + Sync + 'static {
    const NAME: &'static str;
    fn new() -> Self;
    fn wait_turn(&self, turn: u64);
    fn pass(&self, next: u64);
}

/// `tress::Condition<Lock>` guarding a turn counter.
struct TressCondTurns {
    /// The condition; its lock guards `turn`.
    cond: tress::Condition<tress::Lock>,
    /// Accessed under `cond`'s lock only (atomic just to stay safe code).
    turn: std::sync::atomic::AtomicU64,
}

impl PingPong for TressCondTurns {
    const NAME: &'static str = "tress Condition";
    fn new() -> Self {
        Self {
            cond: tress::Condition::with_lock(tress::Lock::new()),
            turn: 0.into(),
        }
    }
    fn wait_turn(&self, turn: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.cond.acquire();
        while self.turn.load(Relaxed) != turn {
            self.cond.wait().unwrap();
        }
        self.cond.release().unwrap();
    }
    fn pass(&self, next: u64) {
        self.cond.acquire();
        self.turn.store(next, std::sync::atomic::Ordering::Relaxed);
        self.cond.notify(1).unwrap();
        self.cond.release().unwrap();
    }
}

/// Two `tress::Event`s: each side sets the other's and clears its own.
struct TressEvents([tress::Event; 2]);

impl PingPong for TressEvents {
    const NAME: &'static str = "tress Event";
    fn new() -> Self {
        Self([tress::Event::new(), tress::Event::new()])
    }
    fn wait_turn(&self, turn: u64) {
        let ev = &self.0[(turn % 2) as usize];
        ev.wait();
        ev.clear();
    }
    fn pass(&self, next: u64) {
        self.0[(next % 2) as usize].set();
    }
}

/// Two `tress::Lock`s used as binary semaphores: released by the other
/// thread (Python's classic `Lock` handoff).
struct TressLockHandoff([tress::Lock; 2]);

impl PingPong for TressLockHandoff {
    const NAME: &'static str = "tress Lock handoff";
    fn new() -> Self {
        let locks = [tress::Lock::new(), tress::Lock::new()];
        locks[0].acquire();
        locks[1].acquire();
        Self(locks)
    }
    fn wait_turn(&self, turn: u64) {
        self.0[(turn % 2) as usize].acquire();
    }
    fn pass(&self, next: u64) {
        self.0[(next % 2) as usize].release().unwrap();
    }
}

/// `parking_lot::Mutex<u64>` + `Condvar`.
struct PlTurns(parking_lot::Mutex<u64>, parking_lot::Condvar);

impl PingPong for PlTurns {
    const NAME: &'static str = "parking_lot Mutex+Condvar";
    fn new() -> Self {
        Self(parking_lot::Mutex::new(0), parking_lot::Condvar::new())
    }
    fn wait_turn(&self, turn: u64) {
        let mut g = self.0.lock();
        while *g != turn {
            self.1.wait(&mut g);
        }
    }
    fn pass(&self, next: u64) {
        *self.0.lock() = next;
        self.1.notify_one();
    }
}

/// `std::sync::Mutex<u64>` + `Condvar`.
struct StdTurns(std::sync::Mutex<u64>, std::sync::Condvar);

impl PingPong for StdTurns {
    const NAME: &'static str = "std Mutex+Condvar";
    fn new() -> Self {
        Self(std::sync::Mutex::new(0), std::sync::Condvar::new())
    }
    fn wait_turn(&self, turn: u64) {
        let mut g = self.0.lock().unwrap();
        while *g != turn {
            g = self.1.wait(g).unwrap();
        }
    }
    fn pass(&self, next: u64) {
        *self.0.lock().unwrap() = next;
        self.1.notify_one();
    }
}

// ---------------------------------------------------------------------------
// The scenarios, each written once.

type Group<'a> = BenchmarkGroup<'a, WallTime>;

fn uncontended<L: RawLock>(g: &mut Group<'_>) {
    let lock = L::new();
    g.bench_function(L::NAME, |b| b.iter(|| black_box(&lock).with(|| ())));
}

/// Two threads each doing `iters` lock/unlock pairs around a tiny
/// critical section; reports the time per pair per thread.
fn contended<L: RawLock>(g: &mut Group<'_>) {
    g.bench_function(L::NAME, |b| {
        b.iter_custom(|iters| {
            let lock = Arc::new(L::new());
            let start = Arc::new(std::sync::Barrier::new(2));
            let (l, s) = (Arc::clone(&lock), Arc::clone(&start));
            let other = std::thread::spawn(move || {
                s.wait();
                for i in 0..iters {
                    l.with(|| black_box(i));
                }
            });
            start.wait();
            let t0 = Instant::now();
            for i in 0..iters {
                lock.with(|| black_box(i));
            }
            other.join().unwrap();
            t0.elapsed()
        });
    });
}

/// Acquire+release of a free reentrant lock (`hold_outer == false`), or one
/// more level while the thread already holds it.
fn reentrant<L: Reentrant>(g: &mut Group<'_>, hold_outer: bool) {
    let lock = L::new();
    let bench = |g: &mut Group<'_>| {
        g.bench_function(L::NAME, |b| b.iter(|| black_box(&lock).with(|| ())));
    };
    if hold_outer {
        lock.with(|| bench(g));
    } else {
        bench(g);
    }
}

fn notify_nobody<N: Notifier>(g: &mut Group<'_>) {
    let n = N::new();
    g.bench_function(N::NAME, |b| b.iter(|| black_box(&n).notify_one_locked()));
}

/// One round trip: main passes the turn to the partner and waits for it
/// back. The partner thread starts before the clock does.
fn ping_pong<P: PingPong>(g: &mut Group<'_>) {
    g.bench_function(P::NAME, |b| {
        b.iter_custom(|iters| {
            let p = Arc::new(P::new());
            let start = Arc::new(std::sync::Barrier::new(2));
            let (q, s) = (Arc::clone(&p), Arc::clone(&start));
            let partner = std::thread::spawn(move || {
                s.wait();
                for i in 0..iters {
                    q.wait_turn(2 * i + 1);
                    q.pass(2 * i + 2);
                }
            });
            start.wait();
            let t0 = Instant::now();
            for i in 0..iters {
                p.pass(2 * i + 1);
                p.wait_turn(2 * i + 2);
            }
            let took = t0.elapsed();
            partner.join().unwrap();
            took
        });
    });
}

// ---------------------------------------------------------------------------
// Groups.

fn locks(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock/uncontended");
    uncontended::<TressLock>(&mut g);
    uncontended::<PlMutex>(&mut g);
    uncontended::<StdMutex>(&mut g);
    g.finish();

    let mut g = c.benchmark_group("lock/contended-2-threads");
    contended::<TressLock>(&mut g);
    contended::<PlMutex>(&mut g);
    contended::<StdMutex>(&mut g);
    g.finish();

    for (name, hold_outer) in [("rlock/uncontended", false), ("rlock/reenter", true)] {
        let mut g = c.benchmark_group(name);
        reentrant::<TressRLock>(&mut g, hold_outer);
        reentrant::<PlReentrant>(&mut g, hold_outer);
        g.finish();
    }
}

fn semaphore_and_event(c: &mut Criterion) {
    let mut g = c.benchmark_group("semaphore/acquire-release");
    let sem = tress::Semaphore::new(1);
    g.bench_function("tress", |b| {
        b.iter(|| {
            let s = black_box(&sem);
            s.acquire();
            s.release(1).unwrap();
        });
    });
    let bounded = tress::BoundedSemaphore::new(1);
    g.bench_function("tress bounded", |b| {
        b.iter(|| {
            let s = black_box(&bounded);
            s.acquire();
            s.release(1).unwrap();
        });
    });
    g.finish();

    let mut g = c.benchmark_group("event/set-is_set-clear");
    let ev = tress::Event::new();
    g.bench_function("tress", |b| {
        b.iter(|| {
            let e = black_box(&ev);
            e.set();
            black_box(e.is_set());
            e.clear();
        });
    });
    g.finish();
}

fn conditions(c: &mut Criterion) {
    let mut g = c.benchmark_group("condition/notify-nobody");
    notify_nobody::<TressCond>(&mut g);
    notify_nobody::<PlCond>(&mut g);
    notify_nobody::<StdCond>(&mut g);
    g.finish();

    let mut g = c.benchmark_group("ping-pong/round-trip");
    ping_pong::<TressCondTurns>(&mut g);
    ping_pong::<TressEvents>(&mut g);
    ping_pong::<TressLockHandoff>(&mut g);
    ping_pong::<PlTurns>(&mut g);
    ping_pong::<StdTurns>(&mut g);
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = locks, semaphore_and_event, conditions
}
criterion_main!(benches);
