"""tress.multiprocessing's locks, semaphores, conditions and events share
memory: many live in one memory file (an arena), so a process holds a
descriptor per arena, not per primitive (issue 13, item 8).

* Under a 1,024-descriptor limit, 1,500 Locks, 1,500 Events and 400
  Conditions live at once and work, as with the stdlib (whose semaphores
  hold no descriptor); before the arenas, tress ran out of descriptors.
* Thousands of create/destroy cycles leave the process's descriptors and
  mappings where they were, within a small bound (cells are reused).
* Primitives sent to a spawn or forkserver child reach it in one
  descriptor per arena (the child maps each arena once), keep their state,
  and outlive the parent's handles while the child starts (the pickle
  carries a reference of its own).

The counts run in a child interpreter (``run_python``, bounded), away from
the test process's own descriptors.
"""

import gc
import multiprocessing
import os

import _mp_arena_workers as w
import pytest
from _pool_workers import reap

try:
    import tress.multiprocessing as tmp
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
    pytest.skip(f"tress.multiprocessing is not importable ({type(exc).__name__}: {exc})",
                allow_module_level=True)

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="Linux /proc needed")

MODULES = ["multiprocessing", "tress.multiprocessing"]
GET = 30.0  # seconds

MANY = r"""
import importlib, os, resource, sys, threading
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
limit = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
m = importlib.import_module(sys.argv[1])
locks = [m.Lock() for _ in range(1500)]
events = [m.Event() for _ in range(1500)]
conds = [m.Condition() for _ in range(400)]
for lk in locks:
    assert lk.acquire(timeout=0)
    assert not lk.acquire(False)
for lk in locks:
    lk.release()
for i, e in enumerate(events):
    if i % 3 == 0:
        e.set()
assert [e.wait(0) for e in events] == [i % 3 == 0 for i in range(1500)]
for c in conds:
    with c:
        c.notify_all()
        assert c.wait(0) is False
# a few handed between threads
flags = [False] * 20
def waiter(i):
    with conds[i]:
        assert conds[i].wait_for(lambda: flags[i], timeout=30)
    events[i + 1].set()
ts = [threading.Thread(target=waiter, args=(i,)) for i in range(20)]
for t in ts:
    t.start()
for i in range(20):
    with conds[i]:
        flags[i] = True
        conds[i].notify()
for t in ts:
    t.join(30)
assert all(events[i + 1].is_set() for i in range(20))
print("ok", len(os.listdir("/proc/self/fd")))
"""


@pytest.mark.parametrize("modname", MODULES)
def test_thousands_of_primitives_under_a_descriptor_limit(run_python, modname):
    r = run_python(MANY, modname, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ok"), r.stdout
    if modname.startswith("tress"):
        # 4,600 primitives, about 1,000 to an arena
        assert int(r.stdout.split()[1]) < 40, r.stdout


CHURN = r"""
import gc, importlib, os, sys
m = importlib.import_module(sys.argv[1])

def cycle(n):
    for i in range(n):
        lk, rl, sem, ev, cond = m.Lock(), m.RLock(), m.Semaphore(2), m.Event(), m.Condition()
        with lk, rl, rl:
            pass
        assert sem.acquire(timeout=0) and sem.acquire(timeout=0) and not sem.acquire(False)
        ev.set()
        assert ev.wait(0)
        with cond:
            cond.notify_all()
        del lk, rl, sem, ev, cond
        if i % 500 == 0:
            batch = [m.Lock() for _ in range(1200)]  # past one arena, and back
            del batch
    gc.collect()

def counts():
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    return len(os.listdir("/proc/self/fd")), maps

cycle(600)  # warm up
before = counts()
cycle(5000)
after = counts()
print(before[0], before[1], after[0], after[1])
"""


@pytest.mark.parametrize("modname", MODULES)
def test_churn_leaves_descriptors_and_mappings_unchanged(run_python, modname):
    r = run_python(CHURN, modname, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    fds0, maps0, fds1, maps1 = map(int, r.stdout.split())
    assert fds1 <= fds0 + 2, r.stdout
    assert maps1 <= maps0 + 8, r.stdout


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_primitives_reach_a_child_one_descriptor_per_arena(method, children):
    ctx = tmp.get_context(method)
    locks = [ctx.Lock() for _ in range(300)]
    events = [ctx.Event() for _ in range(300)]
    sems = [ctx.Semaphore(i % 5) for i in range(50)]
    for i, e in enumerate(events):
        if i % 2:
            e.set()
    out = ctx.Queue()
    child = children(ctx, w.use_many, locks, events, sems, out)
    # let go of every handle while the child starts, and allocate: the
    # child's references were counted when the primitives were pickled
    del locks, events, sems
    gc.collect()
    fresh = [ctx.Semaphore(7) for _ in range(3000)]
    got = out.get(timeout=GET)
    reap([child])
    assert got["locks"] is True
    assert got["events"] == [bool(i % 2) for i in range(300)]
    assert got["sems"] == [i % 5 for i in range(50)]
    # one descriptor per arena: the received ones were closed
    assert got["arenas"] == got["distinct"] <= 2, got
    assert all(s.get_value() == 7 for s in fresh)


def test_a_fork_child_dropping_its_copies_leaves_the_parents(children):
    ctx = tmp.get_context("fork")
    box = [ctx.Semaphore(3), ctx.Event()]
    box[1].set()
    out = ctx.Queue()
    child = children(ctx, _drop_and_allocate, box, out)
    assert out.get(timeout=GET) == "done"
    reap([child])
    sem, ev = box
    fresh = [ctx.Semaphore(0) for _ in range(3000)]
    assert sem.get_value() == 2 and ev.is_set()
    assert all(s.get_value() == 0 for s in fresh)


def _drop_and_allocate(box, out):
    """In a fork child: use the inherited primitives, drop this process's
    copies (the box holds the only ones), then allocate over them."""
    assert box[0].acquire(timeout=w.CHILD)
    assert box[1].is_set()
    box.clear()
    gc.collect()
    fresh = [tmp.Semaphore(9) for _ in range(3000)]
    assert all(s.get_value() == 9 for s in fresh)
    out.put("done")


def test_the_stdlib_module_is_untouched():
    assert not isinstance(multiprocessing.Lock(), tmp.Lock)
