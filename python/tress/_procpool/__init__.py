"""The process pools: ``tress.futures.ProcessPoolExecutor`` and
``tress.pool.Pool`` on one engine, worker processes on tress's
shared-memory queues that may die without breaking the pool.

The layers, in the order to read them:

- :mod:`~tress._procpool.wire`: every message between the parent and the
  workers (its table is also in docs/ARCHITECTURE.md);
- :mod:`~tress._procpool.calls`: a call pickled for a worker, the chunk
  runners, the one chunk-size rule;
- :mod:`~tress._procpool.worker`: the worker process's loop;
- :mod:`~tress._procpool.engine`: the parent's side (``Policy``, ``Job``,
  ``Engine``: backlog, feeding, settling, watching, the pool's state);
- :mod:`~tress._procpool.executor`: ``ProcessPoolExecutor`` on it
  (``tress.pool.Pool`` is in python/tress/pool.py).

Tasks go to the workers through a task ring (each message: the task's
number, then the pickled call), results come back through a result ring; a
manager thread in the parent settles them and watches the workers. Each
worker records the task it takes in a task table in shared memory (as the
message leaves the ring), so when a worker dies (SIGKILL, a crash,
``os._exit``) the manager fails exactly that task with :class:`WorkerDied`
(a ``BrokenProcessPool``, so stdlib-style handlers catch it) and starts a
replacement; every other task completes.

Beyond the stdlib, opt in: ``task_timeout`` (seconds) fails a task that runs
longer with ``TimeoutError`` and replaces its worker; ``progress=True`` on
``map`` shows a progress bar (tqdm's when installed, else a one-line
counter). ``map`` chunks by default (``chunksize=None``: about four chunks
per worker, as ``multiprocessing.Pool`` does); an explicit ``chunksize``
wins. Lambdas, closures and functions of an interactive ``__main__`` are
sent with cloudpickle when it is installed; without it their pickling error
says so.

What differs from the stdlib's, on purpose: a dead worker fails its task,
not the pool (the stdlib breaks the whole pool and fails every pending
future); leaving a ``with`` block by ``KeyboardInterrupt``, or an
interpreter that exits on an uncaught one, stops the workers at once
instead of waiting for the queued tasks. Workers ignore SIGINT (a Ctrl-C at
the terminal reaches the whole process group; the parent decides what
stops).
"""

from tress._procpool.engine import WorkerDied
from tress._procpool.executor import ProcessPoolExecutor

__all__ = ["ProcessPoolExecutor", "WorkerDied"]
