"""CPython's ``test.test_concurrent_futures`` process-pool classes bound to
tress.futures.ProcessPoolExecutor.

The suite and where it comes from are those of
``test_concurrent_futures_conformance.py`` (the thread-pool classes and
``FutureTests``): the interpreter's own ``test.test_concurrent_futures``
package when it ships one (CPython 3.13), else, on 3.11, CPython 3.11's
``Lib/test/test_concurrent_futures.py`` that ``cpython_suite.py`` fetches
from Debian's ``libpython3.11-testsuite`` into a cache outside the
repository; imported once per process, both modules bind it (``tcf``, one
namespace over the file or the package's submodules).  No test code is
copied here.

What is bound
-------------
CPython binds each executor test mixin to its process pool once per
start method, with ``create_executor_tests(mixin, executor_mixins=(...,
ProcessPoolForkMixin, ProcessPoolForkserverMixin, ProcessPoolSpawnMixin))``;
each ``ProcessPool*Mixin`` sets ``executor_type = futures.ProcessPoolExecutor``
and ``ctx`` (the start method: the executor is made with ``mp_context=
multiprocessing.get_context(ctx)``).  This module binds *every* class of the
suite that has one of the three mixins in its bases -- the harness test below
checks that none is left out, and that every test class of the suite is
bound by one of the two modules -- with ``executor_type`` set to the
target's ``ProcessPoolExecutor``.  The names are the same in 3.11's file and
3.13's package (where ``create_executor_tests(globals(), ...)`` makes them
in ``test_init``, ``test_shutdown``, ``test_wait``, ``test_as_completed``,
``test_process_pool``, ``test_deadlock``).  For each start method ``X`` in ``Fork``,
``Forkserver``, ``Spawn``:

* ``ProcessPoolXInitializerTest``, ``ProcessPoolXFailingInitializerTest``
  (``create_executor_tests(InitializerMixin)`` / ``(FailingInitializerMixin)``),
* ``ProcessPoolXProcessPoolShutdownTest`` (``ExecutorShutdownTest`` + the
  process-only shutdown tests),
* ``ProcessPoolXWaitTest`` (``WaitTests``),
* ``ProcessPoolXAsCompletedTest`` (``AsCompletedTests``),
* ``ProcessPoolXProcessPoolExecutorTest`` (``ExecutorTest`` + the
  process-only tests: ``test_killed_child``, ``test_map_chunksize``,
  ``test_traceback``, ``max_tasks_per_child``...),
* ``ProcessPoolXExecutorDeadlockTest`` (a task or its result that crashes,
  exits or fails at pickling or unpickling, in the worker or the parent).

3.12+ adds one executor-independent class, ``FailingInitializerResourcesTest``
(``test_init``, gh-104090): its ``test_spawn`` and ``test_forkserver`` run
``ProcessPool{Spawn,Forkserver}FailingInitializerTest('test_initializer')``
themselves, named as globals of ``test_init``, then check that the
resource tracker exits cleanly.  It is bound when the suite has it
(``RUNNER_CLASSES``): during each of its tests those globals of
``test_init`` are the bound classes above.

How the classes reach the target's executor
-------------------------------------------
As for the thread-pool classes (``cpython_suite.bind_test_concurrent_futures``
does it once for both modules, in every module of the suite that has the
global, and in the suite's modules only):

1. ``self.executor_type``: set on each bound class, as the mixins do.
2. ``futures.ProcessPoolExecutor(...)`` written out (``ProcessPoolShutdownTest.
   test_context_manager_shutdown``, ``test_del_shutdown``,
   ``test_shutdown_no_wait``; and ``ThreadPoolExecutorTest.
   test_hang_global_shutdown_lock`` of the other module): the suite's global
   ``futures`` is a view of ``concurrent.futures`` whose ``ThreadPoolExecutor``
   and ``ProcessPoolExecutor`` are the target's.  ``test_hang_gh83386``
   compares ``self.executor_type == futures.ProcessPoolExecutor`` to skip
   itself for process pools, as in CPython ("Hangs, see gh-83386").
3. The child interpreters of ``test_interpreter_shutdown`` and
   ``test_submit_after_interpreter_shutdown`` do ``from concurrent.futures
   import ProcessPoolExecutor``: that line reads ``from <target> import
   ProcessPoolExecutor`` (``cpython_suite.child_code``).

Worker processes unpickle the suite's functions (``mul``, ``init_fail``,
``_crash``, ``ExitAtUnpickle``...) by reference.  The package's are imported
by their real names (``test.test_concurrent_futures.test_init.init_fail``),
which workers and child interpreters import from the interpreter's ``test``
package, as CPython's do.  3.11's fetched file is imported from
``<cache>/importable/cpython311_test_concurrent_futures.py``, a directory on
``sys.path``, which spawn and forkserver workers get from the parent (fork
workers have the module already); in a child interpreter,
``test.test_concurrent_futures`` is an alias of that module, so the child's
own workers import it the same way (``cpython_suite.child_prelude``).

Everything else is what a tress user has: ``futures.wait``,
``as_completed``, ``BrokenProcessPool``, ``futures.process._RemoteTraceback``
are the stdlib's, and the ready-made futures the wait/as_completed tests mix
with the executor's stay stdlib ``Future`` objects.

Divergences and bugs
--------------------
tress's pool differs from the stdlib's on purpose in one way these tests see:
a worker that dies (killed, crashed, exited) fails *its* task with
``tress.futures.WorkerDied`` -- a ``BrokenProcessPool`` subclass -- and is
replaced; the pool goes on (the stdlib breaks the pool: every pending future
fails and ``submit`` raises ``BrokenProcessPool``).  Tests that only check
that the task of the dead worker raises ``BrokenProcessPool`` pass as they
are.  A test that fails because of that difference is skipped with a reason
starting "DIVERGENCE:" (``DIVERGENT``, ``_divergence``) and listed in
``tests/conformance/DIVERGENCES.md``: ``ProcessPoolExecutorTest.
test_killed_child``, under all three start methods.  A test that fails
because tress is wrong would be marked ``unittest.expectedFailure`` (``BUGS``,
with the reason; ``_bug``); none is.  A harness test checks that both
tables reach exactly the tests they name.

Before each test the garbage of the previous ones is collected
(``_collect_garbage_first``: a finalizer left by a failed test must not run
inside pytest's own ``ast.parse``).

``TRESS_FUTURES_CONFORMANCE_TARGET=concurrent.futures`` binds the very same
classes to the stdlib (then nothing is skipped for a divergence or expected
to fail), to tell a harness problem from a tress bug.
"""

import concurrent.futures
import functools
import gc
import inspect
import multiprocessing
import pickle
import re
import subprocess
import sys
import unittest
from unittest import mock

import cpython_suite
import pytest

BINDING = cpython_suite.bind_or_skip()

TARGET = BINDING.target_name
target = BINDING.target
tcf = BINDING.tcf
STDLIB_TARGET = BINDING.stdlib

PROCESS_MIXINS = (
    tcf.ProcessPoolForkMixin,
    tcf.ProcessPoolForkserverMixin,
    tcf.ProcessPoolSpawnMixin,
)


# --- divergences and bugs ------------------------------------------------------

# (the suite's class that defines the test, test name) -> reason; applied to
# every bound class that inherits it (all three start methods).
DIVERGENT = {
    ("ProcessPoolExecutorTest", "test_killed_child"): (
        "after a worker is terminated, expects every later submit() to raise "
        "BrokenProcessPool (the stdlib breaks the whole pool). tress fails only the dead "
        "worker's task, with WorkerDied (a BrokenProcessPool subclass: the test's first "
        "assertion holds), replaces the worker and accepts new tasks"
    ),
    # CPython 3.12+ (gh-109047)
    ("ProcessPoolExecutorTest", "test_python_finalization_error"): (
        "makes the executor's second thread start fail with RuntimeError (\"can't create "
        "new thread at interpreter shutdown\", gh-109047) and expects the pool to break "
        "(BrokenProcessPool). That second thread is the stdlib pool's call-queue feeder; "
        "tress's pool starts one thread, its manager, and has no feeder, so the failure is "
        "never injected: the tasks run, and the test's own map(mul, [(2, 3)] * 10) fails "
        "them with TypeError (mul takes two arguments; under the stdlib the pool breaks "
        "before any runs)"
    ),
}
BUGS = {}  # the same, for tress bugs: expected to fail
# The entries of the tables above for tests that a suite older than the version
# given lacks (3.11's file; the 3.11.6+/3.12 packages may have them): applied
# where the suite has the test, required from that version on.
SINCE = {("ProcessPoolExecutorTest", "test_python_finalization_error"): (3, 13)}


def _listed(table):
    """The entries of ``table`` whose test the running suite has."""
    return {(owner, name): reason for (owner, name), reason in table.items()
            if hasattr(getattr(tcf, owner), name)}


def _divergence(test, reason):
    """``test`` run on the stdlib, skipped with ``reason`` on tress."""

    @functools.wraps(test)
    def wrapper(self, *args, **kwargs):
        if STDLIB_TARGET:
            return test(self, *args, **kwargs)
        self.skipTest(f"DIVERGENCE: {reason} (see tests/conformance/DIVERGENCES.md)")

    wrapper.divergence = reason
    return wrapper


def _bug(test, reason):
    """``test`` expected to fail on tress (a copy: the base's function is left
    alone)."""
    if STDLIB_TARGET:
        return test

    @functools.wraps(test)
    def wrapper(self, *args, **kwargs):
        return test(self, *args, **kwargs)

    wrapper.bug = reason
    return unittest.expectedFailure(wrapper)


def _bind(cls):
    """The class's test methods listed in DIVERGENT/BUGS, wrapped."""
    for (owner, name), reason in _listed(DIVERGENT).items():
        if issubclass(cls, getattr(tcf, owner)):
            setattr(cls, name, _divergence(getattr(cls, name), reason))
    for (owner, name), reason in _listed(BUGS).items():
        if issubclass(cls, getattr(tcf, owner)):
            setattr(cls, name, _bug(getattr(cls, name), reason))
    return cls


# --- garbage of a failed test ----------------------------------------------------


@pytest.fixture(autouse=True)
def _collect_garbage_first():
    """Collect the garbage of the tests before this one at a known point.

    A test that fails can leave objects with finalizers in reference cycles
    (``test_ressources_gced_in_workers``' ``EventfulGCObj``, whose
    ``__del__`` calls a manager that is gone, and whose error report formats
    a traceback).  Collected later by an automatic GC pass inside the
    ``ast.parse`` with which pytest renders the next failure, such a finalizer
    makes CPython 3.11's AST constructor raise ``SystemError: AST constructor
    recursion depth mismatch`` (a bookkeeping bug of 3.11's ``ast``, cf.
    gh-106905), an INTERNALERROR that ends the whole pytest session.  Collected here,
    the finalizer's error is an ordinary unraisable-exception warning."""
    gc.collect()
    yield


# --- CPython's own bindings (Lib/test/test_concurrent_futures[.py|/]) --------

# The suite's seven classes of each start method, ProcessPool<method><suffix>
# (made by create_executor_tests or by hand), each bound here under its own
# name with the target's executor, as create_executor_tests binds them: by
# name, in the module's globals.
START_METHODS = ("Fork", "Forkserver", "Spawn")
CLASS_SUFFIXES = (
    "InitializerTest",
    "FailingInitializerTest",
    "ProcessPoolShutdownTest",
    "WaitTest",
    "AsCompletedTest",
    "ProcessPoolExecutorTest",
    "ExecutorDeadlockTest",
)


def _bound_class(name):
    """The suite's class ``name`` with ``executor_type`` the target's
    ``ProcessPoolExecutor`` (and the tests of DIVERGENT and BUGS wrapped)."""
    namespace = {
        "executor_type": target.ProcessPoolExecutor,
        "__module__": __name__,
        "__qualname__": name,
    }
    return _bind(type(name, (getattr(tcf, name),), namespace))


BOUND_PROCESS_CLASSES = tuple(
    _bound_class(f"ProcessPool{method}{suffix}")
    for method in START_METHODS
    for suffix in CLASS_SUFFIXES
)
globals().update((cls.__name__, cls) for cls in BOUND_PROCESS_CLASSES)  # for pytest

# Executor-independent classes of the suite that run some of the classes above
# themselves, naming them as globals of their module: 3.12+'s
# FailingInitializerResourcesTest (test_init; gh-104090) runs
# ProcessPool{Spawn,Forkserver}FailingInitializerTest('test_initializer') and
# then checks that the resource tracker exits cleanly.  Bound, when the suite
# has them, by swapping those globals for the bound classes during each test.
RUNNER_CLASSES = ("FailingInitializerResourcesTest",)


def _bound_runner(name):
    base = getattr(tcf, name)
    module = sys.modules[base.__module__]
    bound = {cls.__name__: cls for cls in BOUND_PROCESS_CLASSES if cls.__name__ in vars(module)}

    class Runner(base):
        def setUp(self):
            for global_name, cls in bound.items():
                patcher = mock.patch.object(module, global_name, cls)
                patcher.start()
                self.addCleanup(patcher.stop)
            super().setUp()

    Runner.__name__ = Runner.__qualname__ = name
    Runner.__module__ = __name__
    Runner.bound = bound
    return Runner


BOUND_RUNNER_CLASSES = tuple(
    _bound_runner(name) for name in RUNNER_CLASSES if name in tcf.test_classes()
)
globals().update((cls.__name__, cls) for cls in BOUND_RUNNER_CLASSES)  # for pytest


# --- the harness itself -------------------------------------------------------


def test_binding_targets_the_module_under_test():
    # A misbinding would silently test something else.
    classes = tcf.test_classes()
    process_classes = {
        name for name, cls in classes.items() if issubclass(cls, PROCESS_MIXINS)
    }
    assert process_classes == {cls.__name__ for cls in BOUND_PROCESS_CLASSES}, (
        "CPython's suite has process-pool test classes this module does not bind "
        f"(or the reverse): {sorted(process_classes)}"
    )
    assert len(process_classes) == 21, sorted(process_classes)  # 7 mixins x 3 start methods
    # Every executor test class of the suite is bound here or by
    # test_concurrent_futures_conformance.py (ThreadPoolMixin); FutureTests
    # (bound there), the runner classes (bound here) and BaseTestCase are
    # executor-independent.
    unbound = {
        name
        for name, cls in classes.items()
        if issubclass(cls, tcf.ExecutorMixin)
        and not issubclass(cls, (tcf.ThreadPoolMixin, *PROCESS_MIXINS))
    }
    assert not unbound, f"executor test classes bound by neither module: {sorted(unbound)}"
    assert {name for name, cls in classes.items() if not issubclass(cls, tcf.ExecutorMixin)} == {
        "BaseTestCase",
        "FutureTests",
        *(cls.__name__ for cls in BOUND_RUNNER_CLASSES),
    }
    if tcf.layout == "package" and sys.version_info >= (3, 12):
        # gh-104090's test, in 3.12's and 3.13's test_init.
        assert [cls.__name__ for cls in BOUND_RUNNER_CLASSES] == ["FailingInitializerResourcesTest"]
    for runner in BOUND_RUNNER_CLASSES:
        assert issubclass(runner, getattr(tcf, runner.__name__)), runner
        # Every bound class a runner's test names is swapped in for it.
        for name in unittest.defaultTestLoader.getTestCaseNames(runner):
            named = set(re.findall(r"\bProcessPool\w+Test\b", inspect.getsource(getattr(runner, name))))
            assert named, (runner, name)
            assert named <= set(runner.bound), (runner, name, named)
        for name, cls in runner.bound.items():
            assert cls in BOUND_PROCESS_CLASSES and cls.__name__ == name
    for cls in BOUND_PROCESS_CLASSES:
        assert cls.executor_type is target.ProcessPoolExecutor, cls
        assert issubclass(cls, getattr(tcf, cls.__name__)), cls
        assert cls.ctx in ("fork", "forkserver", "spawn"), cls

    assert tcf.futures is BINDING.futures_view
    assert tcf.futures.ProcessPoolExecutor is target.ProcessPoolExecutor
    assert tcf.futures.ThreadPoolExecutor is target.ThreadPoolExecutor
    for name in ("wait", "as_completed", "process", "TimeoutError", "Future"):
        assert getattr(tcf.futures, name) is getattr(concurrent.futures, name), name
    assert tcf.BrokenProcessPool is concurrent.futures.process.BrokenProcessPool
    assert issubclass(target.ProcessPoolExecutor, concurrent.futures.Executor)

    # The child interpreters import the target's process pool.
    assert tcf.assert_python_ok is BINDING.assert_python_ok
    child_tests = set()
    for cls in BOUND_PROCESS_CLASSES:
        for name in unittest.defaultTestLoader.getTestCaseNames(cls):
            source = inspect.getsource(getattr(cls, name))  # unwraps a divergence
            if "assert_python_ok" in source:
                child_tests.add(name)
                assert "from concurrent.futures import {executor_type}" in source, name
    assert child_tests == {
        "test_interpreter_shutdown",
        "test_submit_after_interpreter_shutdown",
        "test_hang_gh83386",  # skips itself for process pools, as in CPython
    }, sorted(child_tests)
    code = "if 1:\n    from concurrent.futures import ProcessPoolExecutor\n"
    rewritten = BINDING.child_code(code)
    assert rewritten.startswith(BINDING.prelude)
    assert ("from concurrent.futures import ProcessPoolExecutor" in rewritten) == STDLIB_TARGET
    assert f"from {TARGET} import ProcessPoolExecutor" in rewritten


def test_divergences_and_bugs_are_listed():
    # Each entry of DIVERGENT and BUGS reaches the test in every bound class
    # that inherits it, and nothing else is marked.  On the stdlib a
    # divergence's wrapper runs the test and a bug is not marked.
    marked = {}
    for cls in BOUND_PROCESS_CLASSES:
        for name in unittest.defaultTestLoader.getTestCaseNames(cls):
            test = getattr(cls, name)
            for kind in ("divergence", "bug"):
                if hasattr(test, kind):
                    marked[(cls.__name__, name)] = kind
    expected = {}
    for key in (*DIVERGENT, *BUGS):
        if sys.version_info >= SINCE.get(key, (3, 11)):
            owner, name = key
            assert name in vars(getattr(tcf, owner)), key  # still in this version's suite
    assert set(SINCE) <= set(DIVERGENT) | set(BUGS)
    for kind, table in (("divergence", DIVERGENT), ("bug", {} if STDLIB_TARGET else BUGS)):
        for owner, name in _listed(table):
            assert name in vars(getattr(tcf, owner)), (owner, name)
            for cls in BOUND_PROCESS_CLASSES:
                if issubclass(cls, getattr(tcf, owner)):
                    expected[(cls.__name__, name)] = kind
    assert marked == expected
    assert not set(DIVERGENT) & set(BUGS)


def test_workers_import_the_suite_by_name():
    # spawn and forkserver workers unpickle the suite's functions by reference:
    # 3.11's file from the directory of its importable copy, on sys.path; the
    # package by its real names, as CPython's workers do.
    if tcf.layout == "file":
        assert tcf.__name__ == cpython_suite.MODULE_NAME
        assert str(BINDING.path.parent) in sys.path
        assert tcf.mul.__module__ == cpython_suite.MODULE_NAME
    else:
        assert tcf.__name__ == "test.test_concurrent_futures"
        assert tcf.mul.__module__ == "test.test_concurrent_futures.executor"
        assert tcf.init_fail.__module__ == "test.test_concurrent_futures.test_init"
        assert tcf._crash.__module__ == "test.test_concurrent_futures.test_deadlock"
    for name in ("mul", "init_fail", "_crash", "ExitAtUnpickle"):
        obj = getattr(tcf, name)
        assert sys.modules[obj.__module__] in tcf.modules, name
        assert pickle.loads(pickle.dumps(obj)) is obj, name
    code = (
        "import importlib, pickle, sys; sys.path[:] = pickle.loads(bytes.fromhex(sys.argv[1])); "
        "m = importlib.import_module(sys.argv[2]); print(m.mul(6, 7))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, pickle.dumps(sys.path).hex(), tcf.mul.__module__],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "42"
    ctx = multiprocessing.get_context("spawn")
    with target.ProcessPoolExecutor(1, mp_context=ctx) as executor:
        assert executor.submit(tcf.mul, 6, 7).result(timeout=60) == 42
