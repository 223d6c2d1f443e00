//! The extension module `tress._tress`: wiring only. Each Python module of
//! the package has its file here (`threading.rs`, …); `wait.rs` is how they
//! block (`relay.rs`: Ctrl-C on another thread wakes the main thread) and
//! `errors.rs` how they fail.

use pyo3::prelude::*;

#[cfg(target_os = "linux")]
mod asyncio;
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
/// Declared as not needing the GIL: no binding counts on it to keep two
/// threads apart (every class is frozen, its state in atomics or behind
/// locks never held across Python code), so a free-threaded interpreter
/// (3.13t) keeps the GIL off when it imports this module. See
/// docs/ARCHITECTURE.md, "Free-threaded Python", for what is yet to be run
/// on one.
#[pymodule(gil_used = false)]
fn _tress(m: &Bound<'_, PyModule>) -> PyResult<()> {
    wait::init(m.py())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    threading::register(m)?;
    queue::register(m)?;
    futures::register(m)?;
    #[cfg(target_os = "linux")]
    asyncio::register(m)?;
    #[cfg(target_os = "linux")]
    multiprocessing::register(m)?;
    Ok(())
}
