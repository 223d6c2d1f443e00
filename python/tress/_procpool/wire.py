"""Every message between a process pool's parent and its workers, in one
place (the table in docs/ARCHITECTURE.md, "The process pools", is this
module's).

Two ``tress.multiprocessing`` queues carry them, as raw ``bytes`` (a
top-level ``bytes`` crosses a tress queue without pickling; a message of
any size goes through, large ones out of band):

parent -> worker, the task queue:

====================  ===============================================
``TASK``              task number (u64 LE), then the pickled call
                      ``(fn, args, kwargs)``
``STOP``              empty: the worker exits
====================  ===============================================

worker -> parent, the result queue: a kind byte, a u64 LE (a task number,
or a worker's index), a u32 LE (the worker's pid), then the body:

=================  ===========  =========================================
kind               number       body
=================  ===========  =========================================
``RESULT`` b"R"    task         the pickled return value
``ERROR`` b"E"     task         the pickled exception (with its remote
                                traceback as its cause)
``BROKEN`` b"B"    worker       empty: the initializer failed
``RETIRED`` b"T"   worker       empty: max tasks per child reached
=================  ===========  =========================================

The body is unpickled apart from the header (:func:`read`), so a body that
fails to unpickle fails its task alone: the parent still knows the task.
"""

import struct
from multiprocessing import context as _context
from multiprocessing import reduction as _reduction

from tress._tress import ShmQueue, TaskTable

__all__ = ["STOP", "RESULT", "ERROR", "BROKEN", "RETIRED", "task", "read_task", "reply",
           "read"]

STOP = b""

RESULT = b"R"
ERROR = b"E"
BROKEN = b"B"
RETIRED = b"T"

_TASK = struct.Struct("<Q")
_REPLY = struct.Struct("<cQI")
REPLY_HEADER = _REPLY.size


def task(number, call):
    """The parts of the message of task ``number`` whose pickled call is
    ``call`` (a queue's ``put`` joins them as it copies)."""
    return [_TASK.pack(number), call]


def read_task(message):
    """``(number, view of the pickled call)`` of a task message."""
    return _TASK.unpack_from(message)[0], memoryview(message)[_TASK.size:]


def reply(kind, number, pid, body=b""):
    """The parts of a message to the parent (see the table above)."""
    return [_REPLY.pack(kind, number, pid), body]


def read(message):
    """``(kind, number, pid, view of the body)`` of a message to the parent."""
    kind, number, pid = _REPLY.unpack_from(message)
    return kind, number, pid, memoryview(message)[REPLY_HEADER:]


# The rings and the task table reach spawn and forkserver workers as
# arguments of their Process: by descriptor, while the process is being
# started (as multiprocessing passes its own), and only then.


def _reduce_by_fd(obj):
    _context.assert_spawning(obj)
    return _rebuild, (type(obj), _reduction.DupFd(obj.fileno()))


def _rebuild(cls, fd):
    return cls.from_fd(fd.detach())


_reduction.ForkingPickler.register(ShmQueue, _reduce_by_fd)
_reduction.ForkingPickler.register(TaskTable, _reduce_by_fd)
