"""CPython's ``test.test_concurrent_futures`` bound to tress.futures.

The suite is the interpreter's own ``test.test_concurrent_futures`` package
when it ships one (CPython 3.13; 3.11.6+ and 3.12 builds that have it),
imported by its real names; else, on CPython 3.11, 3.11's single
``Lib/test/test_concurrent_futures.py`` as Debian's
``libpython3.11-testsuite`` carries it, which ``cpython_suite.py`` fetches
at test time with ``apt-get download`` into a cache outside the
repository, verifies and imports as ``cpython311_test_concurrent_futures``.
``cpython_suite.load_test_concurrent_futures`` returns either as one
namespace, ``tcf`` (a ``SuiteView``: a name is the global of the first
module of the suite that has it -- the file, or the package's ``util``,
``executor``, then its ``test_*``).  The module skips, with the reason, when
neither can be had (a 3.12 without the package).  No test code is copied
here.

What is bound
-------------
CPython binds every executor test class to each executor type through
``create_executor_tests(mixin, executor_mixins=(ThreadPoolMixin,
ProcessPoolForkMixin, ...))`` (3.13: ``create_executor_tests(globals(),
mixin, ...)`` in each submodule) or by hand (``class ThreadPoolWaitTests(
ThreadPoolMixin, WaitTests, BaseTestCase)``); ``ThreadPoolMixin`` sets
``executor_type = futures.ThreadPoolExecutor``.  This module binds *every*
class of the suite that has ``ThreadPoolMixin`` in its bases -- the harness
test below checks that none is left out -- with ``executor_type`` set to the
target's ``ThreadPoolExecutor``.  The class names are the same in 3.11's
file and 3.13's package (3.13's classes live in ``test_init``,
``test_shutdown``, ``test_wait``, ``test_as_completed``,
``test_thread_pool``; ``FutureTests`` in ``test_future``):

* ``ThreadPoolInitializerTest``, ``ThreadPoolFailingInitializerTest``
  (``create_executor_tests(InitializerMixin)`` / ``(FailingInitializerMixin)``),
* ``ThreadPoolShutdownTest`` (``ExecutorShutdownTest`` + the thread-only
  shutdown tests),
* ``ThreadPoolWaitTests`` (``WaitTests`` + ``test_pending_calls_race``),
* ``ThreadPoolAsCompletedTest`` (``create_executor_tests(AsCompletedTests)``),
* ``ThreadPoolExecutorTest`` (``ExecutorTest`` + the thread-only tests),

and ``FutureTests``, which CPython runs once, executor-independent, on
``concurrent.futures.Future`` -- the class its executors return.  Here it
runs on the class of the futures the target's executor returns (for the
stdlib that is the same class, so the binding is CPython's own).

The process-pool classes (``ProcessPool{Fork,Forkserver,Spawn}*Test``) are
bound to the target's ``ProcessPoolExecutor`` by
``test_concurrent_futures_process_conformance.py``.  Both modules bind the
one imported suite; what they share (importing the target and the suite,
the ``futures`` view, the child interpreters' prelude) is
``cpython_suite.bind_test_concurrent_futures``, done once per process.

How the thread classes reach the target's executor
--------------------------------------------------
The suite names the executor in two ways, and each is rebound in *the
suite's modules only* (``concurrent.futures`` itself is never patched); in
the package, in *every* submodule that has the global, since each does
``from concurrent import futures`` itself and its tests read their own
module's globals (``cpython_suite.rebind``):

1. ``self.executor_type`` (the ``setUp`` executor and most tests): set on
   each bound class, as ``ThreadPoolMixin`` does.
2. ``futures.ThreadPoolExecutor(...)`` written out in six tests
   (``ThreadPoolShutdownTest.test_context_manager_shutdown``,
   ``test_del_shutdown``, ``test_shutdown_no_wait``,
   ``test_thread_names_assigned``, ``test_thread_names_default`` and
   ``ThreadPoolExecutorTest.test_hang_global_shutdown_lock``): the global
   ``futures`` becomes a view of ``concurrent.futures`` whose only
   differences are ``ThreadPoolExecutor`` and ``ProcessPoolExecutor`` (the
   process-pool classes need it; here it makes the 50 fork pools that
   ``test_hang_global_shutdown_lock`` starts while a thread pool runs the
   target's too).

Everything else stays what a tress user has: ``futures.wait``,
``futures.as_completed``, ``futures.TimeoutError``/``CancelledError``/
``InvalidStateError``, ``FIRST_COMPLETED``... are the stdlib's, and the
ready-made futures the wait/as_completed tests mix with the executor's (``CANCELLED_FUTURE``, ``SUCCESSFUL_FUTURE``, ...) stay
stdlib ``Future`` objects: tress's futures must be ``concurrent.futures.
Future`` instances that work with the stdlib's functions, stdlib futures
alongside.

``FutureTests`` builds its futures with ``Future()`` and ``create_future()``
and reads the module's ready-made futures; for each of its tests the
globals ``Future`` and ``PENDING_FUTURE`` ... ``SUCCESSFUL_FUTURE`` are
swapped (``cpython_suite.rebind``, undone after the test), in every module
of the suite that has them (3.13: ``util``, whose ``create_future`` reads
``Future``, ``test_future``, ``test_wait``, ``test_as_completed``), for
futures of the target executor's class in the same states.  ``create_future`` sets the
state through the private ``_state``/``_result``/``_exception`` attributes
and ``test_cancel``/``test_exception_with_success`` read ``_state`` and
``_condition``, as CPython's tests do; a future class that keeps its state
natively would record those as divergences.

For ``FutureTests`` the root logger's handlers (pytest's log capture) are
taken off during each test, as regrtest runs with logging unconfigured: two
of its tests read the "exception calling callback" log record from stderr,
where ``logging.lastResort`` writes it only when no handler is configured.

Four shutdown tests run a child interpreter (``assert_python_ok('-c',
code)``, isolated mode) whose code does ``from concurrent.futures import
ThreadPoolExecutor`` and ``from test.test_concurrent_futures import
sleep_and_print`` (3.13: ``from test.test_concurrent_futures.test_shutdown
import sleep_and_print``).  The suite's ``assert_python_ok`` is wrapped
(``cpython_suite.child_code``) so that, for a target other than
``concurrent.futures``, this one import line reads ``from <target> import
ThreadPoolExecutor`` (checked to occur exactly once).  With the
interpreter's package the child imports the real
``test.test_concurrent_futures``; with 3.11's fetched file the child's code
starts with a prelude in which ``test.test_concurrent_futures`` is an alias
of that file (imported on first use from the directory ``cpython_suite``
puts it in, which the prelude puts on the child's ``sys.path``: what
installing the file would do).  If the directory the parent imported the target's
top-level package from is not on the child's ``sys.path`` (a source tree on
``PYTHONPATH``, which isolated mode ignores), the prelude puts it first, so
that the child runs the same build as the parent.

Divergences (each skipped test, with its reason) are listed in
``tests/conformance/DIVERGENCES.md``.

``TRESS_FUTURES_CONFORMANCE_TARGET=concurrent.futures`` binds the very same
classes to the stdlib, to tell a harness problem from a tress bug; the
default target is ``tress.futures``.
"""

import concurrent.futures
import functools
import inspect
import logging
import sys
import unittest

import cpython_suite

BINDING = cpython_suite.bind_or_skip()

TARGET = BINDING.target_name
target = BINDING.target
tcf = BINDING.tcf
STDLIB_TARGET = BINDING.stdlib
futures_view = BINDING.futures_view
assert_python_ok = BINDING.assert_python_ok
CHILD_PRELUDE = BINDING.prelude
child_code = BINDING.child_code
CHILD_IMPORT = "from concurrent.futures import ThreadPoolExecutor"


# --- CPython's own bindings (Lib/test/test_concurrent_futures[.py|/]) --------


class ThreadPoolInitializerTest(tcf.ThreadPoolInitializerTest):
    executor_type = target.ThreadPoolExecutor


class ThreadPoolFailingInitializerTest(tcf.ThreadPoolFailingInitializerTest):
    executor_type = target.ThreadPoolExecutor


class ThreadPoolShutdownTest(tcf.ThreadPoolShutdownTest):
    executor_type = target.ThreadPoolExecutor


class ThreadPoolWaitTests(tcf.ThreadPoolWaitTests):
    executor_type = target.ThreadPoolExecutor


class ThreadPoolAsCompletedTest(tcf.ThreadPoolAsCompletedTest):
    executor_type = target.ThreadPoolExecutor


class ThreadPoolExecutorTest(tcf.ThreadPoolExecutorTest):
    executor_type = target.ThreadPoolExecutor


BOUND_EXECUTOR_CLASSES = (
    ThreadPoolInitializerTest,
    ThreadPoolFailingInitializerTest,
    ThreadPoolShutdownTest,
    ThreadPoolWaitTests,
    ThreadPoolAsCompletedTest,
    ThreadPoolExecutorTest,
)

# The module's ready-made futures, rebuilt in the target's class for FutureTests.
READY_MADE_FUTURES = (
    "PENDING_FUTURE",
    "RUNNING_FUTURE",
    "CANCELLED_FUTURE",
    "CANCELLED_AND_NOTIFIED_FUTURE",
    "EXCEPTION_FUTURE",
    "SUCCESSFUL_FUTURE",
)


@functools.cache
def target_future_type():
    """The class of the futures the target's executor returns."""
    executor = target.ThreadPoolExecutor(max_workers=1)
    try:
        future = executor.submit(int)
        future.result(timeout=60)
    finally:
        executor.shutdown(wait=True)
    return type(future)


class FutureTests(tcf.FutureTests):
    """CPython's FutureTests on the class of the target executor's futures."""

    def setUp(self):
        # regrtest leaves logging unconfigured, so the "exception calling
        # callback" record reaches sys.stderr through logging.lastResort;
        # test_done_callback_raises(_already_succeeded) read it there with
        # support.captured_stderr().  pytest's logging plugin puts capture
        # handlers on the root logger during the test (setUp runs inside
        # that phase); take them off for the test, as under regrtest.
        root = logging.getLogger()
        saved_handlers = root.handlers[:]
        root.handlers.clear()
        self.addCleanup(root.handlers.extend, saved_handlers)
        # In every module of the suite that has them (the package's util,
        # which create_future reads, and test_future, which FutureTests reads).
        self.addCleanup(cpython_suite.rebind(tcf, "Future", target_future_type()))
        for name in READY_MADE_FUTURES:
            ref = getattr(tcf, name)  # the stdlib future built at import
            future = tcf.create_future(
                state=ref._state, exception=ref._exception, result=ref._result
            )
            self.addCleanup(cpython_suite.rebind(tcf, name, future))
        super().setUp()


# --- the harness itself -------------------------------------------------------


def test_binding_targets_the_module_under_test():
    # A misbinding would silently test something else.
    thread_classes = {
        name for name, cls in tcf.test_classes().items() if issubclass(cls, tcf.ThreadPoolMixin)
    }
    assert thread_classes == {cls.__name__ for cls in BOUND_EXECUTOR_CLASSES}, (
        "CPython's suite has thread-pool test classes this module does not bind "
        f"(or the reverse): {sorted(thread_classes)}"
    )
    for cls in BOUND_EXECUTOR_CLASSES:
        assert cls.executor_type is target.ThreadPoolExecutor, cls
        assert issubclass(cls, getattr(tcf, cls.__name__)), cls
    assert issubclass(FutureTests, tcf.FutureTests)

    # The suite's modules: 3.11's file, or the package's (each imports
    # `futures` itself; the tests read their own module's globals).
    if tcf.layout == "file":
        assert [m.__name__ for m in tcf.modules] == [cpython_suite.MODULE_NAME]
    else:
        assert tcf.__name__ == "test.test_concurrent_futures"
        names = {m.__name__.rpartition(".")[2] for m in tcf.modules}
        assert {"util", "executor", "test_shutdown", "test_thread_pool", "test_future"} <= names
        for cls in (*BOUND_EXECUTOR_CLASSES, FutureTests):
            assert getattr(tcf, cls.__name__).__module__.startswith(tcf.__name__ + "."), cls
    for cls in BOUND_EXECUTOR_CLASSES:
        # Every module a bound class's tests run in has the rebound globals.
        module = sys.modules[getattr(tcf, cls.__name__).__module__]
        assert module in tcf.modules, cls
        assert vars(module).get("futures", futures_view) is futures_view, module
    assert tcf.modules_with("futures"), "the suite has no global `futures`"
    for module in tcf.modules_with("futures"):
        assert vars(module)["futures"] is futures_view, module
    for module in tcf.modules_with("assert_python_ok"):
        assert vars(module)["assert_python_ok"] is assert_python_ok, module
    assert tcf.futures is futures_view
    assert tcf.futures.ThreadPoolExecutor is target.ThreadPoolExecutor
    # test_hang_global_shutdown_lock forks with futures.ProcessPoolExecutor.
    assert tcf.futures.ProcessPoolExecutor is target.ProcessPoolExecutor
    for name in (
        "wait",
        "as_completed",
        "Future",
        "TimeoutError",
        "CancelledError",
        "InvalidStateError",
        "FIRST_COMPLETED",
        "FIRST_EXCEPTION",
        "ALL_COMPLETED",
    ):
        assert getattr(tcf.futures, name) is getattr(concurrent.futures, name), name
    for name in (*READY_MADE_FUTURES, "Future"):
        assert tcf.modules_with(name), name
        for module in tcf.modules_with(name):
            ref = vars(module)[name]
            assert (ref if name == "Future" else type(ref)) is concurrent.futures.Future, name

    future_type = target_future_type()
    assert issubclass(future_type, concurrent.futures.Future), future_type
    if STDLIB_TARGET:
        assert future_type is concurrent.futures.Future

    assert tcf.assert_python_ok is assert_python_ok
    # Every bound test that starts a child imports the executor as rewritten.
    child_tests = {}
    for cls in BOUND_EXECUTOR_CLASSES:
        for name in unittest.defaultTestLoader.getTestCaseNames(cls):
            source = inspect.getsource(getattr(cls, name))
            if "assert_python_ok" in source:
                child_tests[name] = source
    assert set(child_tests) == {
        "test_interpreter_shutdown",
        "test_submit_after_interpreter_shutdown",
        "test_hang_gh83386",
        "test_cancel_futures_wait_false",
    }, sorted(child_tests)
    for name, source in child_tests.items():
        assert (
            CHILD_IMPORT in source or "from concurrent.futures import {executor_type}" in source
        ), f"the child code of {name} has changed: {source}"
    rewritten = child_code("if True:\n    from concurrent.futures import ThreadPoolExecutor\n")
    assert rewritten.startswith(CHILD_PRELUDE)
    assert (CHILD_IMPORT in rewritten) == STDLIB_TARGET


def test_future_tests_use_the_target_future_type():
    case = FutureTests("test_done")
    case.setUp()
    try:
        # In the module FutureTests reads, and in the one create_future reads.
        for module in {
            sys.modules[tcf.FutureTests.__module__],
            sys.modules[tcf.create_future.__module__],
        }:
            assert vars(module)["Future"] is target_future_type(), module
            for name in READY_MADE_FUTURES:
                assert type(vars(module)[name]) is target_future_type(), (module, name)
            assert vars(module)["SUCCESSFUL_FUTURE"].result(timeout=0) == 42
        assert type(tcf.create_future()) is target_future_type()
    finally:
        case.tearDown()
        case.doCleanups()
    for module in tcf.modules_with("Future"):
        assert vars(module)["Future"] is concurrent.futures.Future, module
    for module in tcf.modules_with("SUCCESSFUL_FUTURE"):
        assert type(vars(module)["SUCCESSFUL_FUTURE"]) is concurrent.futures.Future, module
