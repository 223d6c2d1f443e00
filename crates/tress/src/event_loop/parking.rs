//! The parking protocol between a loop and the threads that hand it work.
//!
//! Three flags, no lock. A producer *publishes* its work (in the inbox,
//! under the inbox's own lock), sets `pending`, then reads `parked`: only a
//! producer that finds the loop parked, and is the first to do so since the
//! loop last parked (`notified`), writes the waker. The loop, before it
//! blocks in the poller, clears `notified`, sets `parked`, then reads
//! `pending`: work published before that read is seen and the loop does not
//! block. Each side's store and its load of the other's flag are separated
//! by a `SeqCst` fence, so the two cannot both miss each other (the
//! store-load pair of Dekker's algorithm; a fence rather than `SeqCst`
//! accesses, which is also what loom models exactly): if the loop's fence
//! comes first, the producer sees `parked` (and `notified` cleared, or set
//! again by a producer that will write), so the waker is written; if the
//! producer's comes first, the loop sees `pending` and does not block. No
//! lost wake-up; and while the loop runs, producers write nothing at all.
//! `pending` is released by the producer after its publication and taken
//! by the loop with an acquiring swap before it takes the work, so work
//! whose flag the loop consumed is visible to that take.
//!
//! `crates/tress/tests/loom_parking.rs` checks this with loom, every
//! interleaving of a loop and two producers over two park cycles.

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering, fence};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering, fence};

/// The flags shared by a loop and its producers (see the module docs).
#[derive(Debug)]
pub struct Parking {
    pending: AtomicBool,
    parked: AtomicBool,
    notified: AtomicBool,
}

impl Default for Parking {
    fn default() -> Self {
        Self::new()
    }
}

impl Parking {
    /// A running loop with nothing pending.
    pub fn new() -> Self {
        Parking {
            pending: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            notified: AtomicBool::new(false),
        }
    }

    /// Producer side, after its work is published: whether this producer
    /// must write the waker.
    pub fn published(&self) -> bool {
        self.pending.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        self.parked.load(Ordering::Relaxed) && !self.notified.swap(true, Ordering::AcqRel)
    }

    /// Loop side, before it takes the published work: work published
    /// after this is pending again.
    pub fn taking(&self) {
        self.pending.swap(false, Ordering::Acquire);
    }

    /// Loop side, before a blocking poll: whether it may block. `false`:
    /// work is pending, poll without blocking (and do not call
    /// [`unpark`](Self::unpark)).
    pub fn park(&self) -> bool {
        self.notified.store(false, Ordering::Relaxed);
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.pending.load(Ordering::Relaxed) {
            self.parked.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Loop side, once the blocking poll returned. The waker may still be
    /// written by a producer that saw the loop parked: the loop drains it
    /// whenever the poller reports it readable, so a late write costs one
    /// spurious wake-up, never a busy loop.
    pub fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Whether work was published since the loop last took it.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }
}
