//! Thread synchronisation primitives with Python's semantics: every blocking
//! call has a deadline form and an interruptible form
//! (see [`Interrupt`](crate::Interrupt)).

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;

pub use barrier::{Barrier, BrokenBarrier};
pub use condition::{CondLock, Condition, Ticket, WaitQueue, WakeList, Wakeups};
pub use event::Event;
pub use lock::{Lock, Mutex, MutexGuard, PendingWake};
pub use rlock::{RLock, RLockState};
pub use semaphore::{BoundedSemaphore, Semaphore};
