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
/// it back on when this module is imported, because `FutureCore` counts on
/// the GIL to keep two threads out of its methods at once, and
/// `ThreadPoolCore.submit` to keep its check and its put together (see
/// docs/ARCHITECTURE.md, "Free-threaded Python").
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
