"""Fork safety of queues: os.fork() while other threads are blocked in
``get`` (Queue, LifoQueue, SimpleQueue), ``put`` (a full PriorityQueue) and
``join`` (a Queue with an unfinished task).

* "new": busy threads keep other queues changing while we fork; the child
  creates fresh queues of every kind and moves items through them with
  threads of its own (producer/consumer, join).
* "inherited": the child uses the queues whose waiters vanished with the
  parent's threads: a child thread blocked in get receives an item put
  afterwards (a vanished waiter must not swallow it), the full queue gives
  up the parent's items and nothing of the vanished putter's, the join
  count is the parent's.

The child always leaves through os._exit; the parent reaps it with a
deadline and kills it on overrun.  Afterwards the parent's own queues still
work: its blocked threads are served and finish.
"""

import json
import os
import signal
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() required")


CHILD = r"""
import faulthandler, importlib, json, os, signal, sys, threading, time, traceback
faulthandler.dump_traceback_later(80, exit=True)
M = importlib.import_module(sys.argv[1])
SCENARIO = sys.argv[2]          # "new" | "inherited"
FORKS = int(sys.argv[3])
CHILD_DEADLINE = 10             # seconds; SIGALRM (default action) kills a hung child
STDLIB = M.__name__ == "queue"

q_get = M.Queue()               # a thread blocked in get()
q_lifo = M.LifoQueue()          # a thread blocked in get(timeout)
q_simple = M.SimpleQueue()      # a thread blocked in get(timeout)
q_put = M.PriorityQueue(2)      # full; a thread blocked in put()
q_put.put(5)
q_put.put(3)
q_join = M.Queue()              # one unfinished task; a thread blocked in join()
q_join.put("task")
q_join.get()
busy_q = M.Queue(4)
stop = threading.Event()        # stdlib: harness sequencing only
results = {}

def get_waiter():
    results["get"] = q_get.get(timeout=60)

def lifo_waiter():
    results["lifo"] = q_lifo.get(timeout=60)

def simple_waiter():
    results["simple"] = q_simple.get(timeout=60)

def put_waiter():
    results["put"] = q_put.put(1, timeout=60)

def join_waiter():
    results["join"] = q_join.join()

def busy():
    # keeps a queue's state changing while we fork ("new" only: a queue
    # caught mid-operation is not inherited in a defined state)
    n = 0
    while not stop.is_set():
        try:
            busy_q.put(n, timeout=0.01)
            busy_q.get(timeout=0.01)
            busy_q.task_done()
        except Exception:
            pass
        n += 1

def at_call(thread, fn):
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code is fn.__code__:
            return frame.f_lineno == fn.__code__.co_firstlineno + 1
        frame = frame.f_back
    return False

waiters = [get_waiter, lifo_waiter, simple_waiter, put_waiter, join_waiter]
threads = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in waiters]
if SCENARIO == "new":
    threads += [threading.Thread(target=busy, name="busy", daemon=True) for _ in range(2)]
for t in threads:
    t.start()
deadline = time.monotonic() + 10
for t, fn in zip(threads, waiters):
    while not at_call(t, fn):
        assert time.monotonic() < deadline, t.name
        time.sleep(0.005)
if STDLIB:
    # stdlib reference: Queue waits on Conditions over q.mutex; make sure
    # every waiter is parked (registered, mutex released) before forking
    for cond in (q_get.not_empty, q_lifo.not_empty, q_put.not_full, q_join.all_tasks_done):
        while not cond._waiters:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert cond.acquire(timeout=10)
        cond.release()
else:
    time.sleep(0.05)  # not needed for correctness: lets the waiters park

def check(name, ok):
    if not ok:
        raise AssertionError(f"child check failed: {name}")

def in_thread(fn, *args):
    out = []
    def body():
        try:
            out.append(("ok", fn(*args)))
        except BaseException as exc:
            out.append(("raised", repr(exc)))
    t = threading.Thread(target=body)
    t.start()
    return t, out

def handoff(q, n=500):
    # one producer thread, one consumer thread, every item once, in order
    got = []
    def consume():
        for _ in range(n):
            got.append(q.get(timeout=5))
            if hasattr(q, "task_done"):
                q.task_done()
    def produce():
        for i in range(n):
            q.put(i, timeout=5)
    tc, oc = in_thread(consume)
    tp, op = in_thread(produce)
    tp.join(8)
    tc.join(8)
    check(f"{type(q).__name__} handoff threads finished", not tp.is_alive() and not tc.is_alive())
    check(f"{type(q).__name__} handoff no error: {op} {oc}", op == [("ok", None)] and oc == [("ok", None)])
    return got

def child_new_queues():
    got = handoff(M.Queue(3))
    check("Queue handoff in order", got == list(range(500)))
    got = handoff(M.SimpleQueue())
    check("SimpleQueue handoff in order", got == list(range(500)))
    got = handoff(M.LifoQueue(2))
    check("LifoQueue handoff complete", sorted(got) == list(range(500)))
    got = handoff(M.PriorityQueue())
    check("PriorityQueue handoff complete", sorted(got) == list(range(500)))
    q = M.Queue()
    for i in range(3):
        q.put(i)
    tj, oj = in_thread(q.join)
    for _ in range(3):
        q.get(timeout=5)
        q.task_done()
    tj.join(5)
    check("join in a child thread returned", oj == [("ok", None)])
    if not STDLIB:
        # a queue caught mid-operation by the fork: CPython's may have its
        # mutex held by a thread that does not exist here (and hangs);
        # tress promises that every object stays usable
        n = busy_q.qsize()
        check(f"busy queue size {n}", 0 <= n <= 2)
        busy_q.put("x", timeout=5)
        check("busy queue put/get", "x" in [busy_q.get(timeout=5) for _ in range(n + 1)])

# CPython's Queue keeps the vanished waiters in its Conditions after fork:
# the first notify goes to a waiter that no longer exists, and a child getter
# only finds the item when its own timeout runs out (queue.get re-checks the
# queue then).  The stdlib reference therefore waits with a short timeout;
# tress must wake the child's getter with the put itself.
GETTER_TIMEOUT = 0.5 if STDLIB else 5.0

def serve_getter(q, name):
    # a child thread blocks in get; the item put afterwards must reach it,
    # not a waiter that vanished with the parent's thread
    out = []
    def child_getter():
        return q.get(True, GETTER_TIMEOUT)
    def body():
        try:
            out.append(child_getter())
        except BaseException as exc:
            out.append(repr(exc))
        out.append(time.monotonic())
    t = threading.Thread(target=body)
    t.start()
    deadline = time.monotonic() + 5
    while not at_call(t, child_getter) and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.02)  # not needed for correctness: lets it park
    t_put = time.monotonic()
    q.put(name + "-child")
    t.join(8)
    check(f"{name}: the child's getter got the item: {out}", out[:1] == [name + "-child"])
    if not STDLIB:
        woke = out[1] - t_put
        check(f"{name}: the child's getter was woken by the put, not by its timeout "
              f"({woke:.3f} s after the put)", woke < GETTER_TIMEOUT / 2)
    check(f"{name}: empty afterwards", q.qsize() == 0)
    q.put(1)
    check(f"{name}: put then get in one thread", q.get(timeout=5) == 1)

def child_inherited_queues():
    serve_getter(q_get, "get")
    serve_getter(q_lifo, "lifo")
    serve_getter(q_simple, "simple")
    # the full queue: exactly the parent's two items, not the vanished putter's
    check("full queue holds two", q_put.qsize() == 2 and q_put.full())
    a = q_put.get_nowait()
    b = q_put.get_nowait()
    check(f"full queue items {a}, {b}", (a, b) == (3, 5))
    try:
        q_put.get_nowait()
        check("the vanished putter's item appeared", False)
    except Exception as exc:
        check(f"empty after the parent's items: {exc!r}", type(exc).__name__ == "Empty")
    t, out = in_thread(q_put.put, 7, True, 5)
    t.join(8)
    check("put in a child thread", out == [("ok", None)] and q_put.get(timeout=5) == 7)
    # join: the parent's unfinished task is still counted
    tj, oj = in_thread(q_join.join)
    tj.join(0.05)
    check("join waits for the parent's unfinished task", tj.is_alive() and oj == [])
    q_join.task_done()
    tj.join(8)
    check("join in the child returned", oj == [("ok", None)])
    try:
        q_join.task_done()
        check("task_done too many times accepted", False)
    except ValueError:
        pass

codes = []
for i in range(FORKS):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # not faulthandler: its watchdog thread does not survive fork()
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(CHILD_DEADLINE)
            if SCENARIO == "new":
                child_new_queues()
            else:
                child_inherited_queues()
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_DEADLINE + 5
    status = None
    while True:
        wpid, st = os.waitpid(pid, os.WNOHANG)
        if wpid:
            status = st
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    codes.append(None if status is None else os.waitstatus_to_exitcode(status))

# the parent's queues still work: serve every blocked thread
stop.set()
q_get.put("g")
q_lifo.put("l")
q_simple.put("s")
first = q_put.get(timeout=10)
q_join.task_done()
for t in threads:
    t.join(10)
left_put = sorted([q_put.get_nowait(), q_put.get_nowait()])
print(json.dumps({
    "exit_codes": codes,
    "parent_threads_alive": [t.name for t in threads if t.is_alive()],
    "results": results,
    "put_queue": [first] + left_put,
    "busy_left": busy_q.qsize(),
}))
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.parametrize("scenario", ["new", "inherited"])
def test_fork_while_threads_block(qmodname, run_python, scenario):
    forks = 3
    proc = run_python(CHILD, qmodname, scenario, str(forks), timeout=90)
    assert proc.returncode == 0, f"parent exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["exit_codes"] == [0] * forks, (
        f"child exit codes {res['exit_codes']} (None: hung, killed by the parent; "
        f"-14: hung, killed by its SIGALRM deadline)\n"
        f"stderr:\n{proc.stderr}"
    )
    assert res["parent_threads_alive"] == [], res
    assert res["results"] == {"get": "g", "lifo": "l", "simple": "s", "put": None, "join": None}, (
        res
    )
    assert res["put_queue"] == [3, 1, 5], res


@pytest.mark.parametrize("kind", ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"])
def test_queue_still_works_in_parent_after_fork(qmod, kind, join_all):
    q = getattr(qmod, kind)()
    q.put(1)
    q.put(2)
    pid = os.fork()
    if pid == 0:  # child of the pytest process: do one thing, leave at once
        try:
            ok = sorted([q.get(timeout=5), q.get(timeout=5)]) == [1, 2] and q.qsize() == 0
            q.put(3)
            ok = ok and q.get(timeout=5) == 3
        except BaseException:  # noqa: BLE001 - the child reports by exit code
            ok = False
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung using the inherited queue")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    assert q.qsize() == 2  # the child's gets were on its own copy
    got = []

    def getter():
        for _ in range(3):
            got.append(q.get(timeout=10))

    t = threading.Thread(target=getter)
    t.start()
    q.put(9)
    join_all([t])
    assert sorted(got) == [1, 2, 9]
