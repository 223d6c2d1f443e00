"""tress.multiprocessing's contexts: get_context, the start method, Pool.

* Per start method (fork, spawn, forkserver): ``tmp.get_context(m)`` is a
  subclass of the stdlib's context for ``m`` whose queues, locks, events,
  conditions, barriers and semaphores are tress's classes (not the
  stdlib's) and whose ``Process``, ``Manager``, ``Value``... are the
  stdlib's; its ``Process`` starts with ``m`` (the child says so, and both
  modules agree on the child's global start method); one object of each
  kind made from it works across a child of it (the values delivered are
  asserted); its ``Pool`` (the stdlib's keywords) is a ``tress.pool.Pool``
  of workers started with ``m``; a shared ``Value`` from it (whose lock is
  tress's) counts right across children.
* Across contexts: a queue and an event made from one context reach a
  child of another (fork-made to spawn and forkserver children, spawn- and
  forkserver-made to fork children).
* The stdlib's own pools given a tress context
  (``concurrent.futures.ProcessPoolExecutor(mp_context=)``,
  ``multiprocessing.pool.Pool(context=)``) run (they get the stdlib's
  SimpleQueue, whose pipe ends they read).
* The default context: ``get_context()`` is tress's context of the global
  start method; ``set_start_method`` / ``get_start_method`` / ``get_context``
  give the same results and the same exceptions (type and message) as the
  stdlib's, checked side by side from an unset start method; setting the
  method through either module sets both; ``tmp.Pool`` is the default
  context's bound method and makes a ``tress.pool.Pool``; the default
  ``Process`` is the stdlib's; ``get_all_start_methods`` is the stdlib's;
  the module's names and ``__all__``; contexts pickle as themselves.
  CPython's ``TestStartMethod.test_context``, ``test_set_get`` and
  ``test_get_all`` pass with tress.multiprocessing as their
  ``multiprocessing``.
* The divergence: the stdlib refuses a fork-made queue to a spawn child
  (``RuntimeError``); tress's passes (above).

Every wait is bounded (``get(timeout=)``, ``join(timeout)``, ``bounded``),
and every child is reaped (killed on overrun). Tests that change the global
start method restore it (``fresh_start_method``). Child targets live in
``_mp_context_workers`` (importable by spawned children).
"""

import concurrent.futures
import multiprocessing
import multiprocessing.context
import multiprocessing.pool
import multiprocessing.queues
import multiprocessing.synchronize
import os
import pickle
import time

import _mp_context_workers as w
import pytest
from _pool_workers import reap
from _pool_workers import bounded

try:
    import tress.multiprocessing as tmp
    import tress.pool
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
    pytest.skip(f"tress.multiprocessing is not importable ({type(exc).__name__}: {exc})",
                allow_module_level=True)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="Linux start methods needed")

START_METHODS = ["fork", "spawn", "forkserver"]
GET = 30.0  # seconds: bound on the parent's waits (spawn start-up included)
REAP = 30.0  # seconds: bound on reaping children

TRESS_TYPES = ("Queue", "SimpleQueue", "JoinableQueue", "Lock", "RLock", "Semaphore",
               "BoundedSemaphore", "Event", "Condition", "Barrier")
# what each factory is called with, and the stdlib's class it replaces
FACTORIES = {
    "Queue": ((), multiprocessing.queues.Queue),
    "SimpleQueue": ((), multiprocessing.queues.SimpleQueue),
    "JoinableQueue": ((), multiprocessing.queues.JoinableQueue),
    "Lock": ((), multiprocessing.synchronize.Lock),
    "RLock": ((), multiprocessing.synchronize.RLock),
    "Semaphore": ((2,), multiprocessing.synchronize.Semaphore),
    "BoundedSemaphore": ((2,), multiprocessing.synchronize.BoundedSemaphore),
    "Event": ((), multiprocessing.synchronize.Event),
    "Condition": ((), multiprocessing.synchronize.Condition),
    "Barrier": ((2,), multiprocessing.synchronize.Barrier),
}
STD_CONTEXT_CLASSES = {
    "fork": multiprocessing.context.ForkContext,
    "spawn": multiprocessing.context.SpawnContext,
    "forkserver": multiprocessing.context.ForkServerContext,
}


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(params=START_METHODS)
def method(request):
    return request.param


@pytest.fixture
def ctx(method):
    return tmp.get_context(method)


@pytest.fixture
def fresh_start_method():
    """The global start method unset for the test (as in a new program),
    and restored afterwards."""
    std = multiprocessing.context._default_context
    saved = std._actual_context
    std._actual_context = None
    yield
    std._actual_context = saved


def outcome(call):
    """What ``call()`` did: ('ok', value) -- a context by its class name and
    start method -- or ('raise', type, message)."""
    try:
        value = call()
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return ("raise", type(exc), str(exc))
    if isinstance(value, multiprocessing.context.BaseContext):
        return ("ok", "context", type(value).__name__, value.get_start_method())
    return ("ok", value)


def expect(out, tag):
    got_tag, value = out.get(timeout=GET)
    assert got_tag == tag, f"child reported {got_tag!r}, expected {tag!r}"
    return value


# --------------------------------------------------------------------------
# per start method


def test_context_class_and_factories(ctx, method):
    assert isinstance(ctx, multiprocessing.context.BaseContext)
    assert isinstance(ctx, STD_CONTEXT_CLASSES[method])
    assert type(ctx).__module__ == "tress.multiprocessing"
    assert ctx is tmp.get_context(method)  # one per start method
    assert ctx is not multiprocessing.get_context(method)
    assert ctx.get_start_method() == method
    assert ctx.get_context() is ctx
    for name, (args, std_class) in FACTORIES.items():
        obj = getattr(ctx, name)(*args)
        assert type(obj) is getattr(tmp, name), (name, type(obj))
        if name in ("Queue", "SimpleQueue", "JoinableQueue", "Event"):
            assert not isinstance(obj, std_class), name
        else:  # tress's locks reuse the stdlib's classes' algorithms (subclasses)
            assert type(obj) is not std_class, name
        if hasattr(obj, "close"):
            obj.close()
    q = ctx.Queue(3, capacity=1 << 16)
    assert q.capacity == 1 << 16 and q._maxsize == 3
    # the stdlib's, bound to this start method
    std = multiprocessing.get_context(method)
    assert ctx.Process is std.Process
    for name in ("Manager", "Pipe", "Value", "Array", "RawValue", "RawArray",
                 "set_forkserver_preload", "set_executable", "cpu_count"):
        assert getattr(type(ctx), name) is getattr(multiprocessing.context.BaseContext, name)
    assert ctx.reducer is std.reducer
    assert ctx.current_process is multiprocessing.current_process
    assert ctx.TimeoutError is multiprocessing.TimeoutError
    assert outcome(lambda: ctx.set_start_method("fork")) == outcome(
        lambda: std.set_start_method("fork")
    )


def test_process_starts_with_the_method(ctx, method, children):
    out = ctx.Queue()
    reap([children(ctx, w.report, out)])
    info = out.get(timeout=GET)
    assert info["start_method"] == method
    assert info["process_class"] == type(ctx.Process()).__name__
    assert info["std_global"] == info["tress_global"] == method


def test_primitives_across_a_child(ctx, method, children):
    p = {
        "queue": ctx.Queue(), "joinable": ctx.JoinableQueue(), "simple": ctx.SimpleQueue(),
        "lock": ctx.Lock(), "rlock": ctx.RLock(), "sem": ctx.Semaphore(0),
        "bsem": ctx.BoundedSemaphore(1), "cond": ctx.Condition(), "ready": ctx.Event(),
        "go": ctx.Event(), "barrier": ctx.Barrier(2),
    }
    out = ctx.Queue()
    p["simple"].put("simple item")
    assert p["lock"].acquire(timeout=1)
    child = children(ctx, w.exercise, p, out)

    p["queue"].put({"to": "child", "n": [1, 2]})
    assert expect(out, "queue") == {"to": "child", "n": [1, 2]}
    p["joinable"].put(1)
    p["joinable"].put(2)
    assert [expect(out, "joinable"), expect(out, "joinable")] == [1, 2]
    bounded(p["joinable"].join, timeout=GET)  # both task_done'd by the child
    assert expect(out, "simple") == "simple item"
    assert expect(out, "lock-held") is False  # the parent holds it
    p["lock"].release()
    p["go"].set()
    assert expect(out, "go") is True
    assert expect(out, "lock-free") is True
    assert expect(out, "rlock") is True
    assert p["sem"].acquire(timeout=GET) and p["sem"].acquire(timeout=GET)
    assert not p["sem"].acquire(timeout=0.01)
    assert expect(out, "bsem-acquire") is True
    std_bounded = multiprocessing.get_context(method).BoundedSemaphore(1)
    with pytest.raises(ValueError) as std_error:
        std_bounded.release()
    assert expect(out, "bsem-over") == str(std_error.value)
    assert p["ready"].wait(timeout=GET)
    with p["cond"]:  # the child holds it until it waits
        p["cond"].notify()
    assert expect(out, "cond") is True
    mine = p["barrier"].wait(timeout=GET)
    theirs = expect(out, "barrier")
    assert {mine, theirs} == {0, 1}
    assert expect(out, "done") is None
    reap([child])
    assert p["lock"].acquire(timeout=1)  # the child released it


def test_pool_from_the_context(ctx, method):
    pool = ctx.Pool(processes=2, initializer=w.init_tag, initargs=("tagged",),
                    maxtasksperchild=None)
    try:
        assert type(pool) is tress.pool.Pool
        assert pool._ctx is ctx
        assert pool._engine.start_method == method
        assert pool.map_async(w.square, range(10)).get(timeout=GET) == [x * x for x in range(10)]
        assert pool.apply_async(w.start_method).get(timeout=GET) == method
        assert pool.apply_async(w.tags).get(timeout=GET) == ["tagged"]
    finally:
        pool.terminate()
        bounded(pool.join, timeout=GET)


def test_pool_positional_and_task_timeout():
    ctx = tmp.get_context("fork")
    pool = ctx.Pool(1, None, (), 3, task_timeout=GET)
    try:
        assert pool._maxtasksperchild == 3 and pool._engine.task_timeout == GET
        assert pool.apply_async(w.square, (7,)).get(timeout=GET) == 49
    finally:
        pool.terminate()
        bounded(pool.join, timeout=GET)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_value_from_the_context(method, children):
    ctx = tmp.get_context(method)
    value = ctx.Value("i", 0)
    assert type(value.get_lock()) is tmp.RLock  # the context's RLock
    procs = [children(ctx, w.add_under_lock, value, 200) for _ in range(2)]
    reap(procs)
    assert value.value == 400


# --------------------------------------------------------------------------
# across contexts


@pytest.mark.parametrize("made, used", [("fork", "spawn"), ("spawn", "fork"),
                                        ("fork", "forkserver"), ("forkserver", "fork")])
def test_objects_pass_to_a_child_of_another_context(made, used, children):
    maker, user = tmp.get_context(made), tmp.get_context(used)
    q, out, ev = maker.Queue(), maker.Queue(), maker.Event()
    child = children(user, w.echo, q, out)
    q.put(("made by", made))
    item, q_module, out_module = out.get(timeout=GET)
    assert item == ("made by", made)
    assert q_module == out_module == "tress.multiprocessing"
    reap([child])
    # an event and a lock of the maker's, used by the other's child
    lock = maker.Lock()
    assert lock.acquire(timeout=1)
    child = children(user, w.wait_event, ev, lock, out)
    ev.set()
    assert out.get(timeout=GET) == ("event", True)
    assert out.get(timeout=GET) == ("lock held", False)
    lock.release()
    assert out.get(timeout=GET) == ("lock free", True)
    reap([child])


def test_stdlib_refuses_what_tress_passes(children):
    # The divergence (tests/conformance/DIVERGENCES.md): the stdlib's
    # fork-made queue cannot go to a spawn child; tress's goes (above).
    q = multiprocessing.get_context("fork").Queue()
    p = multiprocessing.get_context("spawn").Process(target=w.echo, args=(q, q))
    with pytest.raises(RuntimeError, match="^A SemLock created in a fork context"):
        p.start()
    q.close()
    q.join_thread()


# --------------------------------------------------------------------------
# the stdlib's pools given a tress context


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_stdlib_pools_take_a_tress_context(method):
    ctx = tmp.get_context(method)
    ex = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
    try:
        assert ex.submit(w.square, 6).result(timeout=GET) == 36
        assert ex.submit(w.start_method).result(timeout=GET) == method
        assert type(ex._result_queue) is multiprocessing.queues.SimpleQueue
    finally:
        bounded(ex.shutdown, timeout=GET)
    pool = multiprocessing.pool.Pool(1, context=ctx)
    try:
        assert pool.apply_async(w.square, (5,)).get(timeout=GET) == 25
        assert pool.apply_async(w.start_method).get(timeout=GET) == method
    finally:
        pool.terminate()
        bounded(pool.join, timeout=GET)
    # what the test itself asks for stays tress's
    assert type(ctx.SimpleQueue()) is tmp.SimpleQueue


# --------------------------------------------------------------------------
# the default context and the global start method


def _start_method_scenario(mod):
    """The outcomes of a sequence of start-method calls on ``mod``
    (multiprocessing or tress.multiprocessing), from an unset method; each
    with what both modules then say the global method is."""
    steps = [
        lambda: mod.get_start_method(allow_none=True),
        lambda: mod.set_start_method("spawn"),
        lambda: mod.set_start_method("fork"),
        lambda: mod.get_start_method(),
        lambda: mod.set_start_method("fork", force=True),
        lambda: mod.get_start_method(),
        lambda: mod.get_context(),
        lambda: mod.set_start_method(None, force=True),
        lambda: mod.get_start_method(allow_none=True),
        lambda: mod.set_start_method("nope"),
        lambda: mod.set_start_method("nope", force=True),
        lambda: mod.set_start_method(3, force=True),
        lambda: mod.get_start_method(allow_none=True),
        lambda: mod.get_context("nope"),
        lambda: mod.get_context(),  # fixes the default method
        lambda: mod.get_start_method(allow_none=True),
        lambda: mod.set_start_method("spawn"),
        lambda: mod.set_start_method(None, force=True),
        lambda: mod.set_start_method(None),  # sets the default method
        lambda: mod.get_start_method(allow_none=True),
        lambda: mod.set_start_method("forkserver", force=True),
        lambda: mod.get_context(),
        lambda: mod.get_context("spawn"),
        lambda: mod.get_context("spawn").set_start_method("fork"),
        lambda: mod.get_context("spawn").get_start_method(allow_none=True),
        lambda: mod.get_context("spawn").get_context("fork"),
        lambda: mod.get_context("spawn").get_context(),
        lambda: mod.get_context("spawn").get_context("nope"),
        lambda: mod.get_all_start_methods(),
        lambda: hasattr(mod.get_context(), "get_all_start_methods"),  # concrete: no
    ]
    results = []
    for step in steps:
        results.append((outcome(step),
                        multiprocessing.get_start_method(allow_none=True),
                        tmp.get_start_method(allow_none=True)))
    return results


def test_start_method_semantics_mirror_the_stdlib(fresh_start_method):
    std = _start_method_scenario(multiprocessing)
    multiprocessing.context._default_context._actual_context = None
    ours = _start_method_scenario(tmp)
    # the same outcomes, contexts named by class and start method (tress's
    # contexts are named as the stdlib's)
    for i, (a, b) in enumerate(zip(std, ours)):
        assert a == b, f"step {i}: stdlib {a} != tress {b}"
    assert len(std) == len(ours)
    # both modules agreed on the global method after every step
    for _, std_global, tress_global in std + ours:
        assert std_global == tress_global
    # and a context from tress's is tress's
    assert all(
        type(tmp.get_context(m)).__module__ == "tress.multiprocessing" for m in START_METHODS
    )


def test_setting_either_module_sets_both(fresh_start_method):
    multiprocessing.set_start_method("spawn")
    assert tmp.get_start_method() == "spawn"
    assert tmp.get_context() is tmp.get_context("spawn")
    with pytest.raises(RuntimeError, match="^context has already been set$"):
        tmp.set_start_method("fork")
    tmp.set_start_method("forkserver", force=True)
    assert multiprocessing.get_start_method() == "forkserver"
    assert multiprocessing.get_context() is multiprocessing.get_context("forkserver")
    assert tmp.get_context() is tmp.get_context("forkserver")
    tmp.set_start_method(None, force=True)
    assert multiprocessing.get_start_method(allow_none=True) is None
    # get_context() fixes the method in both, as the stdlib's does
    default = tmp.get_context()
    assert default.get_start_method() == multiprocessing.get_start_method(allow_none=True)
    assert default is tmp.get_context(default.get_start_method())
    # the stdlib DefaultContext's attribute, read and set through tress's
    tress_default = tmp.get_context.__self__
    tress_default._actual_context = tmp.get_context("spawn")
    assert multiprocessing.context._default_context._actual_context is (
        multiprocessing.get_context("spawn"))
    assert tress_default._actual_context is tmp.get_context("spawn")
    assert tress_default._default_context is tmp.get_context(
        multiprocessing.context._default_context._default_context._name)


def test_default_process_and_default_context(fresh_start_method, children):
    tmp.set_start_method("spawn")
    assert tmp.Process is multiprocessing.Process  # the stdlib's default Process
    out = tmp.Queue()
    reap([children(tmp.get_context.__self__, w.report, out)])
    info = out.get(timeout=GET)
    assert info["std_global"] == info["tress_global"] == "spawn"
    assert info["process_class"] == "Process"


def test_module_pool_is_the_default_contexts(fresh_start_method):
    default = tmp.get_context.__self__
    assert isinstance(default, tmp.DefaultContext)
    assert isinstance(default, multiprocessing.context.DefaultContext)
    assert tmp.Pool.__self__ is default and tmp.Pool.__func__ is tmp.DefaultContext.Pool
    tmp.set_start_method("fork")
    pool = tmp.Pool(1)
    try:
        assert type(pool) is tress.pool.Pool
        assert pool._ctx is tmp.get_context("fork")
        assert pool.apply_async(w.square, (4,)).get(timeout=GET) == 16
    finally:
        pool.terminate()
        bounded(pool.join, timeout=GET)


def test_module_names():
    for name in TRESS_TYPES:
        assert isinstance(getattr(tmp, name), type), name  # classes, as before
        assert getattr(tmp, name).__module__ == "tress.multiprocessing"
    assert set(multiprocessing.__all__) <= set(tmp.__all__)
    assert len(tmp.__all__) == len(set(tmp.__all__))
    for name in tmp.__all__:
        assert hasattr(tmp, name), name
    default = tmp.get_context.__self__
    for name in ("get_context", "set_start_method", "get_start_method",
                 "get_all_start_methods", "Pool", "Manager", "Pipe", "Value", "Array"):
        assert getattr(tmp, name).__self__ is default, name
    for name in ("Process", "current_process", "parent_process", "active_children",
                 "TimeoutError", "ProcessError", "AuthenticationError", "BufferTooShort"):
        assert getattr(tmp, name) is getattr(multiprocessing, name), name
    assert tmp.get_all_start_methods() == multiprocessing.get_all_start_methods()
    namespace = {}
    exec("from tress.multiprocessing import *", namespace)
    assert namespace["Queue"] is tmp.Queue and namespace["Pool"] == tmp.Pool


# CPython's own start-method tests, with tress.multiprocessing as their
# `multiprocessing` (test_mixed_startmethod is the divergence above)
CPYTHON_START_METHOD_TESTS = ("test_context", "test_set_get", "test_get_all")


@pytest.mark.parametrize("name", CPYTHON_START_METHOD_TESTS)
def test_cpython_start_method_tests(name, fresh_start_method):
    import unittest
    import unittest.mock
    from multiprocessing import forkserver

    try:
        from test import _test_multiprocessing as cpython
    except (ImportError, unittest.SkipTest) as exc:
        pytest.skip(f"CPython's test._test_multiprocessing is not importable: {exc}")
    saved_preload = forkserver._forkserver._preload_modules
    was_running = forkserver._forkserver._forkserver_pid is not None
    case = cpython.TestStartMethod(name)
    result = unittest.TestResult()
    try:
        with unittest.mock.patch.object(cpython, "multiprocessing", tmp):
            bounded(case.run, result, timeout=120)
    finally:
        forkserver._forkserver._preload_modules = saved_preload
        if not was_running:  # started by the test with CPython's preloads
            forkserver._forkserver._stop()
    problems = [text for _, text in result.errors + result.failures]
    assert not problems, "\n".join(problems)
    assert result.testsRun == 1 and not result.skipped


def test_unknown_method():
    for get in (tmp.get_context, tmp.get_context("spawn").get_context):
        with pytest.raises(ValueError) as ours:
            get("threads")
        with pytest.raises(ValueError) as std:
            multiprocessing.get_context("threads")
        assert str(ours.value) == str(std.value) == "cannot find context for 'threads'"


def test_contexts_pickle_as_themselves():
    for m in START_METHODS:
        c = tmp.get_context(m)
        assert pickle.loads(pickle.dumps(c)) is c
    default = tmp.get_context.__self__
    assert pickle.loads(pickle.dumps(default)) is default
