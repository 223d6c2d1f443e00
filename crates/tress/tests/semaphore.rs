//! `Semaphore` and `BoundedSemaphore`: permits never exceeded, `release(n)`
//! wakes `n`, bounds and overflow change nothing, timeouts and interrupts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Probe, Rng, Stop, Task, assert_timed, join_all, spawn, stays, wait_until};
use tress::{BoundedSemaphore, CountOverflow, Semaphore, TooManyReleases, Uninterruptible};

/// The operations the stress test needs from both semaphore kinds.
trait Permits: Send + Sync + 'static {
    fn take(&self, how: u64) -> bool;
    fn give(&self);
    fn available(&self) -> usize;
}

impl Permits for Semaphore {
    fn take(&self, how: u64) -> bool {
        take(
            how,
            || self.try_acquire(),
            || self.acquire(),
            |d| self.acquire_timeout(d),
            |d| self.acquire_deadline(d),
            || self.acquire_with(None, &mut Uninterruptible).unwrap(),
        )
    }
    fn give(&self) {
        self.release(1).unwrap();
    }
    fn available(&self) -> usize {
        self.value()
    }
}

impl Permits for BoundedSemaphore {
    fn take(&self, how: u64) -> bool {
        take(
            how,
            || self.try_acquire(),
            || self.acquire(),
            |d| self.acquire_timeout(d),
            |d| self.acquire_deadline(d),
            || self.acquire_with(None, &mut Uninterruptible).unwrap(),
        )
    }
    fn give(&self) {
        self.release(1).unwrap();
    }
    fn available(&self) -> usize {
        self.value()
    }
}

/// Takes a permit by one of the five forms; `false` only for a failed try.
fn take(
    how: u64,
    try_: impl Fn() -> bool,
    block: impl Fn(),
    timeout: impl Fn(Duration) -> bool,
    deadline: impl Fn(Instant) -> bool,
    with: impl Fn() -> bool,
) -> bool {
    match how % 5 {
        0 => try_(),
        1 => {
            block();
            true
        }
        2 => timeout(Duration::from_micros(200)) || timeout(common::BOUND),
        3 => deadline(Instant::now() + common::BOUND),
        _ => with(),
    }
}

fn permits_never_exceed<S: Permits>(sem: S, permits: usize) {
    const THREADS: u64 = 8;
    const ITERS: usize = 3_000;
    let sem = Arc::new(sem);
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks = (0..THREADS)
        .map(|t| {
            let (sem, active, peak) = (Arc::clone(&sem), Arc::clone(&active), Arc::clone(&peak));
            spawn(move || {
                let mut rng = Rng::new(t);
                let mut done = 0;
                while done < ITERS {
                    if !sem.take(rng.next_u64()) {
                        continue;
                    }
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    if rng.below(8) == 0 {
                        std::thread::yield_now();
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                    sem.give();
                    done += 1;
                }
            })
        })
        .collect();
    join_all(tasks);
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= permits, "{peak} holders of {permits} permits");
    assert!(peak >= 1);
    assert_eq!(sem.available(), permits);
}

#[test]
fn semaphore_permits_never_exceed() {
    permits_never_exceed(Semaphore::new(3), 3);
}

#[test]
fn bounded_semaphore_permits_never_exceed() {
    permits_never_exceed(BoundedSemaphore::new(2), 2);
}

#[test]
fn single_permit_is_a_lock() {
    permits_never_exceed(Semaphore::new(1), 1);
}

/// Starts `m` threads blocked on an empty semaphore; returns once each has
/// gone to sleep.
fn blocked_acquirers(sem: &Arc<Semaphore>, m: usize) -> (Vec<Task<()>>, Arc<AtomicUsize>) {
    let got = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..m)
        .map(|_| {
            let (sem, got) = (Arc::clone(sem), Arc::clone(&got));
            let probe = Probe::new();
            let counts = probe.counts();
            let t = spawn(move || {
                let mut probe = probe;
                assert_eq!(
                    sem.acquire_with(Some(Instant::now() + common::BOUND), &mut probe),
                    Ok(true)
                );
                got.fetch_add(1, Ordering::SeqCst);
            });
            wait_until("the acquirer to sleep", || counts.slept());
            t
        })
        .collect();
    (tasks, got)
}

#[test]
fn release_n_wakes_exactly_n() {
    let sem = Arc::new(Semaphore::new(0));
    let (tasks, got) = blocked_acquirers(&sem, 6);
    let mut expected = 0;
    for n in [2, 1, 3] {
        sem.release(n).unwrap();
        expected += n;
        wait_until("n acquirers to get a permit", || {
            got.load(Ordering::SeqCst) == expected
        });
        stays("no more acquirers than permits", || {
            got.load(Ordering::SeqCst) == expected && sem.value() == 0
        });
    }
    join_all(tasks);
    assert_eq!(sem.value(), 0);
}

#[test]
fn release_many_at_once_wakes_all() {
    let sem = Arc::new(Semaphore::new(0));
    let (tasks, got) = blocked_acquirers(&sem, 5);
    sem.release(8).unwrap();
    join_all(tasks);
    assert_eq!(got.load(Ordering::SeqCst), 5);
    assert_eq!(sem.value(), 3);
}

#[test]
fn try_and_timeouts() {
    let sem = Semaphore::new(2);
    assert!(sem.try_acquire());
    assert!(sem.acquire_timeout(Duration::ZERO));
    assert!(!sem.try_acquire());
    assert_eq!(sem.value(), 0);
    for ms in [1, 30] {
        let d = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(!sem.acquire_timeout(d));
        assert_timed(start.elapsed(), d);
        let start = Instant::now();
        assert!(!sem.acquire_deadline(start + d));
        assert_timed(start.elapsed(), d);
        let start = Instant::now();
        assert_eq!(
            sem.acquire_with(Some(start + d), &mut Uninterruptible),
            Ok(false)
        );
        assert_timed(start.elapsed(), d);
    }
    assert!(!sem.acquire_deadline(Instant::now()));
    assert_eq!(sem.value(), 0);
    sem.release(1).unwrap();
    assert!(sem.acquire_timeout(Duration::from_millis(1)));
}

#[test]
fn release_from_another_thread_wakes_timed_acquire() {
    let sem = Arc::new(Semaphore::new(0));
    let s = Arc::clone(&sem);
    let t = spawn(move || s.acquire_timeout(common::BOUND));
    std::thread::sleep(Duration::from_millis(10));
    sem.release(1).unwrap();
    assert!(t.join());
    assert_eq!(sem.value(), 0);
}

#[test]
fn interrupted_acquire_changes_nothing() {
    let sem = Arc::new(Semaphore::new(0));
    let mut probe = Probe::failing_after(3, Duration::from_millis(1));
    let start = Instant::now();
    assert_eq!(sem.acquire_with(None, &mut probe), Err(Stop(3)));
    assert!(start.elapsed() >= Duration::from_millis(3));
    assert_eq!(sem.value(), 0);

    // A sleeper left behind by the interrupted call still gets its permit.
    let (tasks, got) = blocked_acquirers(&sem, 1);
    let mut probe = Probe::failing_after(2, Duration::from_millis(1));
    assert_eq!(sem.acquire_with(None, &mut probe), Err(Stop(2)));
    sem.release(1).unwrap();
    join_all(tasks);
    assert_eq!(got.load(Ordering::SeqCst), 1);
    assert_eq!(sem.value(), 0);

    let bounded = BoundedSemaphore::new(1);
    bounded.acquire();
    let mut probe = Probe::failing_after(1, Duration::from_millis(1));
    assert_eq!(bounded.acquire_with(None, &mut probe), Err(Stop(1)));
    assert_eq!(bounded.value(), 0);
    bounded.release(1).unwrap();
    assert_eq!(bounded.value(), 1);
}

#[test]
fn too_many_releases_changes_nothing() {
    let sem = BoundedSemaphore::new(3);
    assert_eq!(sem.bound(), 3);
    assert_eq!(sem.release(1), Err(TooManyReleases));
    assert_eq!(sem.value(), 3);
    sem.acquire();
    sem.acquire();
    assert_eq!(sem.value(), 1);
    assert_eq!(sem.release(3), Err(TooManyReleases));
    assert_eq!(sem.value(), 1);
    assert_eq!(sem.release(usize::MAX), Err(TooManyReleases));
    assert_eq!(sem.value(), 1);
    assert_eq!(sem.release(2), Ok(()));
    assert_eq!(sem.value(), 3);
    assert_eq!(sem.release(0), Ok(()));
    assert_eq!(sem.release(1), Err(TooManyReleases));
    assert_eq!(sem.value(), 3);
    assert_eq!(
        TooManyReleases.to_string(),
        "Semaphore released too many times"
    );

    // A zero-sized bounded semaphore never has a permit.
    let zero = BoundedSemaphore::new(0);
    assert!(!zero.try_acquire());
    assert_eq!(zero.release(1), Err(TooManyReleases));
    assert_eq!(zero.release(0), Ok(()));
}

#[test]
fn bounded_release_from_other_threads_never_exceeds_bound() {
    // Threads race to release more than was taken: exactly the taken ones
    // succeed.
    let sem = Arc::new(BoundedSemaphore::new(4));
    for _ in 0..3 {
        sem.acquire();
    }
    let ok = Arc::new(AtomicUsize::new(0));
    let tasks = (0..8)
        .map(|_| {
            let (sem, ok) = (Arc::clone(&sem), Arc::clone(&ok));
            spawn(move || {
                if sem.release(1).is_ok() {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    join_all(tasks);
    assert_eq!(ok.load(Ordering::SeqCst), 3);
    assert_eq!(sem.value(), 4);
}

#[test]
fn overflow_changes_nothing() {
    let sem = Semaphore::new(usize::MAX);
    assert_eq!(sem.release(1), Err(CountOverflow));
    assert_eq!(sem.value(), usize::MAX);
    assert!(sem.try_acquire());
    assert_eq!(sem.release(1), Ok(()));
    assert_eq!(sem.release(2), Err(CountOverflow));

    let sem = Semaphore::new(5);
    assert_eq!(sem.release(usize::MAX), Err(CountOverflow));
    assert_eq!(sem.value(), 5);
    assert_eq!(sem.release(usize::MAX - 5), Ok(()));
    assert_eq!(sem.value(), usize::MAX);

    let bounded = BoundedSemaphore::new(usize::MAX);
    assert!(bounded.try_acquire());
    assert_eq!(bounded.release(2), Err(TooManyReleases));
    assert_eq!(bounded.release(1), Ok(()));
}

#[test]
fn large_counts() {
    let sem = Semaphore::new(0);
    sem.release(1000).unwrap();
    let mut n = 0;
    while sem.try_acquire() {
        n += 1;
    }
    assert_eq!(n, 1000);
    assert_eq!(sem.value(), 0);
}
