//! # tress
//!
//! Python's concurrency concepts in idiomatic Rust, with the semantics of
//! Python's standard library and none of its interpreter: locks that any
//! thread may release, reentrant locks that know their owner, condition
//! variables that wake exactly `n` waiters, counting and bounded semaphores,
//! events, barriers that can be aborted and reset, and blocking queues
//! (FIFO, LIFO, priority) with `task_done`/`join` and shutdown, and a
//! thread-pool [`Executor`] whose [`Future`]s wait, cancel and call back
//! like Python's `concurrent.futures`.
//!
//! Every blocking call comes in four forms: `acquire()` (wait as long as it
//! takes), `acquire_timeout(Duration)`, `acquire_deadline(Instant)`, and
//! `acquire_with(Option<Instant>, &mut impl Interrupt)`, which lets the
//! caller abandon the wait when a signal arrives (this is how the Python
//! bindings raise `KeyboardInterrupt`) and release other resources only
//! while the thread really sleeps.
//!
//! On Linux every wait is a `futex(2)` on the primitive's own word: there is
//! no global table of waiters, so the primitives stay usable in a child
//! process after `fork()`, and tress starts no threads of its own.
//!
//! ```
//! use std::sync::Arc;
//! use tress::{Lock, Semaphore};
//!
//! let slots = Arc::new(Semaphore::new(2));
//! let total = Arc::new(tress::Mutex::new(0));
//! let workers: Vec<_> = (0..4)
//!     .map(|_| {
//!         let (slots, total) = (Arc::clone(&slots), Arc::clone(&total));
//!         std::thread::spawn(move || {
//!             slots.acquire();
//!             *total.lock() += 1;
//!             slots.release(1).unwrap();
//!         })
//!     })
//!     .collect();
//! for w in workers {
//!     w.join().unwrap();
//! }
//! assert_eq!(*total.lock(), 4);
//! let _unused = Lock::new();
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod error;
#[cfg(target_os = "linux")]
pub mod event_loop;
pub mod executor;
mod interrupt;
#[cfg(target_os = "linux")]
pub mod ipc;
pub mod queue;
pub mod sync;
mod sys;

pub use error::{
    BarrierError, CountOverflow, GetError, NotLocked, NotOwned, PutError, TooManyReleases,
    TooManyTaskDone, WaitError,
};
pub use executor::{Executor, Future, FutureError, FutureState};
pub use interrupt::{Interrupt, Uninterruptible, deadline_after};
pub use queue::{LifoQueue, PriorityQueue, Queue, SimpleQueue};
pub use sync::{
    Barrier, BoundedSemaphore, BrokenBarrier, CondLock, Condition, Event, Lock, Mutex, MutexGuard,
    PendingWake, RLock, RLockState, Semaphore, Ticket, WaitQueue, WakeList, Wakeups,
};
pub use sys::current_thread_id;
