//! The machinery of an event loop, with no interpreter in it: one thread
//! running callbacks, waiting on many descriptors at once.
//!
//! - [`Poller`]: readiness of file descriptors (`epoll`, level-triggered).
//! - [`Timers`]: one heap of timers, O(1) cancellation, compacted.
//! - [`Inbox`]: work from other threads; its producers wake the loop only
//!   when it is parked in the poller ([`Parking`] is the protocol).
//! - [`SignalPipe`]: signals delivered through a wake-up descriptor.
//! - [`Core`]: the four together, with a ready queue, run one iteration at
//!   a time as asyncio's `_run_once` does.
//!
//! `README.md` beside this file is the design note.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tress::event_loop::{Core, Work};
//!
//! let mut core: Core<&'static str> = Core::new().unwrap();
//! let inbox = core.inbox().clone();
//! let t = std::thread::spawn(move || inbox.send("from a thread"));
//! core.call_at(Instant::now() + Duration::from_millis(5), "timer");
//! core.call_soon("soon");
//! let mut seen = Vec::new();
//! while seen.len() < 3 {
//!     core.run_once(false, |core, work| {
//!         if let Work::Call(name) = work {
//!             seen.push(name);
//!         }
//!     })
//!     .unwrap();
//! }
//! t.join().unwrap();
//! assert_eq!(seen[0], "soon");
//! assert!(seen.contains(&"timer") && seen.contains(&"from a thread"));
//! ```

mod inbox;
mod parking;
mod poller;
mod signals;
mod timers;

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use inbox::Inbox;
pub use parking::Parking;
pub use poller::{Events, Interest, Poller, Ready, Waker, wait};
pub use signals::SignalPipe;
pub use timers::{COMPACT_MIN, TimerId, Timers};

/// The poller token of the inbox's waker.
pub const WAKER_TOKEN: u64 = u64::MAX;
/// The poller token of the signal pipe.
pub const SIGNAL_TOKEN: u64 = u64::MAX - 1;

/// What one iteration hands to its runner.
#[derive(Debug)]
pub enum Work<T> {
    /// A callback that is due: scheduled with `call_soon`, a timer whose
    /// deadline passed, or sent through the inbox.
    Call(T),
    /// A registered descriptor is ready.
    Io(Ready),
    /// A signal arrived (through [`Core::signals`]).
    Signal(u8),
}

/// A ready queue, timers, an inbox, a poller and (on demand) a signal
/// pipe: the state of one loop, driven by [`run_once`](Self::run_once).
#[derive(Debug)]
pub struct Core<T> {
    poller: Poller,
    events: Events,
    io: Vec<Ready>,
    timers: Timers<T>,
    ready: VecDeque<T>,
    inbox: Arc<Inbox<T>>,
    incoming: Vec<T>,
    signals: Option<SignalPipe>,
    signal_bytes: Vec<u8>,
}

impl<T> Core<T> {
    /// A new loop state with its poller and inbox.
    pub fn new() -> io::Result<Core<T>> {
        let poller = Poller::new()?;
        let inbox = Inbox::new()?;
        poller.register(inbox.waker().as_raw_fd(), WAKER_TOKEN, Interest::READ)?;
        Ok(Core {
            poller,
            events: Events::with_capacity(1024),
            io: Vec::new(),
            timers: Timers::new(),
            ready: VecDeque::new(),
            inbox,
            incoming: Vec::new(),
            signals: None,
            signal_bytes: Vec::new(),
        })
    }

    /// Runs `value` in the next iteration (after what is already ready).
    pub fn call_soon(&mut self, value: T) {
        self.ready.push_back(value);
    }

    /// Runs `value` once `deadline` has passed (never before).
    pub fn call_at(&mut self, deadline: Instant, value: T) -> TimerId {
        self.timers.insert(deadline, value)
    }

    /// Cancels a timer: its value, if it had not fired.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        self.timers.cancel(id)
    }

    /// The timers (to look at, or to cancel in bulk).
    pub fn timers(&mut self) -> &mut Timers<T> {
        &mut self.timers
    }

    /// Callbacks due in the next iteration.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Takes every ready callback out (a loop being closed drops them).
    pub fn drain_ready(&mut self) -> impl Iterator<Item = T> + '_ {
        self.ready.drain(..)
    }

    /// The inbox other threads send to (clone the `Arc` to hand it out).
    pub fn inbox(&self) -> &Arc<Inbox<T>> {
        &self.inbox
    }

    /// The poller, to register descriptors with (any token but
    /// [`WAKER_TOKEN`] and [`SIGNAL_TOKEN`]).
    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    /// The signal pipe, made and registered on first use: every byte
    /// written to its [`write_fd`](SignalPipe::write_fd) comes out as
    /// [`Work::Signal`].
    pub fn signals(&mut self) -> io::Result<&SignalPipe> {
        if self.signals.is_none() {
            let pipe = SignalPipe::new()?;
            self.poller
                .register(pipe.as_raw_fd(), SIGNAL_TOKEN, Interest::READ)?;
            self.signals = Some(pipe);
        }
        Ok(self.signals.as_ref().expect("made above"))
    }

    /// How long the next poll may block: not at all when something is
    /// ready or the loop is stopping, until the next timer, or (`None`)
    /// until something happens.
    fn timeout(&mut self, stopping: bool) -> Option<Duration> {
        if stopping || !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        self.timers
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// One iteration: poll (blocking only if nothing is ready and the
    /// loop is not `stopping`), hand the ready descriptors and signals to
    /// `run`, make the inbox's items and the due timers ready, then run the
    /// callbacks that were ready at that point — those `run` schedules wait
    /// for the next iteration, so a callback that reschedules itself never
    /// starves the poller.
    pub fn run_once(
        &mut self,
        stopping: bool,
        mut run: impl FnMut(&mut Self, Work<T>),
    ) -> io::Result<()> {
        let mut timeout = self.timeout(stopping);
        let blocking = timeout != Some(Duration::ZERO);
        let parked = blocking && self.inbox.park();
        if blocking && !parked {
            timeout = Some(Duration::ZERO);
        }
        let polled = self.poller.poll(&mut self.events, timeout);
        if parked {
            self.inbox.unpark();
        }
        polled?;
        let mut io = std::mem::take(&mut self.io);
        let mut signaled = false;
        for ev in self.events.iter() {
            match ev.token {
                WAKER_TOKEN => {
                    self.inbox.waker().drain();
                }
                SIGNAL_TOKEN => signaled = true,
                _ => io.push(ev),
            }
        }
        if self.inbox.is_pending() {
            self.inbox.take(&mut self.incoming);
            self.ready.extend(self.incoming.drain(..));
        }
        if signaled {
            if let Some(pipe) = &self.signals {
                pipe.read_into(&mut self.signal_bytes);
            }
            let bytes = std::mem::take(&mut self.signal_bytes);
            for &signo in &bytes {
                run(self, Work::Signal(signo));
            }
            self.signal_bytes = bytes;
            self.signal_bytes.clear();
        }
        for ev in io.drain(..) {
            run(self, Work::Io(ev));
        }
        self.io = io;
        let ready = &mut self.ready;
        self.timers
            .expire(Instant::now(), |_, v| ready.push_back(v));
        for _ in 0..self.ready.len() {
            let Some(v) = self.ready.pop_front() else {
                break;
            };
            run(self, Work::Call(v));
        }
        Ok(())
    }
}
