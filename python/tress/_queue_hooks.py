"""The queue algorithm for subclasses that override the storage hooks.

A subclass of ``tress.queue.Queue`` (or ``LifoQueue``/``PriorityQueue``)
that overrides ``_init``, ``_qsize``, ``_put`` or ``_get`` is served by
these functions instead of the native fast path: they implement the
stdlib's documented semantics (CPython 3.11, plus 3.13's ``shutdown``)
around the subclass's hooks, guarded by a ``tress.threading.Lock`` and
three ``Condition``s stored on the instance as ``mutex``, ``not_empty``,
``not_full`` and ``all_tasks_done``, as the stdlib does. On this path the
items live where the hooks put them: the inherited ``_init``/``_put``/
``_get``/``_qsize`` (``base_*`` below) keep them in ``self.queue`` (a
``deque``, a list, a heap), exactly as the stdlib's, so a hook may call
``Queue._put(self, item)`` or rely on the inherited ``_qsize``.
"""

from collections import deque
from heapq import heappop, heappush
from queue import Empty, Full
from time import monotonic as _time

from tress._tress import Condition as _Condition
from tress._tress import Lock as _Lock


def base_init(q, kind):
    q.queue = deque() if kind == "fifo" else []


def base_qsize(q):
    return len(q.queue)


def base_put(q, kind, item):
    if kind == "priority":
        heappush(q.queue, item)
    else:
        q.queue.append(item)


def base_get(q, kind):
    if kind == "fifo":
        return q.queue.popleft()
    if kind == "lifo":
        return q.queue.pop()
    return heappop(q.queue)


def _shut_down():
    from tress.queue import ShutDown

    return ShutDown


def init(q, maxsize):
    q.mutex = _Lock()
    q.not_empty = _Condition(q.mutex)
    q.not_full = _Condition(q.mutex)
    q.all_tasks_done = _Condition(q.mutex)
    q.unfinished_tasks = 0
    q._is_shutdown = False
    q._init(maxsize)


def task_done(q):
    with q.all_tasks_done:
        unfinished = q.unfinished_tasks - 1
        if unfinished <= 0:
            if unfinished < 0:
                raise ValueError("task_done() called too many times")
            q.all_tasks_done.notify_all()
        q.unfinished_tasks = unfinished


def join(q):
    with q.all_tasks_done:
        while q.unfinished_tasks:
            q.all_tasks_done.wait()


def qsize(q):
    with q.mutex:
        return q._qsize()


def empty(q):
    with q.mutex:
        return not q._qsize()


def full(q):
    with q.mutex:
        return 0 < q.maxsize <= q._qsize()


def put(q, item, block, timeout):
    with q.not_full:
        if q._is_shutdown:
            raise _shut_down()
        if q.maxsize > 0:
            if not block:
                if q._qsize() >= q.maxsize:
                    raise Full
            elif timeout is None:
                while q._qsize() >= q.maxsize:
                    q.not_full.wait()
                    if q._is_shutdown:
                        raise _shut_down()
            elif timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
            else:
                endtime = _time() + timeout
                while q._qsize() >= q.maxsize:
                    remaining = endtime - _time()
                    if remaining <= 0.0:
                        raise Full
                    q.not_full.wait(remaining)
                    if q._is_shutdown:
                        raise _shut_down()
        q._put(item)
        q.unfinished_tasks += 1
        q.not_empty.notify()


def get(q, block, timeout):
    with q.not_empty:
        if q._is_shutdown and not q._qsize():
            raise _shut_down()
        if not block:
            if not q._qsize():
                raise Empty
        elif timeout is None:
            while not q._qsize():
                q.not_empty.wait()
                if q._is_shutdown and not q._qsize():
                    raise _shut_down()
        elif timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        else:
            endtime = _time() + timeout
            while not q._qsize():
                remaining = endtime - _time()
                if remaining <= 0.0:
                    raise Empty
                q.not_empty.wait(remaining)
                if q._is_shutdown and not q._qsize():
                    raise _shut_down()
        item = q._get()
        q.not_full.notify()
        return item


def shutdown(q, immediate):
    with q.mutex:
        q._is_shutdown = True
        if immediate:
            while q._qsize():
                q._get()
                if q.unfinished_tasks > 0:
                    q.unfinished_tasks -= 1
            q.all_tasks_done.notify_all()
        q.not_empty.notify_all()
        q.not_full.notify_all()

