//! Error types of the core. Each is named after what went wrong and carries
//! nothing the caller does not already have.

use std::fmt;

macro_rules! simple_error {
    ($(#[$doc:meta])* $name:ident, $msg:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name;

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($msg)
            }
        }

        impl std::error::Error for $name {}
    };
}

simple_error!(
    /// A [`Lock`](crate::Lock) was released while nobody held it.
    NotLocked,
    "release unlocked lock"
);

simple_error!(
    /// The calling thread does not hold the [`RLock`](crate::RLock) (or the
    /// lock under a [`Condition`](crate::Condition)) it tried to release,
    /// wait on or notify through.
    NotOwned,
    "cannot release un-acquired lock"
);

simple_error!(
    /// A recursion or permit count would overflow.
    CountOverflow,
    "internal lock count overflowed"
);

simple_error!(
    /// A [`BoundedSemaphore`](crate::BoundedSemaphore) was released past its
    /// initial value.
    TooManyReleases,
    "Semaphore released too many times"
);

/// Why a [`Barrier`](crate::Barrier) wait failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarrierError<I, A = std::convert::Infallible> {
    /// The barrier is broken: aborted, reset while this thread waited, timed
    /// out in some thread, or its action failed.
    Broken,
    /// The [`Interrupt`](crate::Interrupt) abandoned the wait. The barrier
    /// is not broken and this thread no longer counts as arrived (if it
    /// tripped meanwhile, the others were released without it).
    Interrupted(I),
    /// The action failed in this thread (the last to arrive); the barrier is
    /// now broken.
    Action(A),
}

impl<I: fmt::Display, A: fmt::Display> fmt::Display for BarrierError<I, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("the barrier is broken"),
            BarrierError::Interrupted(e) => write!(f, "barrier wait interrupted: {e}"),
            BarrierError::Action(e) => write!(f, "barrier action failed: {e}"),
        }
    }
}

impl<I: fmt::Debug + fmt::Display, A: fmt::Debug + fmt::Display> std::error::Error
    for BarrierError<I, A>
{
}

/// Why a [`Condition`](crate::Condition) wait failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError<I> {
    /// The calling thread does not hold the condition's lock.
    NotOwned,
    /// The [`Interrupt`](crate::Interrupt) abandoned the wait; the lock is
    /// held again, as before the call.
    Interrupted(I),
}

impl<I: fmt::Display> fmt::Display for WaitError<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::NotOwned => f.write_str("cannot wait on un-acquired lock"),
            WaitError::Interrupted(e) => write!(f, "wait interrupted: {e}"),
        }
    }
}

impl<I: fmt::Debug + fmt::Display> std::error::Error for WaitError<I> {}

/// Why a [`Queue`](crate::Queue) put did not happen; the item comes back.
#[derive(Clone, PartialEq, Eq)]
pub enum PutError<T, E = std::convert::Infallible> {
    /// The queue stayed full: a non-blocking put, or the deadline passed.
    Full(T),
    /// The queue was shut down.
    ShutDown(T),
    /// The order's comparison failed, or the [`Interrupt`](crate::Interrupt)
    /// abandoned the wait; the queue is unchanged.
    Failed(T, E),
}

impl<T, E> PutError<T, E> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(t) | PutError::ShutDown(t) | PutError::Failed(t, _) => t,
        }
    }
}

impl<T, E: fmt::Debug> fmt::Debug for PutError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::ShutDown(_) => f.write_str("ShutDown(..)"),
            PutError::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
        }
    }
}

impl<T, E: fmt::Display> fmt::Display for PutError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full"),
            PutError::ShutDown(_) => f.write_str("the queue is shut down"),
            PutError::Failed(_, e) => write!(f, "put failed: {e}"),
        }
    }
}

impl<T, E: fmt::Debug + fmt::Display> std::error::Error for PutError<T, E> {}

/// Why a [`Queue`](crate::Queue) or [`SimpleQueue`](crate::SimpleQueue) get
/// returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetError<E = std::convert::Infallible> {
    /// The queue stayed empty: a non-blocking get, or the deadline passed.
    Empty,
    /// The queue is shut down and has no items left (or was shut down
    /// immediately).
    ShutDown,
    /// The order's comparison failed, or the [`Interrupt`](crate::Interrupt)
    /// abandoned the wait; the queue is unchanged.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for GetError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("the queue is empty"),
            GetError::ShutDown => f.write_str("the queue is shut down"),
            GetError::Failed(e) => write!(f, "get failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for GetError<E> {}

simple_error!(
    /// [`Queue::task_done`](crate::Queue::task_done) was called more times
    /// than items were put.
    TooManyTaskDone,
    "task_done() called too many times"
);
