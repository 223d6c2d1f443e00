"""CPython's ``test.test_concurrent_futures`` process-pool classes bound to
tress.futures.ProcessPoolExecutor.

The test file and how it is fetched, verified and imported are those of
``test_concurrent_futures_conformance.py`` (the thread-pool classes and
``FutureTests``): ``cpython_suite.py`` fetches CPython 3.11's
``Lib/test/test_concurrent_futures.py`` from Debian's
``libpython3.11-testsuite`` into a cache outside the repository and imports
it once per process; both modules bind that one copy.  No test code is
copied here.

What is bound
-------------
CPython 3.11 binds each executor test mixin to its process pool once per
start method, with ``create_executor_tests(mixin, executor_mixins=(...,
ProcessPoolForkMixin, ProcessPoolForkserverMixin, ProcessPoolSpawnMixin))``;
each ``ProcessPool*Mixin`` sets ``executor_type = futures.ProcessPoolExecutor``
and ``ctx`` (the start method: the executor is made with ``mp_context=
multiprocessing.get_context(ctx)``).  This module binds *every* class of the
file that has one of the three mixins in its bases -- the harness test below
checks that none is left out, and that every executor test class of the file
is bound by one of the two modules -- with ``executor_type`` set to the
target's ``ProcessPoolExecutor``.  For each start method ``X`` in ``Fork``,
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

How the classes reach the target's executor
-------------------------------------------
As for the thread-pool classes (``cpython_suite.bind_test_concurrent_futures``
does it once for both modules, in the private copy of the file only):

1. ``self.executor_type``: set on each bound class, as the mixins do.
2. ``futures.ProcessPoolExecutor(...)`` written out (``ProcessPoolShutdownTest.
   test_context_manager_shutdown``, ``test_del_shutdown``,
   ``test_shutdown_no_wait``; and ``ThreadPoolExecutorTest.
   test_hang_global_shutdown_lock`` of the other module): the file's global
   ``futures`` is a view of ``concurrent.futures`` whose ``ThreadPoolExecutor``
   and ``ProcessPoolExecutor`` are the target's.  ``test_hang_gh83386``
   compares ``self.executor_type == futures.ProcessPoolExecutor`` to skip
   itself for process pools, as in CPython ("Hangs, see gh-83386").
3. The child interpreters of ``test_interpreter_shutdown`` and
   ``test_submit_after_interpreter_shutdown`` do ``from concurrent.futures
   import ProcessPoolExecutor``: that line reads ``from <target> import
   ProcessPoolExecutor`` (``cpython_suite.child_code``).

Worker processes unpickle the file's functions (``mul``, ``init_fail``,
``_crash``, ``ExitAtUnpickle``...) by reference: the file is imported from
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
import subprocess
import sys
import unittest

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

# (the file's class that defines the test, test name) -> reason; applied to
# every bound class that inherits it (all three start methods).
DIVERGENT = {
    ("ProcessPoolExecutorTest", "test_killed_child"): (
        "after a worker is terminated, expects every later submit() to raise "
        "BrokenProcessPool (the stdlib breaks the whole pool). tress fails only the dead "
        "worker's task, with WorkerDied (a BrokenProcessPool subclass: the test's first "
        "assertion holds), replaces the worker and accepts new tasks"
    ),
}
BUGS = {}  # the same, for tress bugs: expected to fail


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
    for (owner, name), reason in DIVERGENT.items():
        if issubclass(cls, getattr(tcf, owner)):
            setattr(cls, name, _divergence(getattr(cls, name), reason))
    for (owner, name), reason in BUGS.items():
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


# --- CPython's own bindings (Lib/test/test_concurrent_futures.py) -------------

# The file's seven classes of each start method, ProcessPool<method><suffix>
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
    """The file's class ``name`` with ``executor_type`` the target's
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


# --- the harness itself -------------------------------------------------------


def _file_test_classes():
    return {
        name: obj
        for name, obj in vars(tcf).items()
        if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
    }


def test_binding_targets_the_module_under_test():
    # A misbinding would silently test something else.
    classes = _file_test_classes()
    process_classes = {
        name for name, cls in classes.items() if issubclass(cls, PROCESS_MIXINS)
    }
    assert process_classes == {cls.__name__ for cls in BOUND_PROCESS_CLASSES}, (
        "CPython's file has process-pool test classes this module does not bind "
        f"(or the reverse): {sorted(process_classes)}"
    )
    assert len(process_classes) == 21, sorted(process_classes)  # 7 mixins x 3 start methods
    # Every executor test class of the file is bound here or by
    # test_concurrent_futures_conformance.py (ThreadPoolMixin); FutureTests
    # and BaseTestCase are executor-independent.
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
    }
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
    for kind, table in (("divergence", DIVERGENT), ("bug", {} if STDLIB_TARGET else BUGS)):
        for owner, name in table:
            assert name in vars(getattr(tcf, owner)), (owner, name)
            for cls in BOUND_PROCESS_CLASSES:
                if issubclass(cls, getattr(tcf, owner)):
                    expected[(cls.__name__, name)] = kind
    assert marked == expected
    assert not set(DIVERGENT) & set(BUGS)


def test_workers_import_the_file_by_name():
    # spawn and forkserver workers unpickle the file's functions by reference.
    assert tcf.__name__ == cpython_suite.MODULE_NAME
    assert str(BINDING.path.parent) in sys.path
    assert pickle.loads(pickle.dumps(tcf.mul)) is tcf.mul
    code = (
        "import pickle, sys; sys.path[:] = pickle.loads(bytes.fromhex(sys.argv[1])); "
        "import cpython311_test_concurrent_futures as m; print(m.mul(6, 7))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, pickle.dumps(sys.path).hex()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "42"
    ctx = multiprocessing.get_context("spawn")
    with target.ProcessPoolExecutor(1, mp_context=ctx) as executor:
        assert executor.submit(tcf.mul, 6, 7).result(timeout=60) == 42
