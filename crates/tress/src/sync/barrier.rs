//! [`Barrier`]: a rendezvous of a fixed number of threads, Python style.
//!
//! The state machine is CPython's `threading.Barrier` (Lib/threading.py,
//! 3.11): a barrier fills, then drains (the released threads leave), and only
//! then fills again; it can be broken (abort, a timeout, a failing action)
//! and reset. Deviations: the action runs with the internal lock *released*,
//! in a phase of its own (`Releasing`) that the other threads treat as still
//! filling, so an action that blocks or calls into a runtime with its own
//! global lock cannot deadlock threads that arrive or look meanwhile; `abort`
//! and `reset` from another thread wait for the action to finish, as they
//! would wait for CPython's lock, and from the action itself take effect at
//! once (CPython deadlocks there).
//!
//! Waiting: the state sits in a [`Mutex`]; threads that must wait read the
//! `epoch` word under the mutex, release it and sleep on `epoch`; every state
//! change bumps `epoch` under the mutex and wakes the sleepers, if any. A
//! change after the read therefore makes the sleep return at once.

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::BarrierError;
use crate::interrupt::{Interrupt, Parked, Uninterruptible, deadline_after, park};
use crate::sync::{Mutex, MutexGuard};
use crate::sys::{self, current_thread_id};

/// Where a barrier is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Threads arrive and wait.
    Filling,
    /// The last thread runs the action; the others still wait.
    Releasing,
    /// Released threads leave; newcomers wait for them.
    Draining,
    /// Reset while threads waited: they leave with an error; newcomers wait.
    Resetting,
    /// Broken until reset.
    Broken,
}

#[derive(Debug)]
struct State {
    /// The phase.
    phase: Phase,
    /// Threads inside `wait` (arrived and not yet left).
    count: usize,
    /// The thread running the action, while `phase == Releasing`.
    releaser: usize,
}

type Action = Box<dyn Fn() + Send + Sync>;

/// Lets `parties` threads wait for each other: each `wait` blocks until the
/// last one arrives, then all are released with distinct indices
/// `0..parties`, and the barrier can be used again.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use tress::Barrier;
///
/// let barrier = Arc::new(Barrier::new(3));
/// let handles: Vec<_> = (0..3)
///     .map(|_| {
///         let b = Arc::clone(&barrier);
///         std::thread::spawn(move || b.wait().unwrap())
///     })
///     .collect();
/// let mut indices: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// ```
pub struct Barrier {
    /// How many threads make the barrier trip.
    parties: usize,
    /// Phase and count.
    state: Mutex<State>,
    /// Bumped on every state change that a sleeper may wait for.
    epoch: AtomicU32,
    /// Threads sleeping on `epoch`, counted under `state`'s lock.
    sleepers: AtomicU32,
    /// Run by the last thread to arrive, before the others are released.
    action: Option<Action>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A `wait` failed because the barrier is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BrokenBarrier;

impl fmt::Display for BrokenBarrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the barrier is broken")
    }
}

impl std::error::Error for BrokenBarrier {}

impl Barrier {
    /// A barrier for `parties` threads.
    ///
    /// # Panics
    ///
    /// If `parties` is 0.
    pub fn new(parties: usize) -> Self {
        assert!(parties > 0, "a barrier needs at least one party");
        Self {
            parties,
            state: Mutex::new(State {
                phase: Phase::Filling,
                count: 0,
                releaser: 0,
            }),
            epoch: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            action: None,
        }
    }

    /// A barrier for `parties` threads whose last arrival runs `action`
    /// before the others are released.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let runs = Arc::new(AtomicUsize::new(0));
    /// let r = Arc::clone(&runs);
    /// let b = tress::Barrier::with_action(1, move || { r.fetch_add(1, Ordering::Relaxed); });
    /// b.wait().unwrap();
    /// assert_eq!(runs.load(Ordering::Relaxed), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// If `parties` is 0.
    pub fn with_action(parties: usize, action: impl Fn() + Send + Sync + 'static) -> Self {
        let mut b = Self::new(parties);
        b.action = Some(Box::new(action));
        b
    }

    /// How many threads make the barrier trip.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// How many threads wait in the filling phase (a snapshot).
    pub fn n_waiting(&self) -> usize {
        let s = self.state.lock();
        match s.phase {
            Phase::Filling | Phase::Releasing => s.count,
            _ => 0,
        }
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.state.lock().phase == Phase::Broken
    }

    /// Waits for the other parties; returns this thread's arrival index.
    pub fn wait(&self) -> Result<usize, BrokenBarrier> {
        self.wait_until(None)
    }

    /// Waits at most `timeout`; a timeout breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BrokenBarrier> {
        self.wait_until(deadline_after(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<usize, BrokenBarrier> {
        self.wait_with(deadline, &mut Uninterruptible)
            .map_err(|_| BrokenBarrier)
    }

    /// Waits until `deadline` (forever if `None`) unless `interrupt`
    /// abandons the wait, running the barrier's own action if this thread is
    /// the last to arrive.
    pub fn wait_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<usize, BarrierError<I::Error>> {
        match &self.action {
            None => {
                self.wait_with_action(deadline, interrupt, None::<fn() -> Result<(), Infallible>>)
            }
            Some(action) => self.wait_with_action(
                deadline,
                interrupt,
                Some(|| {
                    action();
                    Ok(())
                }),
            ),
        }
    }

    /// The general form: as [`wait_with`](Self::wait_with), running `action`
    /// (instead of the barrier's own) if this thread is the last to arrive.
    /// An action that fails breaks the barrier and its error is returned to
    /// this thread; the others get [`BarrierError::Broken`].
    ///
    /// A timeout breaks the barrier (the others get `Broken`); an interrupted
    /// wait leaves it unbroken: the thread is no longer counted, so the
    /// others wait for another arrival — unless the barrier tripped while the
    /// interrupt was being checked, in which case the others are released
    /// and only this thread sees the interruption (as in CPython).
    pub fn wait_with_action<I: Interrupt + ?Sized, A>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
        action: Option<impl FnOnce() -> Result<(), A>>,
    ) -> Result<usize, BarrierError<I::Error, A>> {
        self.wait_with_action_lazy(|| Ok(deadline), interrupt, action)
    }

    /// As [`wait_with_action`](Self::wait_with_action), with the deadline
    /// worked out by `deadline` only if this thread has to wait for others,
    /// once the previous cycle has drained (as CPython's `Barrier.wait` looks
    /// at its timeout), called with the barrier's internal lock released. An
    /// error from it leaves the barrier as an interrupt does.
    pub fn wait_with_action_lazy<I: Interrupt + ?Sized, A>(
        &self,
        deadline: impl FnOnce() -> Result<Option<Instant>, I::Error>,
        interrupt: &mut I,
        action: Option<impl FnOnce() -> Result<(), A>>,
    ) -> Result<usize, BarrierError<I::Error, A>> {
        let mut s = self.state.lock();
        // Wait while the previous cycle drains or resets.
        while matches!(
            s.phase,
            Phase::Draining | Phase::Resetting | Phase::Releasing
        ) {
            self.sleep(&mut s, None, interrupt)
                .map_err(BarrierError::Interrupted)?;
        }
        if s.phase == Phase::Broken {
            return Err(BarrierError::Broken);
        }
        let index = s.count;
        s.count += 1;
        let result = if index + 1 == self.parties {
            self.release(&mut s, action)
        } else {
            self.await_release(&mut s, deadline, interrupt)
        };
        s.count -= 1;
        if s.count == 0 && matches!(s.phase, Phase::Draining | Phase::Resetting) {
            s.phase = Phase::Filling;
            self.changed();
        }
        result.map(|()| index)
    }

    /// The last arrival: run the action with the lock released, then drain.
    fn release<I, A>(
        &self,
        s: &mut MutexGuard<'_, State>,
        action: Option<impl FnOnce() -> Result<(), A>>,
    ) -> Result<(), BarrierError<I, A>> {
        if let Some(action) = action {
            s.phase = Phase::Releasing;
            s.releaser = current_thread_id();
            let r = MutexGuard::unlocked(s, || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(action))
            });
            s.releaser = 0;
            let r = match r {
                Ok(r) => r,
                Err(panic) => {
                    // As CPython's `except: self._break(); raise`.
                    self.break_locked(s);
                    s.count -= 1;
                    std::panic::resume_unwind(panic);
                }
            };
            if let Err(e) = r {
                self.break_locked(s);
                return Err(BarrierError::Action(e));
            }
            if s.phase != Phase::Releasing {
                // Aborted or reset from inside the action.
                return Err(BarrierError::Broken);
            }
        }
        s.phase = Phase::Draining;
        self.changed();
        Ok(())
    }

    /// Any other arrival: wait for the release (or a break).
    fn await_release<I: Interrupt + ?Sized, A>(
        &self,
        s: &mut MutexGuard<'_, State>,
        deadline: impl FnOnce() -> Result<Option<Instant>, I::Error>,
        interrupt: &mut I,
    ) -> Result<(), BarrierError<I::Error, A>> {
        // Never run the caller's code under the internal lock.
        let mut deadline = MutexGuard::unlocked(s, deadline).map_err(BarrierError::Interrupted)?;
        loop {
            match s.phase {
                Phase::Draining => return Ok(()),
                Phase::Broken | Phase::Resetting => return Err(BarrierError::Broken),
                Phase::Filling | Phase::Releasing => {}
            }
            match self.sleep(s, deadline, interrupt) {
                Err(e) => return Err(BarrierError::Interrupted(e)),
                Ok(Parked::Retry) => {}
                Ok(Parked::TimedOut) => match s.phase {
                    // CPython's timed-out waiter would be stuck behind the
                    // lock its action holds and then see the release.
                    Phase::Releasing => deadline = None,
                    Phase::Filling => {
                        self.break_locked(s);
                        return Err(BarrierError::Broken);
                    }
                    _ => {}
                },
            }
        }
    }

    /// Sleeps until the state changes (or the deadline / an interrupt),
    /// releasing the lock meanwhile; returns with it held again.
    fn sleep<I: Interrupt + ?Sized>(
        &self,
        s: &mut MutexGuard<'_, State>,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<Parked, I::Error> {
        let epoch = self.epoch.load(Ordering::Acquire);
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        let r = MutexGuard::unlocked(s, || park(&self.epoch, epoch, deadline, interrupt));
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// Announces a state change; the caller holds the lock.
    fn changed(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            sys::wake_all(&self.epoch);
        }
    }

    fn break_locked(&self, s: &mut State) {
        s.phase = Phase::Broken;
        self.changed();
    }

    /// Waits until no action runs, unless the caller is the action itself.
    fn lock_quiet(&self) -> MutexGuard<'_, State> {
        let mut s = self.state.lock();
        while s.phase == Phase::Releasing && s.releaser != current_thread_id() {
            let _ = self.sleep(&mut s, None, &mut Uninterruptible);
        }
        s
    }

    /// Breaks the barrier: every waiting thread and every later `wait` fails
    /// until [`reset`](Self::reset).
    pub fn abort(&self) {
        let mut s = self.lock_quiet();
        self.break_locked(&mut s);
    }

    /// Returns the barrier to its empty state; threads waiting on it fail
    /// with [`BarrierError::Broken`].
    pub fn reset(&self) {
        let mut s = self.lock_quiet();
        if s.count > 0 {
            if matches!(s.phase, Phase::Filling | Phase::Broken | Phase::Releasing) {
                s.phase = Phase::Resetting;
            }
        } else {
            s.phase = Phase::Filling;
        }
        self.changed();
    }
}
