"""Drop-in replacement for the standard library's ``queue`` module.

    from tress import queue
    q = queue.Queue(maxsize=100)

``Queue``, ``LifoQueue``, ``PriorityQueue`` and ``SimpleQueue`` behave as
CPython 3.11's (same signatures, exceptions and edge cases) plus Python
3.13's ``Queue.shutdown()``; they are implemented in Rust, one native call
per operation, and release the GIL only when a call really blocks. A
blocking ``get``, ``put`` or ``join`` on the main thread raises
``KeyboardInterrupt`` promptly on SIGINT, with no item lost or duplicated.

``Empty`` and ``Full`` are the very classes ``queue.Empty`` and
``queue.Full``, so existing ``except queue.Empty:`` clauses keep working.
``ShutDown`` is ``queue.ShutDown`` where the interpreter has one (3.13+).

Subclasses may override ``_init``, ``_qsize``, ``_put`` and ``_get`` as
with the stdlib; such a subclass runs the stdlib's algorithm around its
hooks (slower than the plain classes). Differences from the stdlib are
listed in ``tests/conformance/DIVERGENCES.md``.
"""

import queue as _std
from queue import Empty, Full

try:
    ShutDown = _std.ShutDown
except AttributeError:  # Python < 3.13

    class ShutDown(Exception):
        """Raised when put/get with shut-down queue."""

    ShutDown.__module__ = __name__


from tress._tress import LifoQueue, PriorityQueue, Queue, SimpleQueue

__all__ = [
    "Empty",
    "Full",
    "ShutDown",
    "Queue",
    "PriorityQueue",
    "LifoQueue",
    "SimpleQueue",
]
