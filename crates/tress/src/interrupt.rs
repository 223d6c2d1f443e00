//! How a blocking call can be interrupted.
//!
//! Every blocking operation in tress has a `*_with(deadline, interrupt)` form.
//! The [`Interrupt`] decides two things: how long the call may sleep in one
//! piece ([`Interrupt::slice`]), and what happens when it wakes up early
//! because a signal handler ran or a slice ended ([`Interrupt::check`]): carry
//! on (`Ok`) or abandon the wait with an error, leaving the primitive as if
//! the call had never been made (for a barrier that others may have tripped
//! meanwhile, see [`Barrier::wait_with_action`](crate::Barrier::wait_with_action)).
//!
//! Python's bindings use this to raise `KeyboardInterrupt`: on Linux the
//! futex wait returns `EINTR` as soon as a signal handler has run in the
//! waiting thread, `check` then runs Python's pending signal handlers, and a
//! slice bounds the delay on platforms whose waits do not return on signals.
//! Plain Rust callers use [`Uninterruptible`] through the short forms
//! (`acquire`, `acquire_timeout`, …).
//!
//! The same trait carries the hooks around each sleep
//! ([`Interrupt::before_sleep`], [`Interrupt::after_sleep`]), so a caller that
//! holds a resource other threads need while it sleeps (Python's GIL) lets go
//! of it only when a call really sleeps, never on a fast path.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, Wake};

/// Decides whether a blocking call carries on after an early wake-up.
pub trait Interrupt {
    /// What [`check`](Interrupt::check) fails with; the blocking call returns it.
    type Error;

    /// The longest time to sleep before calling [`check`](Interrupt::check)
    /// again, or `None` to sleep in one piece (still calling `check` after a
    /// signal handler ran, where the platform reports that).
    fn slice(&self) -> Option<Duration>;

    /// Called after an early wake-up; an error abandons the wait.
    fn check(&mut self) -> Result<(), Self::Error>;

    /// Whether a contended acquire may poll briefly before sleeping. A caller
    /// that holds something the lock's holder may need (Python's GIL) says
    /// no: polling would only delay the holder.
    #[inline]
    fn may_spin(&self) -> bool {
        true
    }

    /// Called right before the thread goes to sleep: the place to let go of
    /// anything other threads may need meanwhile (Python's bindings release
    /// the GIL here, so it is released only when a call really blocks).
    #[inline]
    fn before_sleep(&mut self) {}

    /// Called right after the thread wakes up, before anything else, to undo
    /// [`before_sleep`](Interrupt::before_sleep).
    #[inline]
    fn after_sleep(&mut self) {}
}

/// An [`Interrupt`] that never interrupts: the wait ends only when it
/// succeeds or its deadline passes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Uninterruptible;

impl Interrupt for Uninterruptible {
    type Error = Infallible;

    #[inline]
    fn slice(&self) -> Option<Duration> {
        None
    }

    #[inline]
    fn check(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl<I: Interrupt + ?Sized> Interrupt for &mut I {
    type Error = I::Error;

    fn slice(&self) -> Option<Duration> {
        (**self).slice()
    }

    fn check(&mut self) -> Result<(), I::Error> {
        (**self).check()
    }

    fn may_spin(&self) -> bool {
        (**self).may_spin()
    }

    fn before_sleep(&mut self) {
        (**self).before_sleep();
    }

    fn after_sleep(&mut self) {
        (**self).after_sleep();
    }
}

/// Unwraps a result whose error cannot exist.
#[inline]
pub(crate) fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// What [`park`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parked {
    /// Woken or changed: re-check the condition.
    Retry,
    /// The caller's deadline passed.
    TimedOut,
}

/// Sleeps once on `word` while it holds `expected`, honouring the caller's
/// deadline and the interrupt's slice; runs the interrupt's check after an
/// early wake-up. The caller loops, re-checking its condition each time.
#[cold]
pub(crate) fn park<I: Interrupt + ?Sized>(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
    interrupt: &mut I,
) -> Result<Parked, I::Error> {
    park_on(word, expected, deadline, interrupt, false)
}

#[cfg(target_os = "linux")]
fn shared_wait(word: &AtomicU32, expected: u32, until: Option<Instant>) -> Wake {
    sys::wait_shared(word, expected, until)
}

#[cfg(not(target_os = "linux"))]
fn shared_wait(word: &AtomicU32, expected: u32, until: Option<Instant>) -> Wake {
    sys::wait(word, expected, until)
}

/// [`park`], on a word in memory shared between processes when `shared`.
#[cold]
pub(crate) fn park_on<I: Interrupt + ?Sized>(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
    interrupt: &mut I,
    shared: bool,
) -> Result<Parked, I::Error> {
    let (until, sliced) = match interrupt.slice() {
        None => (deadline, false),
        Some(slice) => match Instant::now().checked_add(slice) {
            None => (deadline, false),
            Some(end) => match deadline {
                Some(d) if d <= end => (Some(d), false),
                _ => (Some(end), true),
            },
        },
    };
    interrupt.before_sleep();
    let wake = if shared {
        shared_wait(word, expected, until)
    } else {
        sys::wait(word, expected, until)
    };
    interrupt.after_sleep();
    match wake {
        Wake::Woken => Ok(Parked::Retry),
        Wake::Interrupted => {
            interrupt.check()?;
            Ok(Parked::Retry)
        }
        Wake::TimedOut if sliced => {
            interrupt.check()?;
            Ok(Parked::Retry)
        }
        Wake::TimedOut => Ok(Parked::TimedOut),
    }
}

/// How many rounds of [`backoff`] a waiter whose interrupt allows it
/// ([`Interrupt::may_spin`]) makes before it sleeps.
pub(crate) const BACKOFF_STEPS: u32 = 10;

/// One round of waiting before sleeping: `2^step` spins for the first
/// rounds, then a `yield_now`, which gives the core away when another
/// thread needs it (crossbeam's `Backoff::snooze` schedule). The caller
/// looks at its condition between rounds, not during them: reading a word
/// that another core keeps writing would slow that core down. A handoff
/// between threads on two free cores then costs no sleep and no wake-up
/// system call, and a busy machine loses at most a few yields per wait.
#[cold]
pub(crate) fn backoff(step: u32) {
    const SPIN_STEPS: u32 = 6;
    if step <= SPIN_STEPS {
        for _ in 0..1u32 << step {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

/// Backs off round after round (from `*step` on, counting in `*step`)
/// until `ready` holds or the rounds run out.
#[cold]
pub(crate) fn back_off_until(step: &mut u32, ready: impl Fn() -> bool) {
    while *step < BACKOFF_STEPS {
        backoff(*step);
        *step += 1;
        if ready() {
            return;
        }
    }
}

/// One step of waiting on a word that carries a "has sleepers" `flag`
/// (an `Event`'s word, a `Future`'s state): sets `flag` in `word`, which the
/// caller last saw holding `seen`, then parks while it holds `seen | flag`.
/// Returns how the park ended and the word's value afterwards; if the word
/// changed before the flag could be set, returns `Retry` at once, without
/// sleeping. The caller re-checks its condition on the returned value.
pub(crate) fn mark_and_park<I: Interrupt + ?Sized>(
    word: &AtomicU32,
    seen: u32,
    flag: u32,
    deadline: Option<Instant>,
    interrupt: &mut I,
) -> Result<(Parked, u32), I::Error> {
    if seen & flag == 0 {
        if let Err(now) =
            word.compare_exchange_weak(seen, seen | flag, Ordering::Relaxed, Ordering::Acquire)
        {
            return Ok((Parked::Retry, now));
        }
    }
    let parked = park(word, seen | flag, deadline, interrupt)?;
    Ok((parked, word.load(Ordering::Acquire)))
}

/// `now + timeout`, or `None` (wait forever) when that is past what an
/// [`Instant`] can hold.
#[inline]
pub fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
