"""Fork safety: os.fork() while other threads hold a Lock/RLock, wait on a
Condition, an Event, a Semaphore and a contended Lock; the child creates and
uses fresh objects of every type (with threads of its own), and can reset
and use the inherited ones.  The child always leaves through os._exit; the
parent reaps it with a deadline and kills it on overrun."""

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
CHILD_DEADLINE = 10                # seconds; SIGALRM (default action) kills a hung child

lock, rlock = M.Lock(), M.RLock()
cond, ev, sem = M.Condition(), M.Event(), M.Semaphore(0)
busy_lock, busy_cond = M.Lock(), M.Condition()
stop = threading.Event()          # stdlib: harness sequencing only
held = threading.Event()
waiting = []                      # names of the threads that are blocked
waiting_lock = threading.Lock()

def mark(name):
    with waiting_lock:
        waiting.append(name)

def holder():
    with lock, rlock:
        held.set()
        stop.wait(60)

def cond_waiter():
    with cond:
        mark("cond")                  # marked while holding the lock
        cond.wait_for(stop.is_set, 60)

def event_waiter():
    mark("event")
    ev.wait(60)

def sem_waiter():
    mark("sem")
    if sem.acquire(timeout=60):
        sem.release()

def lock_waiter():
    mark("lock")
    if lock.acquire(timeout=60):      # contended: parked on a held lock
        lock.release()

def busy():
    # keeps the state of other objects changing while we fork ("new" only:
    # objects caught mid-operation are not inherited in a defined state)
    n = 0
    while not stop.is_set():
        with busy_lock:
            n += 1
        with busy_cond:
            busy_cond.notify()

def in_call(thread, funcname):
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == funcname:
            return True
        frame = frame.f_back
    return False

workers = [cond_waiter, event_waiter, sem_waiter, lock_waiter]
if SCENARIO == "new":
    workers += [busy, busy]
threads = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in [holder] + workers]
threads[0].start()
assert held.wait(10)
for t in threads[1:]:
    t.start()
deadline = time.monotonic() + 10
while len(waiting) < 4:
    assert time.monotonic() < deadline, waiting
    time.sleep(0.005)
# The Condition waiter marked itself while holding the lock, so once we can
# take the lock it is inside wait() with the lock released.
assert cond.acquire(timeout=10)
cond.release()
if M is threading:
    # stdlib reference: Event and Semaphore wait on an internal Condition
    # whose lock is held briefly on the way into wait(); make sure it is
    # parked (registered, internal lock released) before forking.
    for inner in (ev._cond, sem._cond):
        while not inner._waiters:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert inner.acquire(timeout=10)
        inner.release()
for t in threads[1:5]:
    while not in_call(t, t.name):
        assert time.monotonic() < deadline, t.name
        time.sleep(0.005)

def check(name, ok):
    if not ok:
        raise AssertionError(f"child check failed: {name}")

def in_thread(fn, *args):
    out = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    return t, out

def child_new_objects():
    l = M.Lock()
    check("Lock acquire", l.acquire(timeout=5))
    check("Lock locked", l.locked())
    l.release()
    r = M.RLock()
    r.acquire(); r.acquire()
    check("RLock recursion", r._recursion_count() == 2)
    r.release(); r.release()
    check("RLock released", not r._is_owned())
    # Condition notify with a thread in the child
    c, flag = M.Condition(), []
    def waiter():
        with c:
            return bool(c.wait_for(lambda: flag, 10))
    t, out = in_thread(waiter)
    with c:
        flag.append(1)
        c.notify()
    t.join(10)
    check("Condition notify reached the child's thread", out == [True])
    # Event with a thread
    e = M.Event()
    t, out = in_thread(e.wait, 10)
    e.set()
    t.join(10)
    check("Event wait in child thread", out == [True])
    # Semaphore / BoundedSemaphore with a thread
    s = M.Semaphore(0)
    t, out = in_thread(s.acquire, True, 10)
    s.release()
    t.join(10)
    check("Semaphore handoff", out == [True])
    b = M.BoundedSemaphore(2)
    check("BoundedSemaphore", b.acquire(False) and b.acquire(False) and not b.acquire(False))
    b.release(2)
    # Barrier with a thread
    br = M.Barrier(2)
    t, out = in_thread(br.wait, 10)
    idx = br.wait(10)
    t.join(10)
    check("Barrier indices", sorted(out + [idx]) == [0, 1])

def child_inherited_objects():
    # the holder thread does not exist here; _at_fork_reinit is how the
    # stdlib resets such locks
    check("inherited Lock is held", lock.locked())
    lock._at_fork_reinit()
    check("Lock usable after _at_fork_reinit", lock.acquire(timeout=5))
    lock.release()
    check("inherited RLock is not ours", not rlock._is_owned())
    rlock._at_fork_reinit()
    check("RLock usable after _at_fork_reinit", rlock.acquire(timeout=5))
    rlock.release()
    # objects whose waiters vanished with their threads
    ev.set()
    check("inherited Event set", ev.wait(5))
    sem.release()
    check("inherited Semaphore", sem.acquire(timeout=5))
    check("inherited Condition lock free", cond.acquire(timeout=5))
    cond.notify_all()               # waiters from the parent are gone
    cond.release()
    flag = []
    def waiter():
        with cond:
            return bool(cond.wait_for(lambda: flag, 10))
    t, out = in_thread(waiter)
    with cond:
        flag.append(1)
        cond.notify()
    t.join(10)
    check("inherited Condition notifies a child thread", out == [True])

results = []
for i in range(FORKS):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # not faulthandler: its watchdog thread does not survive fork(),
            # and re-arming it in the child waits for that thread forever
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(CHILD_DEADLINE)
            if SCENARIO == "new":
                child_new_objects()
            else:
                child_inherited_objects()
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
    results.append(None if status is None else os.waitstatus_to_exitcode(status))

stop.set()
ev.set()
sem.release()
with cond:
    cond.notify_all()
for t in threads:
    t.join(10)
print(json.dumps({"exit_codes": results,
                  "parent_threads_alive": [t.name for t in threads if t.is_alive()]}))
"""


@pytest.mark.parametrize("scenario", ["new", "inherited"])
def test_fork_while_threads_block(mod, modname, run_python, scenario):
    forks = 4
    proc = run_python(CHILD, modname, scenario, str(forks), timeout=90)
    assert proc.returncode == 0, f"parent exited {proc.returncode}\n{proc.stderr}"
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["exit_codes"] == [0] * forks, (
        f"child exit codes {res['exit_codes']} (None: hung, killed by the parent; "
        f"-14: hung, killed by its SIGALRM deadline)\n"
        f"stderr:\n{proc.stderr}"
    )
    assert res["parent_threads_alive"] == [], res


def test_objects_still_work_in_parent_after_fork(mod, join_all):
    lock, cond = mod.Lock(), mod.Condition()
    pid = os.fork()
    if pid == 0:  # child of the pytest process: do one thing, leave at once
        os._exit(0 if lock.acquire(timeout=5) else 1)
    deadline = time.monotonic() + 30
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung in Lock.acquire")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    assert lock.acquire(False) is True  # the child's acquire was its own copy
    lock.release()
    got = []

    def waiter():
        with cond:
            got.append(cond.wait(10))

    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        with cond:
            cond.notify()
        t.join(0.01)
    join_all([t])
    assert got == [True]
