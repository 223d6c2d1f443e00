//! [`Event`]: a flag that threads wait for.
//!
//! One 32-bit word holds everything:
//!
//! | bits | meaning |
//! |---|---|
//! | 0 (`SET`) | the flag |
//! | 1 (`SLEEPERS`) | some thread may sleep on the word: `set` must wake them |
//! | 2.. | the generation: how many times the flag went from clear to set |
//!
//! `wait` returns `true` once the flag is set *or the generation moved*, so a
//! waiter woken by `set` still returns `true` if `clear` ran before it got to
//! look, as Python's `Event.wait` does (CPython issue #13502). The generation
//! wraps after 2³⁰ sets; a waiter would have to sleep through exactly that
//! many to miss one.
//!
//! Memory ordering: `set` is a `Release` read-modify-write and `wait` reads
//! with `Acquire`, so what the setter did before `set` is visible to every
//! thread that saw the flag.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::interrupt::{
    Interrupt, Parked, Uninterruptible, deadline_after, infallible, mark_and_park,
};
use crate::sync::PendingWake;

const SET: u32 = 1;
const SLEEPERS: u32 = 2;
const GENERATION: u32 = 4;

/// A flag that threads can wait for: `set` wakes every waiter, `clear`
/// resets it, as Python's `threading.Event`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use tress::Event;
///
/// let ready = Arc::new(Event::new());
/// let r = Arc::clone(&ready);
/// let t = std::thread::spawn(move || r.wait());
/// ready.set();
/// assert!(t.join().unwrap());
/// assert!(ready.is_set());
/// ```
#[derive(Debug, Default)]
pub struct Event {
    /// The flag, the sleepers bit and the generation (see the module docs).
    word: AtomicU32,
}

impl Event {
    /// A new event, not set.
    pub const fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
        }
    }

    /// Whether the flag is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter.
    #[inline]
    pub fn set(&self) {
        drop(self.set_pending());
    }

    /// Sets the flag, leaving the wake-up of the waiters (if any) to the
    /// returned token (see [`PendingWake`]).
    #[inline]
    pub fn set_pending(&self) -> Option<PendingWake<'_>> {
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            if w & SET != 0 {
                return None;
            }
            let next = (w & !(SET | SLEEPERS)).wrapping_add(GENERATION) | SET;
            match self
                .word
                .compare_exchange_weak(w, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        (w & SLEEPERS != 0).then(|| PendingWake::new(&self.word, u32::MAX))
    }

    /// Clears the flag; waiters from now on wait for the next `set`.
    #[inline]
    pub fn clear(&self) {
        self.word.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Waits until the flag is set; returns `true`.
    #[inline]
    pub fn wait(&self) -> bool {
        self.is_set() || infallible(self.wait_slow(None, &mut Uninterruptible))
    }

    /// Waits at most `timeout`; returns whether the flag was set.
    #[inline]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.is_set() || infallible(self.wait_slow(deadline_after(timeout), &mut Uninterruptible))
    }

    /// Waits until `deadline`; returns whether the flag was set.
    #[inline]
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.is_set() || infallible(self.wait_slow(Some(deadline), &mut Uninterruptible))
    }

    /// Waits until `deadline` (forever if `None`) unless `interrupt` abandons
    /// the wait; `Ok(false)` means the deadline passed with the flag clear.
    #[inline]
    pub fn wait_with<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        if self.is_set() {
            return Ok(true);
        }
        self.wait_slow(deadline, interrupt)
    }

    #[cold]
    fn wait_slow<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        let mut w = self.word.load(Ordering::Acquire);
        let generation = w & !(SET | SLEEPERS);
        loop {
            if w & SET != 0 || w & !(SET | SLEEPERS) != generation {
                return Ok(true);
            }
            let (parked, now) = mark_and_park(&self.word, w, SLEEPERS, deadline, interrupt)?;
            w = now;
            if parked == Parked::TimedOut {
                return Ok(w & SET != 0 || w & !(SET | SLEEPERS) != generation);
            }
        }
    }
}
