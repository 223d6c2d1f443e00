"""API surface of tress.threading versus the stdlib: argument errors (type and
CPython 3.11 message, checked against the stdlib in the same test), repr
shapes, pickling and copying, context managers, weakrefs, subclassing."""

import copy
import gc
import pickle
import re
import sys
import threading
import warnings
import weakref

import pytest

TIMEOUT_MAX = threading.TIMEOUT_MAX
LOCK_KINDS = ["Lock", "RLock"]
ALL_KINDS = ["Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier"]


def make(mod, kind):
    if kind == "Barrier":
        return mod.Barrier(2)
    return getattr(mod, kind)()


# --------------------------------------------------------------------------
# Lock / RLock argument errors


@pytest.mark.parametrize("kind", LOCK_KINDS)
class TestLockArguments:
    def test_timeout_with_nonblocking(self, mod, kind, check_error):
        msg = "can't specify a timeout for a non-blocking call"
        check_error(mod, lambda m: getattr(m, kind)().acquire(False, 1), ValueError, msg)
        check_error(
            mod, lambda m: getattr(m, kind)().acquire(blocking=False, timeout=0.5), ValueError, msg
        )

    @pytest.mark.parametrize("timeout", [-2, -0.5, -1.5, -100])
    def test_negative_timeout(self, mod, kind, check_error, timeout):
        check_error(
            mod,
            lambda m: getattr(m, kind)().acquire(timeout=timeout),
            ValueError,
            "timeout value must be a non-negative number"  # 3.13's wording
            if sys.version_info >= (3, 13)
            else "timeout value must be positive",
        )

    @pytest.mark.parametrize(
        "timeout", [TIMEOUT_MAX + 1, TIMEOUT_MAX * 2, 1e100, float("inf"), float("-inf")]
    )
    def test_timeout_too_large(self, mod, kind, check_error, timeout):
        # CPython 3.11 converts the timeout with _PyTime_FromSecondsObject
        # first, which overflows before the TIMEOUT_MAX check is reached.
        check_error(
            mod,
            lambda m: getattr(m, kind)().acquire(timeout=timeout),
            OverflowError,
            "timestamp out of range for platform time_t",
        )

    def test_timeout_nan(self, mod, kind, check_error):
        check_error(
            mod,
            lambda m: getattr(m, kind)().acquire(timeout=float("nan")),
            ValueError,
            "Invalid value NaN (not a number)",
        )

    @pytest.mark.parametrize("timeout", ["1", None, [1]])
    def test_timeout_wrong_type(self, mod, kind, check_error, timeout):
        check_error(
            mod, lambda m: getattr(m, kind)().acquire(timeout=timeout), TypeError, type_only=True
        )

    def test_wrong_arity_and_keywords(self, mod, kind, check_error):
        # Argument-parser messages differ between C and PyO3; the type must match.
        check_error(
            mod, lambda m: getattr(m, kind)().acquire(True, 1, 2), TypeError, type_only=True
        )
        check_error(mod, lambda m: getattr(m, kind)().acquire(foo=1), TypeError, type_only=True)
        check_error(mod, lambda m: getattr(m, kind)().release(1), TypeError, type_only=True)

    def test_accepted_timeouts(self, mod, kind):
        lock = getattr(mod, kind)()
        assert lock.acquire(timeout=-1) is True  # -1 means "forever"
        lock.release()
        assert lock.acquire(False, -1) is True  # -1 with blocking=False is allowed
        lock.release()
        assert lock.acquire(True, TIMEOUT_MAX) is True
        lock.release()
        assert lock.acquire(timeout=0) is True
        lock.release()
        assert lock.acquire(True, 5) is True
        lock.release()
        assert lock.acquire(blocking=1) is True  # an int is a fine flag
        lock.release()

    def test_release_unacquired(self, mod, kind, check_error):
        msg = {"Lock": "release unlocked lock", "RLock": "cannot release un-acquired lock"}[kind]
        check_error(mod, lambda m: getattr(m, kind)().release(), RuntimeError, msg)

        def twice(m):
            lock = getattr(m, kind)()
            lock.acquire()
            lock.release()
            lock.release()

        check_error(mod, twice, RuntimeError, msg)


def test_lock_takes_no_arguments(mod, check_error):
    check_error(mod, lambda m: m.Lock(1), TypeError, type_only=True)


def test_rlock_release_save_unacquired(mod, check_error):
    check_error(
        mod, lambda m: m.RLock()._release_save(), RuntimeError, "cannot release un-acquired lock"
    )


def test_rlock_acquire_restore_bad_state(mod, check_error):
    check_error(mod, lambda m: m.RLock()._acquire_restore(1), TypeError, type_only=True)
    check_error(mod, lambda m: m.RLock()._acquire_restore((1,)), TypeError, type_only=True)


# --------------------------------------------------------------------------
# Semaphore / BoundedSemaphore / Condition / Event / Barrier argument errors


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
class TestSemaphoreArguments:
    @pytest.mark.parametrize("value", [-1, -(2**31), -(2**70)])
    def test_negative_initial_value(self, mod, kind, check_error, value):
        check_error(
            mod,
            lambda m: getattr(m, kind)(value),
            ValueError,
            "semaphore initial value must be >= 0",
        )

    def test_timeout_with_nonblocking(self, mod, kind, check_error):
        msg = "can't specify timeout for non-blocking acquire"
        check_error(mod, lambda m: getattr(m, kind)(1).acquire(False, 1), ValueError, msg)
        check_error(
            mod, lambda m: getattr(m, kind)(1).acquire(blocking=False, timeout=0), ValueError, msg
        )

    @pytest.mark.parametrize("n", [0, -1, -(2**70)])
    def test_release_n_must_be_positive(self, mod, kind, check_error, n):
        check_error(
            mod, lambda m: getattr(m, kind)(1).release(n), ValueError, "n must be one or more"
        )

    def test_wrong_types(self, mod, kind, check_error):
        check_error(mod, lambda m: getattr(m, kind)("3"), TypeError, type_only=True)
        check_error(mod, lambda m: getattr(m, kind)(1, 2), TypeError, type_only=True)

    def test_negative_timeout_polls(self, mod, kind):
        sem = getattr(mod, kind)(1)
        assert sem.acquire(timeout=-1) is True  # available: taken regardless
        assert sem.acquire(timeout=-5) is False  # unavailable: no wait, no error
        assert sem.acquire(False) is False
        assert sem.acquire(blocking=False, timeout=None) is False
        sem.release()
        assert sem.acquire(True, 0) is True


def test_bounded_semaphore_released_too_many_times(mod, check_error):
    msg = "Semaphore released too many times"
    check_error(mod, lambda m: m.BoundedSemaphore(1).release(), ValueError, msg)

    def release_two(m):
        sem = m.BoundedSemaphore(2)
        sem.acquire()
        sem.release(2)

    check_error(mod, release_two, ValueError, msg)


def test_bounded_semaphore_failed_release_changes_nothing(mod):
    sem = mod.BoundedSemaphore(2)
    sem.acquire()
    with pytest.raises(ValueError):
        sem.release(2)
    assert sem.acquire(False) is True  # one slot was still free
    assert sem.acquire(False) is False
    sem.release(2)
    with pytest.raises(ValueError):
        sem.release()


def test_semaphore_multi_release(mod):
    sem = mod.Semaphore(0)
    sem.release(3)
    assert [sem.acquire(False) for _ in range(4)] == [True, True, True, False]


class TestConditionArguments:
    def test_wait_unacquired(self, mod, check_error):
        msg = "cannot wait on un-acquired lock"
        check_error(mod, lambda m: m.Condition().wait(), RuntimeError, msg)
        check_error(mod, lambda m: m.Condition().wait(0.01), RuntimeError, msg)
        check_error(mod, lambda m: m.Condition().wait_for(lambda: False, 0.01), RuntimeError, msg)
        check_error(mod, lambda m: m.Condition(m.Lock()).wait(0), RuntimeError, msg)

    def test_notify_unacquired(self, mod, check_error):
        msg = "cannot notify on un-acquired lock"
        check_error(mod, lambda m: m.Condition().notify(), RuntimeError, msg)
        check_error(mod, lambda m: m.Condition().notify(3), RuntimeError, msg)
        check_error(mod, lambda m: m.Condition().notify_all(), RuntimeError, msg)
        check_error(mod, lambda m: m.Condition(m.Lock()).notify(), RuntimeError, msg)

    def test_release_unacquired(self, mod, check_error):
        check_error(
            mod, lambda m: m.Condition().release(), RuntimeError, "cannot release un-acquired lock"
        )
        check_error(
            mod, lambda m: m.Condition(m.Lock()).release(), RuntimeError, "release unlocked lock"
        )
        # a foreign lock's own error passes through unchanged
        check_error(
            mod,
            lambda m: m.Condition(threading.Lock()).release(),
            RuntimeError,
            "release unlocked lock",
        )

    def test_lock_without_acquire(self, mod, check_error):
        check_error(mod, lambda m: m.Condition(1), AttributeError, type_only=True)

    def test_wait_for_true_predicate_needs_no_lock(self, mod):
        # CPython evaluates the predicate first; a true predicate returns
        # without touching the lock.
        assert mod.Condition().wait_for(lambda: 5) == 5

    def test_wait_for_returns_predicate_value(self, mod):
        cond = mod.Condition()
        with cond:
            assert cond.wait_for(lambda: "yes", 0) == "yes"
            assert cond.wait_for(lambda: 0, 0) == 0
            assert cond.wait_for(lambda: [], 0.01) == []

    def test_nonpositive_waits_return_false(self, mod):
        cond = mod.Condition()
        with cond:
            assert cond.wait(0) is False
            assert cond.wait(-1) is False
            cond.notify(0)
            cond.notify(5)  # no waiters: no-op
            cond.notify_all()

    def test_notifyAll_is_deprecated(self, mod):
        cond = mod.Condition()
        with cond, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cond.notifyAll()
        assert [type(w.message) for w in caught] == [DeprecationWarning]
        assert str(caught[0].message) == "notifyAll() is deprecated, use notify_all() instead"


class TestEventArguments:
    def test_no_arguments(self, mod, check_error):
        check_error(mod, lambda m: m.Event(1), TypeError, type_only=True)

    def test_isSet_is_deprecated(self, mod):
        ev = mod.Event()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert ev.isSet() is False
            ev.set()
            assert ev.isSet() is True
        assert [type(w.message) for w in caught] == [DeprecationWarning] * 2
        assert str(caught[0].message) == "isSet() is deprecated, use is_set() instead"

    def test_nonpositive_waits(self, mod):
        ev = mod.Event()
        assert ev.wait(0) is False
        assert ev.wait(-1) is False
        ev.set()
        assert ev.wait(0) is True
        assert ev.wait(-1) is True
        assert ev.wait() is True


class TestBarrierArguments:
    def test_properties(self, mod):
        b = mod.Barrier(3)
        assert b.parties == 3
        assert b.n_waiting == 0
        assert b.broken is False

    def test_parties_read_only(self, mod, check_error):
        def assign(m):
            m.Barrier(2).parties = 3

        check_error(mod, assign, AttributeError, type_only=True)

    def test_broken_error_class(self, mod):
        assert mod.BrokenBarrierError is threading.BrokenBarrierError
        assert issubclass(mod.BrokenBarrierError, RuntimeError)

    def test_wait_on_aborted(self, mod, check_error):
        def aborted(m):
            b = m.Barrier(2)
            b.abort()
            b.wait(1)

        check_error(mod, aborted, threading.BrokenBarrierError)

    def test_single_party(self, mod):
        b = mod.Barrier(1)
        assert b.wait() == 0
        assert b.wait(0) == 0

    def test_action_runs_in_last_thread(self, mod):
        calls = []
        b = mod.Barrier(1, action=lambda: calls.append(threading.get_ident()))
        b.wait()
        assert calls == [threading.get_ident()]


# --------------------------------------------------------------------------
# repr


def _hexaddr():
    return r"0x[0-9a-fA-F]+"


def test_lock_repr(mod):
    lock = mod.Lock()
    name = re.escape(f"{type(lock).__module__}.{type(lock).__name__}")
    assert re.fullmatch(rf"<unlocked {name} object at {_hexaddr()}>", repr(lock)), repr(lock)
    lock.acquire()
    assert re.fullmatch(rf"<locked {name} object at {_hexaddr()}>", repr(lock)), repr(lock)
    assert hex(id(lock)).lower() in repr(lock).lower()


def test_rlock_repr(mod, join_all):
    lock = mod.RLock()
    name = re.escape(f"{type(lock).__module__}.{type(lock).__name__}")
    assert re.fullmatch(rf"<unlocked {name} object owner=0 count=0 at {_hexaddr()}>", repr(lock)), (
        repr(lock)
    )
    lock.acquire()
    lock.acquire()
    me = threading.get_ident()
    assert re.fullmatch(
        rf"<locked {name} object owner={me} count=2 at {_hexaddr()}>", repr(lock)
    ), repr(lock)
    seen = []
    t = threading.Thread(target=lambda: seen.append(repr(lock)))
    t.start()
    join_all([t])
    assert seen == [repr(lock)]  # the owner is reported from any thread
    lock.release()
    lock.release()


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_semaphore_repr(mod, kind):
    sem = getattr(mod, kind)(3)
    bound = "/3" if kind == "BoundedSemaphore" else ""
    pat = rf"<\w+\.{kind} at {_hexaddr()}: value={{}}{re.escape(bound)}>"
    assert re.fullmatch(pat.format(3), repr(sem)), repr(sem)
    sem.acquire()
    assert re.fullmatch(pat.format(2), repr(sem)), repr(sem)
    if kind == "Semaphore":
        sem.release(5)
        assert re.fullmatch(pat.format(7), repr(sem)), repr(sem)
    assert re.match(rf"<{re.escape(type(sem).__module__)}\.", repr(sem))


def test_event_repr(mod):
    ev = mod.Event()
    assert re.fullmatch(rf"<\w+\.Event at {_hexaddr()}: unset>", repr(ev)), repr(ev)
    ev.set()
    assert re.fullmatch(rf"<\w+\.Event at {_hexaddr()}: set>", repr(ev)), repr(ev)
    ev.clear()
    assert repr(ev).endswith(": unset>")


def test_barrier_repr(mod):
    b = mod.Barrier(3)
    assert re.fullmatch(rf"<\w+\.Barrier at {_hexaddr()}: waiters=0/3>", repr(b)), repr(b)
    b.abort()
    assert re.fullmatch(rf"<\w+\.Barrier at {_hexaddr()}: broken>", repr(b)), repr(b)
    b.reset()
    assert repr(b).endswith(": waiters=0/3>")


def test_barrier_repr_counts_waiters(mod, wait_until, join_all):
    b = mod.Barrier(3)
    threads = [threading.Thread(target=b.wait, args=(30,)) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: b.n_waiting == 2, message="two barrier waiters")
        assert repr(b).endswith(": waiters=2/3>"), repr(b)
    finally:
        assert b.wait(30) in (0, 1, 2)
        join_all(threads)
    assert repr(b).endswith(": waiters=0/3>")


def test_condition_repr(mod, wait_until, join_all):
    # CPython: "<Condition(%r, %d)>" % (lock, number of waiters)
    lock = mod.Lock()
    cond = mod.Condition(lock)
    pat = r"<(\w+\.)?Condition\((.*), (\d+)\)>"
    m = re.fullmatch(pat, repr(cond))
    assert m, repr(cond)
    assert m.group(2) == repr(lock)
    assert m.group(3) == "0"
    ready = []

    def waiter():
        with cond:
            ready.append(1)
            cond.wait(30)

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        # a waiter holds the lock from ready.append until wait() releases it
        wait_until(lambda: len(ready) == 2, message="two condition waiters")
        with cond:
            m = re.fullmatch(pat, repr(cond))
            assert m and m.group(3) == "2", repr(cond)
            assert m.group(2) == repr(lock)
            cond.notify_all()
    finally:
        join_all(threads)
    assert re.fullmatch(pat, repr(cond)).group(3) == "0"


# --------------------------------------------------------------------------
# pickling, copying


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_not_picklable(mod, kind):
    obj = make(mod, kind)
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(obj, proto)
    # protocols 0 and 1 go through copyreg; the stdlib Lock then fails with
    # PicklingError (a pickle.PickleError, not a TypeError)
    for proto in (0, 1):
        with pytest.raises((TypeError, pickle.PicklingError)):
            pickle.dumps(obj, proto)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_not_deep_copyable(mod, kind):
    with pytest.raises(TypeError):
        copy.deepcopy(make(mod, kind))


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_lock_not_copyable(mod, kind):
    with pytest.raises(TypeError):
        copy.copy(make(mod, kind))


@pytest.mark.parametrize("kind", ["Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier"])
def test_shallow_copy(mod, kind):
    # The stdlib classes are plain Python objects: copy.copy() makes a new
    # object whose internal Condition is shared.  A native type may refuse
    # (TypeError); what it must not do is return something unusable.
    obj = make(mod, kind)
    try:
        dup = copy.copy(obj)
    except TypeError:
        assert mod is not threading, "stdlib copies these"
        return
    assert type(dup) is type(obj)
    assert dup is not obj
    repr(dup)


# --------------------------------------------------------------------------
# context managers


@pytest.mark.parametrize("kind", ["Lock", "RLock", "Condition"])
def test_context_manager_lock(mod, kind):
    lock = make(mod, kind)
    with lock as entered:
        assert entered is True
        if kind == "Lock":
            assert lock.locked()
            assert lock.acquire(False) is False
        else:
            assert lock._is_owned()
    if kind == "Lock":
        assert not lock.locked()
    else:
        assert not lock._is_owned()
    with pytest.raises(ZeroDivisionError):
        with lock:
            raise ZeroDivisionError
    assert lock.acquire(False) is True
    lock.release()


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_context_manager_semaphore(mod, kind):
    sem = getattr(mod, kind)(2)
    with sem as entered:
        assert entered is True
        with sem:
            assert sem.acquire(False) is False
        assert sem.acquire(False) is True
        sem.release()
    with pytest.raises(KeyError):
        with sem:
            raise KeyError
    assert [sem.acquire(False) for _ in range(3)] == [True, True, False]


def test_exit_does_not_swallow(mod):
    lock = mod.Lock()
    assert lock.__enter__() is True
    assert not lock.__exit__(ValueError, ValueError("x"), None)
    assert not lock.locked()
    rlock = mod.RLock()
    rlock.__enter__()
    assert not rlock.__exit__(None, None, None)
    assert not rlock._is_owned()


# --------------------------------------------------------------------------
# weakrefs, subclassing, identity


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_weakref(mod, kind):
    obj = make(mod, kind)
    ref = weakref.ref(obj)
    assert ref() is obj
    del obj
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier"])
def test_subclassable(mod, kind):
    # The stdlib classes are Python classes: a subclass __init__ that
    # forwards its arguments with super().__init__(...) is the usual pattern.
    base = getattr(mod, kind)
    inner = mod.Lock()
    args = {
        "Semaphore": (2,),
        "BoundedSemaphore": (2,),
        "Barrier": (2,),
        "Condition": (inner,),
        "Event": (),
    }[kind]

    class Sub(base):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.extra = "x"

        def __repr__(self):
            return "Sub:" + super().__repr__()

    obj = Sub(*args)
    assert isinstance(obj, base)
    assert obj.extra == "x"
    assert repr(obj).startswith("Sub:<")
    obj.attr = 1  # instances of subclasses have a __dict__
    if kind in ("Semaphore", "BoundedSemaphore"):
        assert [obj.acquire(False) for _ in range(3)] == [True, True, False]
        obj.release(2)
    elif kind == "Event":
        obj.set()
        assert obj.wait(0)
    elif kind == "Condition":
        with obj:
            assert inner.locked()  # the lock given to __init__ is used
            assert obj.wait(0) is False
    else:
        assert obj.parties == 2


def test_subclass_overrides_are_used(mod):
    calls = []

    class CountingEvent(mod.Event):
        def set(self):
            calls.append("set")
            super().set()

    ev = CountingEvent()
    ev.set()
    assert calls == ["set"] and ev.is_set()

    class Sem(mod.BoundedSemaphore):
        def __init__(self):
            super().__init__(value=3)

    s = Sem()
    assert [s.acquire(False) for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_module_of_types(tress_threading, kind):
    # API contract: the classes live in the "tress" namespace
    obj = make(tress_threading, kind)
    assert type(obj).__module__ == "tress"
    assert type(obj).__name__ == kind


def test_exports(tress_threading):
    for name in ALL_KINDS + ["BrokenBarrierError"]:
        assert hasattr(tress_threading, name), name
    assert tress_threading.BrokenBarrierError is threading.BrokenBarrierError


def test_lock_legacy_aliases(mod):
    lock = mod.Lock()
    assert lock.acquire_lock() is True
    assert lock.locked_lock() is True
    lock.release_lock()
    assert lock.locked_lock() is False
