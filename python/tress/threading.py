"""Drop-in replacements for the synchronisation primitives of ``threading``.

    from tress import threading
    lock = threading.Lock()

The seven classes behave as CPython 3.11's (same signatures, exceptions and
edge cases), are implemented in Rust, release the GIL only when a call
really blocks, and raise ``KeyboardInterrupt`` promptly when a blocking call
on the main thread receives SIGINT. Everything else of ``threading``
(``Thread``, ``current_thread``, ``local``, ...) is re-exported unchanged, so
``from tress import threading`` can replace ``import threading`` wholesale.
"""

import threading as _std
from threading import *  # noqa: F401,F403  (Thread, current_thread, ...)
from threading import BrokenBarrierError

from tress._tress import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
)

TIMEOUT_MAX = _std.TIMEOUT_MAX

__all__ = [name for name in _std.__all__]
