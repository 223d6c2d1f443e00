//! The executor's error types.

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

/// The pool can no longer run tasks: a worker's initializer failed, a
/// worker thread could not be started, or the pool was inherited by a child
/// process through `fork()` (its workers exist only in the parent). Python's
/// `concurrent.futures.thread.BrokenThreadPool`.
///
/// Pending futures of a broken pool fail with it, and so do later submits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BrokenExecutor {
    /// What broke the pool, ready to print.
    message: Arc<str>,
}

impl BrokenExecutor {
    pub(crate) fn new(message: impl Into<Arc<str>>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The pool was broken by a failing initializer; `cause` says how it
    /// failed.
    pub(crate) fn initializer(cause: &str) -> Self {
        Self::new(format!(
            "A thread initializer failed, the thread pool is not usable anymore: {cause}"
        ))
    }

    /// The pool (or a future) belongs to the parent of this forked process.
    pub(crate) fn forked() -> Self {
        Self::new(
            "the thread pool was inherited through fork(): its worker threads exist only \
             in the parent process, so it is not usable in the child",
        )
    }

    /// What broke the pool.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for BrokenExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BrokenExecutor")
            .field(&&*self.message)
            .finish()
    }
}

impl fmt::Display for BrokenExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BrokenExecutor {}

/// A task panicked; its panic became the future's error and the worker
/// carried on.
///
/// Only the panic's message is kept (the payload, if it is a `&str` or a
/// `String`; a placeholder otherwise): the payload is not `Sync`, and a
/// future's result is readable from several threads at once.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Panicked {
    /// The panic message.
    message: Arc<str>,
}

impl Panicked {
    /// Turns a payload caught by `catch_unwind` into its message, dropping
    /// the payload (a payload whose drop panics again is leaked).
    pub(crate) fn from_payload(payload: Box<dyn Any + Send>) -> Self {
        let message: Arc<str> = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).into()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.as_str().into()
        } else {
            "Box<dyn Any>".into()
        };
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload)));
        if let Err(again) = dropped {
            std::mem::forget(again);
        }
        Self { message }
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Panicked").field(&&*self.message).finish()
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the task panicked: {}", self.message)
    }
}

impl std::error::Error for Panicked {}

/// Why a [`Future`](super::Future) has no value to give.
///
/// `E` is the task's own error type (or a reference to it, from the
/// borrowing `result*` forms); `I` is the error of the
/// [`Interrupt`](crate::Interrupt) of a `*_with` wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FutureError<E, I = Infallible> {
    /// The task returned this error.
    Failed(E),
    /// The task panicked.
    Panicked(Panicked),
    /// The future was cancelled before it ran.
    Cancelled,
    /// The pool broke before the task ran (see [`BrokenExecutor`]).
    Broken(BrokenExecutor),
    /// The deadline passed before the task finished (timed forms only).
    Timeout,
    /// The [`Interrupt`](crate::Interrupt) abandoned the wait (`*_with`
    /// forms only); the future is unaffected.
    Interrupted(I),
}

impl<E> FutureError<E> {
    /// The same error with another interrupt type (it cannot be
    /// `Interrupted`).
    pub(crate) fn widen<J>(self) -> FutureError<E, J> {
        match self {
            FutureError::Failed(e) => FutureError::Failed(e),
            FutureError::Panicked(p) => FutureError::Panicked(p),
            FutureError::Cancelled => FutureError::Cancelled,
            FutureError::Broken(b) => FutureError::Broken(b),
            FutureError::Timeout => FutureError::Timeout,
            FutureError::Interrupted(never) => match never {},
        }
    }
}

impl<E: fmt::Display, I: fmt::Display> fmt::Display for FutureError<E, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FutureError::Failed(e) => write!(f, "the task failed: {e}"),
            FutureError::Panicked(p) => p.fmt(f),
            FutureError::Cancelled => f.write_str("the future was cancelled"),
            FutureError::Broken(b) => b.fmt(f),
            FutureError::Timeout => f.write_str("the future did not finish before the deadline"),
            FutureError::Interrupted(i) => write!(f, "wait interrupted: {i}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display, I: fmt::Debug + fmt::Display> std::error::Error
    for FutureError<E, I>
{
}

/// Why [`Executor::submit`](super::Executor::submit) refused a task; the
/// task comes back.
#[derive(Clone, PartialEq, Eq)]
pub enum SubmitError<F> {
    /// [`shutdown`](super::Executor::shutdown) was called.
    ShutDown(F),
    /// The pool is broken.
    Broken(F, BrokenExecutor),
}

impl<F> SubmitError<F> {
    /// The task that was not submitted.
    pub fn into_inner(self) -> F {
        match self {
            SubmitError::ShutDown(f) | SubmitError::Broken(f, _) => f,
        }
    }

    /// The same error with the task replaced.
    pub(crate) fn map<G>(self, g: impl FnOnce(F) -> G) -> SubmitError<G> {
        match self {
            SubmitError::ShutDown(f) => SubmitError::ShutDown(g(f)),
            SubmitError::Broken(f, b) => SubmitError::Broken(g(f), b),
        }
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::ShutDown(_) => f.write_str("ShutDown(..)"),
            SubmitError::Broken(_, b) => f.debug_tuple("Broken").field(&"..").field(b).finish(),
        }
    }
}

impl<F> fmt::Display for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::ShutDown(_) => f.write_str("cannot schedule new futures after shutdown"),
            SubmitError::Broken(_, b) => b.fmt(f),
        }
    }
}

impl<F> std::error::Error for SubmitError<F> {}

/// Why an [`ExecutorBuilder`](super::ExecutorBuilder) could not build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// What was wrong.
    message: &'static str,
}

impl BuildError {
    pub(crate) const fn new(message: &'static str) -> Self {
        Self { message }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for BuildError {}
