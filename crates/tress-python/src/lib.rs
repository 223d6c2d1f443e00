//! The extension module `tress._tress`: wiring only. Each Python module of
//! the package has its file here (`threading.rs`, …); `wait.rs` is how they
//! block (`relay.rs`: Ctrl-C on another thread wakes the main thread) and
//! `errors.rs` how they fail.

use pyo3::prelude::*;

mod errors;
mod futures;
#[cfg(target_os = "linux")]
mod multiprocessing;
mod queue;
#[cfg(unix)]
mod relay;
mod threading;
mod wait;

/// The native half of the `tress` package.
///
/// Declared as needing the GIL: a free-threaded interpreter (3.13t) turns
/// it back on when this module is imported, because `ThreadPoolCore`
/// (futures.rs) still counts on the GIL to make a `submit`'s checks and
/// its put one step: without it, a `submit` racing `shutdown` or
/// `break_pool` could queue a call behind the workers' stop (a future that
/// never finishes), and two racing `submit`s could start one worker more
/// than `max_workers`. `FutureCore` no longer counts on it (a frozen class
/// whose fields are behind a lock). See docs/ARCHITECTURE.md,
/// "Free-threaded Python".
#[pymodule(gil_used = true)]
fn _tress(m: &Bound<'_, PyModule>) -> PyResult<()> {
    wait::init(m.py())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    threading::register(m)?;
    queue::register(m)?;
    futures::register(m)?;
    #[cfg(target_os = "linux")]
    multiprocessing::register(m)?;
    Ok(())
}
