//! A writer's buffer in front of a [`ByteQueue`]: puts that never wait for
//! room in the ring, as multiprocessing's `Queue.put` never waits for room
//! in its pipe.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::ring::{ByteQueue, SendError};
use crate::interrupt::{Interrupt, Uninterruptible};
use crate::sync::{Event, Mutex};
use crate::sys::ForkEpoch;

/// How long a put waits for room in a full ring when no reader makes any,
/// before it keeps its message (see [`ByteQueue::place_while_drained`]):
/// long enough that a reader descheduled on a busy machine, or a reader
/// process still starting, still counts (at 2 ms a producer that outran its
/// reader fell back to keeping and lost a third of its rate; at 20 ms, a
/// short stream whose reader was still starting), short enough that a put
/// on a queue nobody reads yet returns at once to human eyes (once per
/// fill: the puts behind a kept one do not wait).
const PATIENCE: Duration = Duration::from_millis(100);

/// This process's messages for one queue that found its ring full, in
/// order, and the thread that places them.
#[derive(Debug)]
struct Shared {
    queue: Arc<ByteQueue>,
    epoch: ForkEpoch,
    state: Mutex<State>,
    /// Set while nothing is buffered or being placed.
    drained: Event,
    /// [`Feeder::cancel`]: [`Feeder::flush_all`] does not wait for this one.
    cancelled: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    buffered: VecDeque<Vec<u8>>,
    /// The feeder thread is placing a message taken off `buffered`.
    busy: bool,
    /// A feeder thread runs (it ends when `buffered` is empty).
    running: bool,
    /// A message was put through the feeder in this process.
    used: bool,
}

impl State {
    fn idle(&self) -> bool {
        self.buffered.is_empty() && !self.busy
    }
}

/// A process's writer on a [`ByteQueue`] whose puts never wait for room
/// in the ring for long: while a reader drains a full ring a put waits for
/// room as a blocking one would, but once no room came for 100 ms (no
/// reader at work: a reader descheduled for a moment still counts) the
/// message is kept in this process's memory and placed, in order, by a
/// thread of the feeder's own as room is made — multiprocessing's `Queue` and its feeder thread, in which a
/// `put` waits only for the queue's bound in messages. Memory is the only
/// limit.
///
/// Every message is admitted first ([`ByteQueue::admit_with`]): it counts
/// in the queue's length and against its bound from its put, in every
/// process. Once one message is kept, later ones are kept behind it until
/// the thread has placed them all, so one writer's messages arrive in the
/// order they were put. What is kept is lost if the process dies first
/// (as multiprocessing's buffer is); a process flushes its feeders before
/// it exits ([`flush_all`](Self::flush_all); the Python bindings do it at
/// exit as multiprocessing joins its feeder threads), unless they were
/// [`cancel`](Self::cancel)led.
///
/// In a process forked while messages were kept, the child's copy starts
/// empty: the parent's thread places them.
#[derive(Debug)]
pub struct Feeder {
    shared: Arc<Shared>,
}

/// Every feeder of this process that ran a thread, for `flush_all`.
static FEEDERS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
static FEEDERS_EPOCH: std::sync::OnceLock<ForkEpoch> = std::sync::OnceLock::new();

fn feeders() -> crate::sync::MutexGuard<'static, Vec<Weak<Shared>>> {
    FEEDERS_EPOCH.get_or_init(ForkEpoch::new).enter(|| {
        if FEEDERS.is_locked() {
            // SAFETY: held by a thread of the parent, which does not exist
            // in this process; nothing of what it guarded is in use here.
            unsafe { FEEDERS.force_unlock() };
        }
        // The child's feeders run no thread.
        FEEDERS.lock().clear();
    });
    FEEDERS.lock()
}

/// How a [`Feeder::put`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// In the ring.
    Placed,
    /// Kept, behind others or because the ring was full.
    Kept,
    /// Kept, and the feeder's thread started to place it (the first time
    /// in this process for this feeder, or again after it had drained).
    Started,
}

impl Feeder {
    /// A feeder in front of `queue` for this process.
    pub fn new(queue: Arc<ByteQueue>) -> Feeder {
        let drained = Event::new();
        drained.set();
        Feeder {
            shared: Arc::new(Shared {
                queue,
                epoch: ForkEpoch::new(),
                state: Mutex::new(State::default()),
                drained,
                cancelled: AtomicBool::new(false),
            }),
        }
    }

    /// The queue fed.
    pub fn queue(&self) -> &ByteQueue {
        &self.shared.queue
    }

    /// Whether a message was put through this feeder in this process
    /// (since it was made, or since the fork that made this process):
    /// multiprocessing's queue starts its feeder thread on the first put,
    /// and only then does its `close` close the process's end.
    pub fn used(&self) -> bool {
        self.state().used
    }

    fn state(&self) -> crate::sync::MutexGuard<'_, State> {
        let s = &self.shared;
        s.epoch.enter(|| {
            if s.state.is_locked() {
                // SAFETY: held by a thread of the parent (the feeder's
                // thread, or a putter), which does not exist here.
                unsafe { s.state.force_unlock() };
            }
            // What the parent kept is the parent's to place.
            *s.state.lock() = State::default();
            s.drained.set();
        });
        s.state.lock()
    }

    /// Puts one message, the concatenation of `parts`: waits until
    /// `deadline` as `interrupt` allows for the queue's bound in messages;
    /// placed in the ring if nothing is kept and there is room (or a reader
    /// makes some within 100 ms), else kept for the feeder's thread.
    /// An error leaves nothing put.
    pub fn put<I: Interrupt + ?Sized>(
        &self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<Fed, SendError<I::Error>> {
        let q = &*self.shared.queue;
        // A bound is waited for first; without one a message is counted
        // where it goes (in the ring's critical section, or as it is kept).
        let admitted = q.max_messages() != 0;
        if admitted {
            q.admit_with(deadline, interrupt)?;
        }
        let idle = {
            let mut st = self.state();
            st.used = true;
            st.idle()
        };
        if idle {
            // While a reader drains the ring, wait for room as a blocking
            // put would (a copy into the ring beats one into this
            // process's memory and another by the feeder's thread); keep
            // the message once no room came for a while.
            match q.place_while_drained(parts, PATIENCE, interrupt, admitted) {
                Ok(()) => return Ok(Fed::Placed),
                Err(SendError::Full) => {}
                Err(e) => {
                    if admitted {
                        q.unadmit();
                    }
                    return Err(e);
                }
            }
        }
        if !admitted {
            // No bound: admitted at once.
            q.admit_with(None, &mut Uninterruptible)
                .unwrap_or_else(|e| match e {
                    SendError::Failed(never) => match never {},
                    _ => unreachable!("a queue without a bound admits at once"),
                });
        }
        let mut message = Vec::new();
        if message
            .try_reserve_exact(parts.iter().map(|p| p.len()).sum())
            .is_err()
        {
            q.unadmit();
            let size = parts.iter().map(|p| p.len()).sum();
            return Err(SendError::Memory {
                size,
                errno: Some(libc::ENOMEM),
                reason: "out of memory for a message kept until the queue has room".into(),
            });
        }
        for p in parts {
            message.extend_from_slice(p);
        }
        let mut st = self.state();
        st.buffered.push_back(message);
        self.shared.drained.clear();
        if st.running {
            return Ok(Fed::Kept);
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("tress-feeder".into())
            .spawn(move || feed(&shared));
        if spawned.is_err() {
            // No thread to be had: this put places what is kept itself,
            // waiting for room as its caller allows.
            let kept = std::mem::take(&mut st.buffered);
            drop(st);
            self.shared.drained.set();
            for (n, m) in kept.iter().enumerate() {
                if let Err(e) = q.place_with(&[m], deadline, interrupt) {
                    // This put's message (the last) and those not placed
                    // are taken back: they are lost, as the error says.
                    for _ in n..kept.len() {
                        q.unadmit();
                    }
                    return Err(e);
                }
            }
            return Ok(Fed::Placed);
        }
        st.running = true;
        drop(st);
        let mut all = feeders();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&self.shared));
        Ok(Fed::Started)
    }

    /// Waits until everything this process kept for the queue is placed
    /// (until `deadline`, as `interrupt` allows): whether it was.
    pub fn flush<I: Interrupt + ?Sized>(
        &self,
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        if self.state().idle() {
            return Ok(true);
        }
        self.shared.drained.wait_with(deadline, interrupt)
    }

    /// Messages kept in this process, not yet placed.
    pub fn kept(&self) -> usize {
        let st = self.state();
        st.buffered.len() + usize::from(st.busy)
    }

    /// [`flush_all`](Self::flush_all) no longer waits for this feeder
    /// (multiprocessing's `cancel_join_thread`); its thread still places
    /// what it can while the process lives.
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::Relaxed)
    }

    /// Waits until every feeder of this process that was not cancelled
    /// has placed what it kept (until `deadline`, as `interrupt` allows):
    /// whether they all had. For a process about to exit.
    pub fn flush_all<I: Interrupt + ?Sized>(
        deadline: Option<Instant>,
        interrupt: &mut I,
    ) -> Result<bool, I::Error> {
        let live: Vec<Arc<Shared>> = feeders().iter().filter_map(Weak::upgrade).collect();
        for shared in live {
            if shared.cancelled.load(Ordering::Relaxed) {
                continue;
            }
            let feeder = Feeder { shared };
            if !feeder.flush(deadline, interrupt)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The feeder's thread: places the kept messages in order, waiting for
/// room as long as it takes, and ends once none is left.
fn feed(shared: &Shared) {
    let q = &*shared.queue;
    loop {
        let message = {
            let mut st = shared.state.lock();
            st.busy = false;
            match st.buffered.pop_front() {
                Some(m) => {
                    st.busy = true;
                    m
                }
                None => {
                    st.running = false;
                    shared.drained.set();
                    return;
                }
            }
        };
        if let Err(e) = q.place_with(&[&message], None, &mut Uninterruptible) {
            // Short of memory for a message that goes out of band: it is
            // lost (there is nobody to tell but the process's error
            // output, as multiprocessing's feeder reports its errors).
            q.unadmit();
            eprintln!(
                "tress: a message of {} bytes kept for a queue could not be put and is lost: {e}",
                message.len()
            );
        }
    }
}
