"""What a process pool sends to run: a call pickled for a worker, the
functions that run a chunk of a ``map`` in a worker, and the one rule for
the size of those chunks (shared by ``ProcessPoolExecutor.map``,
``Pool.map``/``imap`` and ``ThreadPool``).
"""

import itertools
import pickle
import sys

__all__ = ["auto_chunksize", "dumps_call", "map_chunk", "starmap_chunk", "each_outcome",
           "CLOUDPICKLE_HINT"]

CHUNKS_PER_WORKER = 4
"""``chunksize=None``: about this many chunks per worker (as
``multiprocessing.Pool.map``)."""

CLOUDPICKLE_HINT = (
    "lambdas, closures and functions defined in an interactive __main__ can be "
    "sent to worker processes when cloudpickle is installed: pip install cloudpickle "
    "(or tress[cloudpickle])"
)


def auto_chunksize(n, workers):
    """The chunk size of a ``map`` of ``n`` items over ``workers`` workers
    when none is given: about :data:`CHUNKS_PER_WORKER` chunks per worker,
    at least 1 (``multiprocessing.Pool.map``'s rule)."""
    chunksize, extra = divmod(n, workers * CHUNKS_PER_WORKER)
    return max(chunksize + bool(extra), 1)


# --------------------------------------------------------------------------
# run in the worker


def map_chunk(fn, chunk):
    """One chunk of a ``map`` over one iterable (its items, not 1-tuples)."""
    return list(map(fn, chunk))


def starmap_chunk(fn, chunk):
    """One chunk of a ``map`` over several iterables (argument tuples)."""
    return list(itertools.starmap(fn, chunk))


def each_outcome(fn, chunk):
    """A chunk whose items must keep their own outcomes (``Pool.imap``
    chunked by the pool, not by the caller): ``(True, value)`` or ``(False,
    exception)`` per item, the exception with the worker's traceback, as the
    stdlib sends a task's."""
    from multiprocessing.pool import ExceptionWithTraceback

    out = []
    for item in chunk:
        try:
            out.append((True, fn(item)))
        except Exception as exc:
            out.append((False, ExceptionWithTraceback(exc, exc.__traceback__)))
    return out


# --------------------------------------------------------------------------
# pickled in the parent


def _cloudpickle():
    try:
        import cloudpickle
    except ImportError:
        return None
    return cloudpickle


def _main_reimportable():
    """Whether spawn and forkserver children can import ``__main__`` again
    (a script or ``-m`` module can; ``python -c``, a REPL, a notebook cannot)."""
    main = sys.modules.get("__main__")
    return bool(getattr(main, "__file__", None) or getattr(main, "__spec__", None))


def _with_hint(exc):
    """``exc`` with :data:`CLOUDPICKLE_HINT` added to its message (same type
    when it takes a message alone, else ``PicklingError``)."""
    text = f"{exc}; {CLOUDPICKLE_HINT}"
    try:
        hinted = type(exc)(text)
    except Exception:
        hinted = pickle.PicklingError(text)
    hinted.__cause__ = exc
    return hinted


def _needs_cloudpickle(exc):
    text = str(exc)
    return any(s in text for s in ("<lambda>", "<locals>", "local object", "attribute lookup"))


def dumps_call(call, fn, start_method):
    """The pickled ``call`` (``(fn, args, kwargs)``). ``fn`` from a
    ``__main__`` that children cannot import again goes by value
    (cloudpickle) under spawn and forkserver; what plain pickle refuses goes
    through cloudpickle when it is installed; otherwise the pickling error,
    with the fix named when cloudpickle is what would send it."""
    by_value = (start_method != "fork" and getattr(fn, "__module__", None) == "__main__"
                and not _main_reimportable())
    if not by_value:
        try:
            return pickle.dumps(call, 5)
        except Exception as exc:
            error = exc
    else:
        error = pickle.PicklingError(
            f"{fn!r} is defined in __main__, which {start_method} worker processes "
            "cannot import")
    cloudpickle = _cloudpickle()
    if cloudpickle is None:
        if by_value or _needs_cloudpickle(error):
            raise _with_hint(error)
        raise error
    try:
        return cloudpickle.dumps(call, 5)
    except Exception:
        raise error from None


def describe(fn):
    """How a task names its function in error messages."""
    return getattr(fn, "__qualname__", None) or repr(fn)
