"""tress: Python's concurrency modules rebuilt in Rust.

Drop-in replacements for the standard library's concurrency primitives:
change one import, keep the API, the exceptions and the edge cases.

    from tress import threading      # instead of: import threading

Modules:
    tress.threading   Lock, RLock, Condition, Semaphore, BoundedSemaphore,
                      Event, Barrier (drop-in for ``threading``'s)
    tress.queue       Queue, LifoQueue, PriorityQueue, SimpleQueue, Empty,
                      Full, ShutDown (drop-in for ``queue``)
    tress.futures     ThreadPoolExecutor (drop-in for ``concurrent.futures``';
                      a first version)
    tress.pool        ThreadPool (drop-in for ``multiprocessing.pool``'s; a
                      first version)

Run ``python -m tress bench`` to compare tress with the standard library on
this machine.
"""

try:
    from tress._tress import __version__
except ImportError:  # source tree without a built extension: bench reports it
    __version__ = "0.0.0+unbuilt"

__all__ = ["__version__", "futures", "pool", "queue", "threading"]


def __getattr__(name: str):
    # Submodules load on first use, so ``import tress`` stays cheap.
    if name in ("futures", "pool", "queue", "threading"):
        import importlib

        return importlib.import_module(f"tress.{name}")
    raise AttributeError(f"module 'tress' has no attribute {name!r}")
