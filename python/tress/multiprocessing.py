"""Drop-in replacements for ``multiprocessing``'s queues, in shared memory.

    from tress import multiprocessing as tmp
    q = tmp.Queue()
    p = multiprocessing.Process(target=worker, args=(q,))
    ctx = tmp.get_context("spawn")  # tress's queues and locks, spawn's Process
    q = ctx.Queue()
    p = ctx.Process(target=worker, args=(q,))

``Queue``, ``SimpleQueue`` and ``JoinableQueue`` keep multiprocessing's API
and exceptions (``queue.Empty``, ``queue.Full``, ``ValueError`` once
closed) and add ``put_many``/``get_many`` and a ``capacity`` (bytes of the
shared ring). What differs, by design:

* items are pickled in the caller of ``put`` (protocol 5, large buffers
  out of band, copied once into shared memory): an item that cannot be
  pickled raises right there, and the queue stays intact (multiprocessing's
  feeder thread loses it); a put copies straight into the ring, and only
  when the ring is full and no reader makes room is the pickled message
  kept in the process, in order, for a feeder thread to place
  (``join_thread`` waits for it, ``cancel_join_thread`` gives it up at
  exit, as multiprocessing's);
* an item that fails to unpickle raises in ``get``; the queue stays intact;
* items of any size go through (a 100 MB NumPy array, a 256 MiB
  ``bytes``), with no capacity to tune: a message larger than the ring
  goes out of band, in the same anonymous memory file past the ring,
  copied there once and copied once more, straight into the result, by
  ``get``; its pages are then kept for the next large items (the last
  few, at most 64 MiB or the ring's size, or the last one if larger:
  ``_ring.spare_bytes``, freed by ``_ring.trim()`` or when the queue is
  closed) or freed; only a
  machine short of memory makes the
  ``put`` fail (``OSError`` naming the size; the queue stays intact);
* the shared memory is an anonymous memory file reserved at creation: no
  name in ``/dev/shm`` (nothing is left there, whatever happens to the
  processes), and a machine short of memory fails at ``Queue()`` with an
  ``OSError`` naming the size, not with a ``SIGBUS`` later.

``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore`` and ``Event`` are
futex words in shared memory (``tress::ipc``) with multiprocessing's API and
errors; ``Condition`` and ``Barrier`` are multiprocessing's own algorithms
built on those (as multiprocessing builds them on its semaphores). Like
multiprocessing's, a lock held by a process that dies stays held.

Every object reaches child processes by inheritance (``fork``) or, under
``spawn`` and ``forkserver``, as an argument of ``Process`` or of a
``Pool`` initializer: its descriptor travels the way multiprocessing passes
descriptors. Pickling one at any other time raises ``RuntimeError`` as
multiprocessing's do. An object made from any context passes to a process
of any other (multiprocessing refuses a lock or queue made from a fork
context to a spawn or forkserver child; tress's descriptors have no such
limit).

Contexts: ``get_context(method)`` returns tress's ``ForkContext``,
``SpawnContext`` or ``ForkServerContext`` (subclasses of multiprocessing's,
one of each per process) whose ``Queue``, ``SimpleQueue``,
``JoinableQueue``, ``Lock``, ``RLock``, ``Semaphore``,
``BoundedSemaphore``, ``Event``, ``Condition`` and ``Barrier`` are tress's
(the queues also take ``capacity=``) and whose ``Pool`` is
``tress.pool.Pool`` with ``context=`` that context (also
``task_timeout=``); the rest (``Process``, ``Manager``, ``Pipe``,
``Value``/``Array``, whose lock is the context's ``RLock``,
``get_start_method``, ``reducer``, ...) is multiprocessing's for that start
method, and an unknown method raises its ``ValueError``. tress's
``DefaultContext`` has no start method of its own: ``set_start_method``,
``get_start_method`` and ``get_context()`` are those of multiprocessing's
default context (``multiprocessing.set_start_method`` sets tress's too,
and the reverse, with the same errors), ``get_context()`` being tress's
context of that method. The module's names are the default context's, as
multiprocessing's are: ``Pool``, ``get_context``, ``set_start_method``...
are tress's, ``Process``, ``current_process``, ``Manager``... the stdlib's;
``Queue`` and the other types above stay tress's classes. The stdlib's own
pools (``concurrent.futures.ProcessPoolExecutor(mp_context=...)``,
``multiprocessing.pool.Pool(context=...)``) take tress's contexts: they
read the pipe ends of their ``SimpleQueue``s, so a tress context gives
them multiprocessing's ``SimpleQueue`` (its other objects are tress's).
"""

import multiprocessing as _mp
import os
import struct
import sys
import weakref
from multiprocessing import context as _context
from multiprocessing import reduction as _reduction
from queue import Empty, Full

from multiprocessing import synchronize as _sync
from multiprocessing import util as _util

from tress._tress import ShmEvent as _ShmEvent
from tress._tress import ShmQueue as _ShmQueue
from tress._tress import ShmSemLock as _ShmSemLock

# tress's classes; the other names of multiprocessing's ``__all__`` (added at
# the end of the module) are bound to tress's default context, as
# multiprocessing binds them to its own.
_TRESS_TYPES = (
    "Queue", "SimpleQueue", "JoinableQueue",
    "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier",
)
__all__ = [*_TRESS_TYPES, "Empty", "Full", "DEFAULT_CAPACITY",
           "ForkContext", "SpawnContext", "ForkServerContext", "DefaultContext"]

DEFAULT_CAPACITY = 8 << 20
"""Bytes of shared memory a queue's ring reserves unless told otherwise
(8 MiB). It does not bound the items: one that pickles to more than the
ring holds (8 MiB less 16 bytes) goes out of band, in memory of its own
taken when it is put (the pages of an earlier large item, kept for reuse,
where one of its size is there) and given back when it is read. Reserving
is paid at creation, in proportion to the size (the kernel zeroes every
page), so a larger default would slow every ``Queue()``. A larger
``capacity=`` is only a matter of speed: through the ring an item is
copied at memory speed; out of band too once pages of its size are kept
for reuse (items of a recurring size), else at the speed the kernel
allocates and frees pages (several times slower)."""

_PROTOCOL = 5
_FRAMED = b"F"  # a message with out-of-band buffers; plain ones start b"\x80"


# The message format (encoded and decoded natively, ``ShmQueue.put_obj`` /
# ``get_obj``): a top-level ``bytes`` or ``bytearray`` goes raw behind a tag
# byte (b"B", b"A"); anything else is pickled with protocol 5, and a pickle
# with out-of-band buffers is framed (b"F", the count, the sizes, the
# pickle, the buffers) by ``_frame`` below and decoded natively.


def _frame(data, buffers):
    """The parts of a framed message: header, pickle, raw buffers."""
    raws = [b.raw() for b in buffers]
    header = struct.pack(f"<cI{len(raws) + 1}Q", _FRAMED, len(raws), len(data),
                         *(r.nbytes for r in raws))
    return [header, data, *raws]


def _dumps_fallback(obj, exc):
    """What only multiprocessing's reducers can pickle (a socket, a
    connection, ...) goes through its pickler, buffers in band; what neither
    can pickle raises the plain pickler's error ``exc``."""
    try:
        return [_reduction.ForkingPickler.dumps(obj, _PROTOCOL)]
    except Exception:
        raise exc from None


_flushing_pid = None


def _feeder_started():
    """Called the first time a queue's put kept a message in this process
    (the ring was full): the process then waits, as it exits, until its
    feeders have put what they kept, as multiprocessing joins its queues'
    feeder threads (the same finalizer priority)."""
    global _flushing_pid
    if _flushing_pid != os.getpid():
        _flushing_pid = os.getpid()
        _util.Finalize(None, _ShmQueue.flush_all, exitpriority=-5)


def _maxsize(maxsize):
    return 0 if maxsize <= 0 else maxsize


def _attach(queue, ring, base):
    """``queue``'s handle on ``ring`` in this process. Its ``put`` and
    ``get`` are then the ring's own (``put_obj``/``get_obj``, the same
    arguments): one native call per item, not a Python method and then a
    native one (a third of a small item's cost). A subclass that overrides
    them keeps its own; ``close`` takes the bound ones back."""
    queue._ring = ring
    queue._closed = False
    cls = type(queue)
    if cls.put is base.put:
        queue.put = ring.put_obj
    if cls.get is base.get:
        queue.get = ring.get_obj


def _detach(queue):
    """``close``: later calls go to the class's methods, which raise."""
    queue._closed = True
    queue.__dict__.pop("put", None)
    queue.__dict__.pop("get", None)


class Queue:
    """``multiprocessing.Queue`` in shared memory (see the module docs).

    ``maxsize`` bounds the items (``<= 0``: no bound but the bytes);
    ``capacity`` is the ring's size in bytes (default
    :data:`DEFAULT_CAPACITY`)."""

    def __init__(self, maxsize=0, *, ctx=None, capacity=None):
        self._maxsize = maxsize
        self._attach(_ShmQueue(DEFAULT_CAPACITY if capacity is None else capacity,
                               _maxsize(maxsize)))

    def _attach(self, ring):
        ring.use_feeder()
        self._joincancelled = False
        self._reader_closed = False
        _attach(self, ring, Queue)

    # -- multiprocessing's API

    def put(self, obj, block=True, timeout=None):
        """Put ``obj`` on the queue, waiting for room up to ``timeout``
        seconds (forever if None) when ``block``; ``queue.Full`` otherwise."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        self._ring.put_obj(obj, block, timeout)

    def get(self, block=True, timeout=None):
        """Remove and return an item, waiting up to ``timeout`` seconds
        (forever if None) when ``block``; ``queue.Empty`` otherwise."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        return self._ring.get_obj(block, timeout)

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    def put_many(self, objs, block=True, timeout=None):
        """Put every item of ``objs`` in order (all pickled and sized first,
        so an unpicklable or too large item puts none); returns how many
        were put. With
        ``block`` false or a timeout, stops at the first that finds no room
        (``queue.Full`` if it is the first)."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        return self._ring.put_objs(objs, block, timeout)

    def get_many(self, n, block=True, timeout=None):
        """Up to ``n`` items: waits for the first as ``get`` does, then takes
        those ready without waiting. An item after the first that fails to
        unpickle ends the batch: the items before it are returned, its
        error is raised by the next ``get``/``get_many``."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        return self._ring.get_objs(n, block, timeout)

    def qsize(self):
        """Items ready now (approximate while other processes work on it)."""
        return self._ring.qsize()

    def empty(self):
        if self._reader_closed:
            raise OSError("handle is closed")
        return self._ring.empty()

    def full(self):
        return self._ring.full()

    def close(self):
        """Indicate that this process will put no more data; what it put
        and kept (the ring was full) is still put by its feeder thread.
        As multiprocessing's, a queue this process put to then has its
        end closed: ``empty()`` raises ``OSError`` (one never put to still
        answers)."""
        _detach(self)
        self._reader_closed = self._ring.fed

    def join_thread(self):
        """Wait until what this process put is in the queue's shared memory
        (its feeder thread has placed what it kept). Only after ``close``,
        as multiprocessing's."""
        assert self._closed, "Queue {0!r} not closed".format(self)
        if not self._joincancelled:
            self._ring.flush()

    def cancel_join_thread(self):
        """Let this process exit without waiting for its feeder thread to
        place what it kept (which is then lost, as multiprocessing's)."""
        self._joincancelled = True
        self._ring.cancel_flush()

    @property
    def capacity(self):
        """The ring's size in bytes."""
        return self._ring.capacity

    # -- to child processes

    def __getstate__(self):
        _context.assert_spawning(self)
        return (self._maxsize, _reduction.DupFd(self._ring.fileno()))

    def __setstate__(self, state):
        self._maxsize, fd = state
        self._attach(_ShmQueue.from_fd(fd.detach()))

    def __repr__(self):
        return f"<{type(self).__module__}.{type(self).__qualname__} object at {id(self):#x}>"


class JoinableQueue(Queue):
    """``multiprocessing.JoinableQueue``: ``task_done`` and ``join`` across
    processes."""

    def task_done(self):
        """Indicate that a formerly enqueued task is complete (ValueError if
        called more times than items were put)."""
        self._ring.task_done()

    def join(self):
        """Block until every item put has been marked done."""
        self._ring.join(None)


class SimpleQueue:
    """``multiprocessing.SimpleQueue`` in shared memory: ``put``, ``get``,
    ``empty``, ``close``."""

    def __init__(self, *, ctx=None, capacity=None):
        _attach(self, _ShmQueue(DEFAULT_CAPACITY if capacity is None else capacity, 0),
                SimpleQueue)

    def _check_closed(self):
        if self._closed:
            raise OSError("handle is closed")

    def put(self, obj):
        self._check_closed()
        self._ring.put_obj(obj)

    def get(self):
        self._check_closed()
        return self._ring.get_obj()

    def empty(self):
        self._check_closed()
        return self._ring.empty()

    def close(self):
        """Close this process's handle: later calls raise ``OSError``, as
        multiprocessing's once its pipe ends are closed."""
        _detach(self)

    def __getstate__(self):
        _context.assert_spawning(self)
        return _reduction.DupFd(self._ring.fileno())

    def __setstate__(self, fd):
        _attach(self, _ShmQueue.from_fd(fd.detach()), SimpleQueue)

    __class_getitem__ = classmethod(type(list[int]))


# --------------------------------------------------------------------------
# synchronization


# The locks, semaphores and events live many to a memory file (an arena,
# tress::ipc's), and pickle as the arena's descriptor and their cell. The
# descriptor goes to a child once, however many primitives of the arena go
# with it: a child receives one per arena (the spawn method's descriptor
# list takes each only once), and the primitives it unpickles map the arena
# through it (each process maps an arena once, with a descriptor of its
# own); the received one is closed once the pickle is loaded.


class _ArenaFdIn:
    """An arena's descriptor received by a child (once per arena and pickle:
    the pickle's memo hands the same object to every primitive of the
    arena); closed when the primitives are unpickled."""

    __slots__ = ("fd",)

    def __init__(self, dupfd):
        self.fd = dupfd.detach()

    def __del__(self):
        try:
            os.close(self.fd)
        except (OSError, TypeError, AttributeError):  # closed, or at shutdown
            pass


class _ArenaFdOut:
    """An arena's descriptor on its way to the child being started."""

    __slots__ = ("dupfd", "__weakref__")

    def __init__(self, fd):
        self.dupfd = _reduction.DupFd(fd)

    def __reduce__(self):
        return _ArenaFdIn, (self.dupfd,)


# the spawning Popen -> {descriptor: _ArenaFdOut}
_arena_fds = weakref.WeakKeyDictionary()


def _arena_fd(fd):
    """What a primitive pickles for its arena's descriptor ``fd``: one
    object per arena and child being started."""
    popen = _context.get_spawning_popen()
    sent = _arena_fds.setdefault(popen, {})
    out = sent.get(fd)
    if out is None:
        out = sent[fd] = _ArenaFdOut(fd)
    return out


class _SemLock(_sync.SemLock):
    """multiprocessing's ``SemLock`` on a tress ``ShmSemLock``: the same
    methods (``acquire``/``release`` are the native ones, bound per
    object), pickled as its arena's descriptor and its cell."""

    def __init__(self, kind, value, maxvalue, *, ctx=None):
        self._semlock = _ShmSemLock(kind, value, maxvalue)
        self._make_methods()
        _util.register_after_fork(self, _SemLock._after_fork)

    def _after_fork(self):
        self._semlock._after_fork()

    def __getstate__(self):
        # The arena's descriptor and the cell; the reference lent here is
        # the receiver's (``from_fd`` takes it over), so the lock outlives
        # this process's handle while the child starts.
        _context.assert_spawning(self)
        sl = self._semlock
        arena = _arena_fd(sl.fileno())
        return (arena, sl._lend(), sl.kind, sl.maxvalue)

    def __setstate__(self, state):
        arena, cell, kind, maxvalue = state
        self._semlock = _ShmSemLock.from_fd(arena.fd, cell, kind, maxvalue)
        self._make_methods()


class Semaphore(_SemLock, _sync.Semaphore):
    """``multiprocessing.Semaphore`` in shared memory."""

    def __init__(self, value=1, *, ctx=None):
        _SemLock.__init__(self, _sync.SEMAPHORE, value, _sync.SEM_VALUE_MAX)

    def get_value(self):
        return self._semlock._get_value()


class BoundedSemaphore(_SemLock, _sync.BoundedSemaphore):
    """``multiprocessing.BoundedSemaphore`` in shared memory."""

    def __init__(self, value=1, *, ctx=None):
        _SemLock.__init__(self, _sync.SEMAPHORE, value, value)

    def get_value(self):
        return self._semlock._get_value()


class Lock(_SemLock, _sync.Lock):
    """``multiprocessing.Lock`` in shared memory."""

    def __init__(self, *, ctx=None):
        _SemLock.__init__(self, _sync.SEMAPHORE, 1, 1)


class RLock(_SemLock, _sync.RLock):
    """``multiprocessing.RLock`` in shared memory."""

    def __init__(self, *, ctx=None):
        _SemLock.__init__(self, _sync.RECURSIVE_MUTEX, 1, 1)


class _Context:
    """What multiprocessing's Condition and Barrier ask their ``ctx`` for."""

    Lock = staticmethod(lambda: Lock())
    RLock = staticmethod(lambda: RLock())
    Semaphore = staticmethod(lambda value=1: Semaphore(value))
    BoundedSemaphore = staticmethod(lambda value=1: BoundedSemaphore(value))
    Condition = staticmethod(lambda lock=None: Condition(lock))


class Condition(_sync.Condition):
    """``multiprocessing.Condition`` (its algorithm) on tress's locks and
    semaphores; the default lock is a tress ``RLock``."""

    def __init__(self, lock=None, *, ctx=None):
        super().__init__(lock, ctx=_Context)


class Barrier(_sync.Barrier):
    """``multiprocessing.Barrier`` (its algorithm) on a tress ``Condition``."""

    def __init__(self, parties, action=None, timeout=None, *, ctx=None):
        super().__init__(parties, action, timeout, ctx=_Context)


class Event:
    """``multiprocessing.Event``: one flag in shared memory that processes
    wait on."""

    def __init__(self, *, ctx=None):
        self._event = _ShmEvent()

    def is_set(self):
        return self._event.is_set()

    def set(self):
        self._event.set()

    def clear(self):
        self._event.clear()

    def wait(self, timeout=None):
        """Block until the flag is set or ``timeout`` seconds pass; the
        flag."""
        return self._event.wait(timeout)

    def __getstate__(self):
        # As ``_SemLock.__getstate__``.
        _context.assert_spawning(self)
        arena = _arena_fd(self._event.fileno())
        return (arena, self._event._lend())

    def __setstate__(self, state):
        arena, cell = state
        self._event = _ShmEvent.from_fd(arena.fd, cell)

    def __repr__(self):
        set_status = "set" if self.is_set() else "unset"
        return f"<{type(self).__qualname__} at {id(self):#x} {set_status}>"


# --------------------------------------------------------------------------
# contexts


# The stdlib modules whose pools, given a context, take ``SimpleQueue``s from
# it and read their pipe ends (``_reader``/``_writer``, with
# ``connection.wait``): ``concurrent.futures.ProcessPoolExecutor(mp_context=)``
# and ``multiprocessing.pool.Pool(context=)``. A tress context gives them the
# stdlib's SimpleQueue (bound to it), so they work as with the stdlib's
# context instead of failing in a helper thread (and hanging); their other
# queues and locks are tress's. tress's own pools need none of this.
_PIPE_READERS = frozenset({"concurrent.futures.process", "multiprocessing.pool"})


def _tress_context(ctx):
    """tress's context for the start method of the stdlib's context ``ctx``
    (``ctx`` itself if tress has none of that name)."""
    return _concrete_contexts.get(getattr(ctx, "_name", None), ctx)


class _TressFactories:
    """What makes a multiprocessing context tress's: its queues, locks and
    ``Pool`` (the rest is the stdlib's context class it is mixed into)."""

    def Queue(self, maxsize=0, *, capacity=None):
        """Returns a tress queue (``capacity``: bytes of its ring)."""
        return Queue(maxsize, ctx=self.get_context(), capacity=capacity)

    def JoinableQueue(self, maxsize=0, *, capacity=None):
        """Returns a tress joinable queue."""
        return JoinableQueue(maxsize, ctx=self.get_context(), capacity=capacity)

    def SimpleQueue(self, *, capacity=None):
        """Returns a tress simple queue; the stdlib's to the stdlib's own
        pools (see ``_PIPE_READERS``)."""
        if sys._getframe(1).f_globals.get("__name__") in _PIPE_READERS:
            from multiprocessing.queues import SimpleQueue as std_simple_queue

            return std_simple_queue(ctx=self.get_context())
        return SimpleQueue(ctx=self.get_context(), capacity=capacity)

    def Lock(self):
        """Returns a non-recursive tress lock."""
        return Lock(ctx=self.get_context())

    def RLock(self):
        """Returns a recursive tress lock."""
        return RLock(ctx=self.get_context())

    def Condition(self, lock=None):
        """Returns a tress condition."""
        return Condition(lock, ctx=self.get_context())

    def Semaphore(self, value=1):
        """Returns a tress semaphore."""
        return Semaphore(value, ctx=self.get_context())

    def BoundedSemaphore(self, value=1):
        """Returns a tress bounded semaphore."""
        return BoundedSemaphore(value, ctx=self.get_context())

    def Event(self):
        """Returns a tress event."""
        return Event(ctx=self.get_context())

    def Barrier(self, parties, action=None, timeout=None):
        """Returns a tress barrier."""
        return Barrier(parties, action, timeout, ctx=self.get_context())

    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, *,
             task_timeout=None):
        """Returns a ``tress.pool.Pool`` of this context's processes
        (``task_timeout``: tress's, see the class)."""
        from tress.pool import Pool

        return Pool(processes, initializer, initargs, maxtasksperchild,
                    context=self.get_context(), task_timeout=task_timeout)

    def get_context(self, method=None):
        if method is None:
            return self
        # the stdlib's lookup: its ValueError for an unknown or unavailable method
        return _tress_context(_context.BaseContext.get_context(self, method))

    def __reduce__(self):
        # one context per start method in a process, as multiprocessing's
        return _tress_context_named, (self._name,)


def _tress_context_named(name):
    return _concrete_contexts[name]


class ForkContext(_TressFactories, _context.ForkContext):
    """multiprocessing's fork context with tress's queues, locks and Pool."""


class SpawnContext(_TressFactories, _context.SpawnContext):
    """multiprocessing's spawn context with tress's queues, locks and Pool."""


class ForkServerContext(_TressFactories, _context.ForkServerContext):
    """multiprocessing's forkserver context with tress's queues, locks and
    Pool."""


_concrete_contexts = {
    "fork": ForkContext(),
    "spawn": SpawnContext(),
    "forkserver": ForkServerContext(),
}


class DefaultContext(_TressFactories, _context.DefaultContext):
    """tress's default context: its start method is the stdlib's.

    Every start-method call is the stdlib default context's
    (``multiprocessing.context._default_context``): ``set_start_method``
    here sets ``multiprocessing.set_start_method`` and the reverse, with the
    same errors; ``get_context()`` is tress's context of the stdlib's
    current start method (fixing it, as the stdlib's does); ``Process`` is
    the stdlib's default ``Process``, which starts with that method."""

    def __init__(self, std_default):
        self._std = std_default

    @property
    def _default_context(self):
        return _tress_context(self._std._default_context)

    @property
    def _actual_context(self):
        ctx = self._std._actual_context
        return None if ctx is None else _tress_context(ctx)

    @_actual_context.setter
    def _actual_context(self, ctx):
        # what multiprocessing's own code sets on its default context
        self._std._actual_context = None if ctx is None else _context._concrete_contexts[ctx._name]

    def get_context(self, method=None):
        if method is None:
            return _tress_context(self._std.get_context())
        return _TressFactories.get_context(self, method)

    def set_start_method(self, method, force=False):
        self._std.set_start_method(method, force)

    def get_start_method(self, allow_none=False):
        return self._std.get_start_method(allow_none)

    def get_all_start_methods(self):
        return self._std.get_all_start_methods()

    def __reduce__(self):
        return _tress_default_context, ()


def _tress_default_context():
    return _default_context


_default_context = DefaultContext(_context._default_context)

# multiprocessing's other public names, from tress's default context as
# multiprocessing takes them from its own: ``Pool``, ``get_context``,
# ``set_start_method``... (tress's), ``Process``, ``Manager``, ``Pipe``,
# ``Value``, ``current_process``, the exceptions... (the stdlib's).
_STDLIB_NAMES = [name for name in _mp.__all__ if name not in _TRESS_TYPES]
globals().update((name, getattr(_default_context, name)) for name in _STDLIB_NAMES)
__all__ += _STDLIB_NAMES
