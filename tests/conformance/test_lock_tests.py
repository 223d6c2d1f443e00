"""CPython's ``test.lock_tests`` bound to tress.threading.

The bindings mirror ``Lib/test/test_threading.py`` (CPython 3.11): the same
base classes from ``test.lock_tests``, the same ``locktype``/``condtype``/...
attributes, the same ``test_recursion_count`` skip for a Condition used as
an RLock.  On top of CPython's own bindings, ``Condition`` is also run over
foreign locks in both directions (a tress Condition over stdlib locks, a
stdlib Condition over tress locks).

Divergences (each skipped test, with its reason) are listed in
``tests/conformance/DIVERGENCES.md``.

``TRESS_CONFORMANCE_TARGET=threading`` binds the very same classes to the
stdlib instead, to tell a harness problem from a tress bug.
"""

import importlib
import os
import threading

import pytest

try:
    from test import lock_tests
except ImportError as exc:  # interpreter built/packaged without its test suite
    pytest.skip(
        f"CPython's test.lock_tests cannot be imported ({exc}): this interpreter "
        "does not ship the `test` package (e.g. Debian's python3-test is missing)",
        allow_module_level=True,
    )

TARGET = os.environ.get("TRESS_CONFORMANCE_TARGET", "tress.threading")
try:
    target = importlib.import_module(TARGET)
except Exception as exc:  # not built yet, or a broken build
    pytest.skip(
        f"{TARGET} is not importable ({type(exc).__name__}: {exc}); build and install "
        "tress with `pip install --no-build-isolation --force-reinstall --no-deps .`",
        allow_module_level=True,
    )

EVENT_AT_FORK_REINIT = (
    "DIVERGENCE: lock_tests.EventTests.test_at_fork_reinit inspects CPython's "
    "internal `Event._cond` (a Condition over a Lock); tress.Event is a native "
    "object with no internal Condition (see tests/conformance/DIVERGENCES.md)"
)
ACQUIRE_NEEDS_RLOCK = (
    "lock_tests.ConditionTests.test_acquire acquires the default lock twice "
    "(it assumes the default RLock); this binding's default lock is a "
    "non-reentrant Lock, so the test would deadlock by design"
)


# --- CPython's own bindings (Lib/test/test_threading.py) ---------------------


class LockTests(lock_tests.LockTests):
    locktype = staticmethod(target.Lock)


class RLockTests(lock_tests.RLockTests):
    locktype = staticmethod(target.RLock)


class EventTests(lock_tests.EventTests):
    eventtype = staticmethod(target.Event)

    def test_at_fork_reinit(self):
        if target is threading:
            return super().test_at_fork_reinit()
        self.skipTest(EVENT_AT_FORK_REINIT)


class ConditionAsRLockTests(lock_tests.RLockTests):
    # Condition uses an RLock by default and exports its API.
    locktype = staticmethod(target.Condition)

    def test_recursion_count(self):
        self.skipTest("Condition does not expose _recursion_count()")


class ConditionTests(lock_tests.ConditionTests):
    condtype = staticmethod(target.Condition)


class SemaphoreTests(lock_tests.SemaphoreTests):
    semtype = staticmethod(target.Semaphore)


class BoundedSemaphoreTests(lock_tests.BoundedSemaphoreTests):
    semtype = staticmethod(target.BoundedSemaphore)


class BarrierTests(lock_tests.BarrierTests):
    barriertype = staticmethod(target.Barrier)


# --- Condition over foreign locks, both directions ----------------------------
# lock_tests calls condtype() and condtype(lock); `lock` defaults below.


def _condition_factory(condition_cls, default_lock):
    def make(lock=None):
        return condition_cls(default_lock() if lock is None else lock)

    return staticmethod(make)


class ConditionOverStdlibRLockTests(lock_tests.ConditionTests):
    """tress Condition(threading.RLock())"""

    condtype = _condition_factory(target.Condition, threading.RLock)


class ConditionOverStdlibLockTests(lock_tests.ConditionTests):
    """tress Condition(threading.Lock())"""

    condtype = _condition_factory(target.Condition, threading.Lock)

    def test_acquire(self):
        self.skipTest(ACQUIRE_NEEDS_RLOCK)


class StdlibConditionOverRLockTests(lock_tests.ConditionTests):
    """threading.Condition(tress.RLock())"""

    condtype = _condition_factory(threading.Condition, target.RLock)


class StdlibConditionOverLockTests(lock_tests.ConditionTests):
    """threading.Condition(tress.Lock())"""

    condtype = _condition_factory(threading.Condition, target.Lock)

    def test_acquire(self):
        self.skipTest(ACQUIRE_NEEDS_RLOCK)


class ConditionOverStdlibRLockAsRLockTests(lock_tests.RLockTests):
    """tress Condition(threading.RLock()) exporting the RLock API"""

    locktype = _condition_factory(target.Condition, threading.RLock)

    def test_recursion_count(self):
        self.skipTest("Condition does not expose _recursion_count()")


class StdlibConditionOverRLockAsRLockTests(lock_tests.RLockTests):
    """threading.Condition(tress.RLock()) exporting the RLock API"""

    locktype = _condition_factory(threading.Condition, target.RLock)

    def test_recursion_count(self):
        self.skipTest("Condition does not expose _recursion_count()")
