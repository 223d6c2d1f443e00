"""CPython's ``test._test_multiprocessing`` bound to tress.multiprocessing.

How CPython binds them
----------------------
``Lib/test/_test_multiprocessing.py`` (CPython 3.11, shipped with this
interpreter) writes its tests as classes without a ``TestCase`` base
(``_TestQueue``, ``_TestLock``, ...) that reach the types under test through
``self``: ``self.Queue()``, ``self.Lock()``, ``self.Process(...)``.
``install_tests_in_module_dict`` combines each with ``ProcessesMixin``
(``Queue = staticmethod(multiprocessing.Queue)``, ...) and ``TestCase`` into
``WithProcessesTestQueue`` and so on, and copies the plain ``TestCase``
classes (``TestSimpleQueue``, ...), once per start method, into the modules
``test_multiprocessing_{fork,spawn,forkserver}``, whose ``setUpModule`` sets
the global start method.  No test code is copied here: the classes are
imported (only the module object is bound, so pytest collects none of
CPython's classes by themselves).

How this module binds them
--------------------------
``TressProcessesMixin`` is ``ProcessesMixin`` (a subclass, so the tests'
``isinstance(self, ProcessesMixin)`` checks hold) whose ``Queue``,
``JoinableQueue``, ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``,
``Condition``, ``Event`` and ``Barrier`` are the target's; everything else
(``Process``, ``Pipe``, ``Value``, ``Array``, ``Pool``, ...) stays the
stdlib's.  A bound class is ``(CPython's class, TressProcessesMixin,
TestCase)``, named as CPython names it plus the start method
(``WithProcessesTestQueue_fork``); a plain ``TestCase`` class is bound as
``TestSimpleQueue_fork``.  Its ``setUpClass`` sets the global start method
(``force=True``, as CPython's ``setUpModule`` does) and ``tearDownClass``
restores it, so one pytest module holds all three start methods.
``setUpModule`` preloads this module, the target and CPython's module in the
forkserver (CPython preloads its own test module); ``tearDownModule`` stops
that forkserver.  BaseMixin's dangling process/thread check (which sets
``test.support.environment_altered``, regrtest's "ENV CHANGED") fails the
class here; pytest-timeout's own ``Timer`` threads are not counted.

What is bound, under fork, spawn and forkserver alike (75-95 s in all on 2
cores: fork ~12 s, spawn ~35-45 s, forkserver ~20-27 s; no subset needed):

* every test of ``_TestQueue``, ``_TestLock``, ``_TestSemaphore``,
  ``_TestCondition``, ``_TestEvent``, ``_TestBarrier`` and ``TestSimpleQueue``;
* of the other classes, exactly the tests that make a queue, a lock, an
  event... themselves (through ``self.`` or ``multiprocessing.``):
  ``_TestProcess`` (12 tests that pass a queue or an event to a child:
  ``test_process``, ``test_close``, ``test_child_fd_inflation``,
  ``test_forkserver_sig*``, ...), ``_TestValue.test_getobj_getlock`` and
  ``_TestArray.test_getobj_getlock_obj`` (a target ``Lock`` as the lock of a
  shared value), ``TestWait.test_wait_integer`` (a ``Semaphore`` released by
  a child) and ``TestStartMethod.test_nested_startmethod`` (a queue that a
  child passes on to a grandchild, gh-108520); the rest of those classes
  tests the stdlib only and is not bound.

``test_every_test_that_makes_a_queue_or_a_lock_is_bound`` scans CPython's
module and fails if such a test is left out (manager-only classes and
module-level helpers are not scanned).

Tests that name the stdlib directly
-----------------------------------
Some bound tests make their subject with ``multiprocessing.Queue()``,
``multiprocessing.SimpleQueue()``, ``multiprocessing.Semaphore()``... instead
of the mixin (``_TestQueue.test_timeout``,
``test_closed_queue_put_get_exceptions``, all of ``TestSimpleQueue``,
``TestWait.test_wait_integer``, ``TestStartMethod.test_nested_startmethod``).
Bound as they are they would test the stdlib.  For these tests only, the
global ``multiprocessing`` of ``test._test_multiprocessing`` is swapped (and
restored after the test) for a view of the package whose only differences
are the target's ``Queue``, ``JoinableQueue``, ``SimpleQueue``, ``Lock``,
...; ``multiprocessing`` itself is not touched, except in
``test_no_import_lock_contention``, which imports ``multiprocessing`` in a
module it writes: there ``multiprocessing.Queue`` is patched on the package
(``unittest.mock.patch.object``, undone after the test).  Helpers keep the
stdlib: ``_DummyList`` (the Barrier tests' shared counter) keeps its
``multiprocessing.Lock``.

Child processes
---------------
Process targets are ``cls._test_*`` classmethods of the bound classes (and
module-level helpers of ``test._test_multiprocessing``).  Under ``spawn`` and
``forkserver`` they are pickled by reference, so the child imports this
module by its ``__name__``: pytest's default ``prepend`` import mode imports
it as ``test_mp_conformance`` with ``tests/conformance`` put first on
``sys.path``, and multiprocessing hands the parent's ``sys.path`` to the
child (``test_bound_targets_pickle_by_reference`` checks the names).

Divergences and bugs
--------------------
A test that fails because of a documented, intentional difference of
tress.multiprocessing (see its module docstring) is skipped with a reason
starting "DIVERGENCE:" and listed in ``tests/conformance/DIVERGENCES.md``:
``_TestQueue.test_queue_feeder_donot_stop_onexc`` and
``test_queue_feeder_on_queue_feeder_error`` (pickling in put's caller, no
feeder thread) and ``TestSimpleQueue.test_closed`` (private pipe ends).
A test that fails because tress is wrong would be marked
``unittest.expectedFailure`` with a comment starting "BUG:" (``_bug``);
none is, now (``_TestEvent.test_repr`` was, until Event's repr followed
multiprocessing's).

``TRESS_MP_CONFORMANCE_TARGET=multiprocessing`` binds the very same classes
to the stdlib (CPython's own ``ProcessesMixin`` types; then no test is
skipped for a divergence or expected to fail), to tell a harness problem
from a tress bug.  ``TRESS_MP_START_METHODS=fork,spawn`` restricts the
start methods.
"""

import inspect
import multiprocessing
import pickle
import re
import sys
import unittest

import cpython_suite as cs

_mp = cs.import_test_multiprocessing_or_skip()
TARGET, target = cs.import_mp_target_or_skip(
    "TRESS_MP_CONFORMANCE_TARGET", "tress.multiprocessing"
)
STDLIB = target is multiprocessing
START_METHODS = cs.mp_start_methods()

# The names of ProcessesMixin that are the target's.
MIXIN_NAMES = (
    "Queue",
    "JoinableQueue",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Barrier",
)
# ... and what the module view (below) replaces on top of them.
VIEW_NAMES = MIXIN_NAMES + ("SimpleQueue",)


# --- divergences and bugs ------------------------------------------------------


def _divergence(test, reason):
    """``test`` run on the stdlib, skipped with ``reason`` on tress."""
    return cs.divergence(test, reason, STDLIB)


def _bug(test):
    """``test`` expected to fail on tress."""
    return cs.bug(test, STDLIB)


# --- tests that name `multiprocessing.X` directly --------------------------------

# ``multiprocessing`` with the target's queue and lock types.
_VIEW = cs.ModuleView(multiprocessing, **{name: getattr(target, name) for name in VIEW_NAMES})


def _with_target_module(test, *, patch_package=()):
    """Run ``test`` with ``test._test_multiprocessing.multiprocessing`` the
    view, and ``patch_package`` names patched on the package itself."""
    return cs.with_patches(
        test,
        (_mp, "multiprocessing", _VIEW),
        *((multiprocessing, name, getattr(target, name)) for name in patch_package),
    )


# --- the mixin -----------------------------------------------------------------

_StartMethod = cs.StartMethod


class TressProcessesMixin(_StartMethod, _mp.ProcessesMixin):
    """CPython's ProcessesMixin with the target's queues and locks."""

    Queue = staticmethod(target.Queue)
    JoinableQueue = staticmethod(target.JoinableQueue)
    Lock = staticmethod(target.Lock)
    RLock = staticmethod(target.RLock)
    Semaphore = staticmethod(target.Semaphore)
    BoundedSemaphore = staticmethod(target.BoundedSemaphore)
    Condition = staticmethod(target.Condition)
    Event = staticmethod(target.Event)
    Barrier = staticmethod(target.Barrier)


# --- per-class adaptations -------------------------------------------------------
# Underscored; the ones that are TestCase subclasses say __test__ = False:
# pytest collects none of them, only the bound classes made by _install().

PICKLED_IN_PUT = (
    "tress.multiprocessing pickles an item in the caller of put() (its feeder "
    "thread only places messages already pickled, kept while the ring was full): "
    "an unpicklable item raises in put() (the queue stays intact, its size right), "
    "where the test expects put() to return and the feeder thread to report the "
    "error on stderr and go on"
)
FEEDER_HOOK = (
    "the test subclasses the stdlib's multiprocessing.queues.Queue to override "
    "its feeder-thread hook _on_queue_feeder_error; tress.multiprocessing has no "
    "such hook (an unpicklable item raises in put(), before any feeder thread), so "
    "there is nothing of tress to bind it to (run as written it tests the stdlib)"
)


_test_names = cs.test_names
_only = cs.only


class _Queue(_mp._TestQueue):
    test_timeout = _with_target_module(_mp._TestQueue.test_timeout)
    test_closed_queue_put_get_exceptions = _with_target_module(
        _mp._TestQueue.test_closed_queue_put_get_exceptions
    )
    if hasattr(_mp._TestQueue, "test_closed_queue_empty_exceptions"):  # 3.13's suite
        test_closed_queue_empty_exceptions = _with_target_module(
            _mp._TestQueue.test_closed_queue_empty_exceptions
        )
    test_no_import_lock_contention = _with_target_module(
        _mp._TestQueue.test_no_import_lock_contention, patch_package=("Queue",)
    )
    test_queue_feeder_donot_stop_onexc = _divergence(
        _mp._TestQueue.test_queue_feeder_donot_stop_onexc, PICKLED_IN_PUT
    )
    test_queue_feeder_on_queue_feeder_error = _divergence(
        _mp._TestQueue.test_queue_feeder_on_queue_feeder_error, FEEDER_HOOK
    )


class _Event(_mp._TestEvent):
    pass


class _SimpleQueue(_mp.TestSimpleQueue):
    __test__ = False
    test_empty = _with_target_module(_mp.TestSimpleQueue.test_empty)
    test_close = _with_target_module(_mp.TestSimpleQueue.test_close)
    if hasattr(_mp.TestSimpleQueue, "test_empty_exceptions"):  # 3.13's suite
        test_empty_exceptions = _with_target_module(_mp.TestSimpleQueue.test_empty_exceptions)
    test_closed = _divergence(
        _with_target_module(_mp.TestSimpleQueue.test_closed),
        "test_closed (@cpython_only) reads the stdlib SimpleQueue's private pipe ends "
        "_reader/_writer; tress's SimpleQueue is a shared-memory ring with no pipe",
    )


# The tests of the other classes that make a queue, a lock or an event through
# the mixin (or `multiprocessing.X`), which the rest of their class does not.
PROCESS_TESTS = (
    "test_args_argument",
    "test_process",
    "test_process_mainthread_native_id",
    "test_sentinel",
    "test_close",
    "test_lose_target_ref",
    "test_child_fd_inflation",
    "test_wait_for_threads",
    "test_error_on_stdio_flush_1",
    "test_error_on_stdio_flush_2",
    "test_forkserver_sigint",
    "test_forkserver_sigkill",  # via check_forkserver_death
)

# (CPython's class, what is bound): every test of the first seven, the tests
# named of the others.
BOUND = [
    (_mp._TestQueue, _Queue),
    (_mp._TestLock, _mp._TestLock),
    (_mp._TestSemaphore, _mp._TestSemaphore),
    (_mp._TestCondition, _mp._TestCondition),
    (_mp._TestEvent, _Event),
    (_mp._TestBarrier, _mp._TestBarrier),
    (_mp.TestSimpleQueue, _SimpleQueue),
    (_mp._TestProcess, _only(_mp._TestProcess, PROCESS_TESTS)),
    (_mp._TestValue, _only(_mp._TestValue, ["test_getobj_getlock"])),
    (_mp._TestArray, _only(_mp._TestArray, ["test_getobj_getlock_obj"])),
    (
        _mp.TestWait,
        _only(
            _mp.TestWait,
            ["test_wait_integer"],
            test_wait_integer=_with_target_module(_mp.TestWait.test_wait_integer),
        ),
    ),
    (
        _mp.TestStartMethod,
        _only(
            _mp.TestStartMethod,
            ["test_nested_startmethod"],
            test_nested_startmethod=_with_target_module(
                _mp.TestStartMethod.test_nested_startmethod
            ),
        ),
    ),
]


def _bound_name(base, start_method):
    if issubclass(base, _mp.BaseTestCase):  # install_tests_in_module_dict's name
        return f"WithProcesses{base.__name__[1:]}_{start_method}"
    return f"{base.__name__}_{start_method}"


def _install(globs):
    for start_method in START_METHODS:
        for base, adapted in BOUND:
            name = _bound_name(base, start_method)
            if issubclass(base, _mp.BaseTestCase):
                bases = (adapted, TressProcessesMixin, unittest.TestCase)
            else:  # a TestCase that CPython copies into each start-method module
                bases = (_StartMethod, adapted)
            cs.install_bound_class(globs, name, bases, start_method)


_install(globals())


# --- module setup, as install_tests_in_module_dict's ------------------------------

setUpModule, tearDownModule = cs.mp_module_fixtures([__name__, TARGET, _mp.__name__])


# --- the harness itself ------------------------------------------------------------


def _bound_classes():
    return cs.bound_classes(globals())


def test_binding_targets_the_module_under_test():
    # A misbinding would silently test something else.
    classes = _bound_classes()
    assert len(classes) == len(BOUND) * len(START_METHODS)
    for cls in classes:
        assert cls.start_method in START_METHODS
        if issubclass(cls, _mp.BaseTestCase):
            assert issubclass(cls, _mp.ProcessesMixin) and cls.TYPE == "processes"
            for name in MIXIN_NAMES:
                assert getattr(cls, name) is getattr(target, name), (cls, name)
            for name in ("Process", "Pipe", "Value", "Array", "Pool"):
                assert getattr(cls, name) is getattr(_mp.ProcessesMixin, name), (
                    cls,
                    name,
                )
    # The direct `multiprocessing.X` references, rebound for their test only.
    for name in VIEW_NAMES:
        assert getattr(_VIEW, name) is getattr(target, name)
    assert _VIEW.Process is multiprocessing.Process
    assert _mp.multiprocessing is multiprocessing


def test_bound_targets_pickle_by_reference():
    # Under spawn/forkserver the child imports this module by name to find
    # the classmethod targets of the bound classes.
    assert sys.modules[__name__].__file__ == __file__
    for cls in _bound_classes():
        assert pickle.loads(pickle.dumps(cls)) is cls
    cls = globals()[f"WithProcessesTestQueue_{START_METHODS[0]}"]
    assert pickle.loads(pickle.dumps(cls._test_put)) == cls._test_put


_MAKES = re.compile(r"\b(self|cls|multiprocessing)\.(" + "|".join(VIEW_NAMES) + r")\(")


def _scan():
    """{(CPython class, test name): {"self"/"cls"/"multiprocessing"}} for every
    test of test._test_multiprocessing that can run with processes and makes
    a queue, a lock, an event... itself or in a method of its class that it
    calls (``setUp``, ``check_forkserver_death``)."""
    found = {}
    for cls in vars(_mp).values():
        if not isinstance(cls, type):
            continue
        if issubclass(cls, _mp.BaseTestCase):
            if "processes" not in cls.ALLOWED_TYPES:
                continue
        elif not issubclass(cls, unittest.TestCase):
            continue
        makers = {}
        for name, attr in vars(cls).items():
            func = getattr(attr, "__func__", attr)
            if inspect.isfunction(func):
                hits = {m[0] for m in _MAKES.findall(inspect.getsource(func))}
                if hits:
                    makers[name] = (hits, inspect.getsource(func))
        for name in _test_names(cls):
            if name not in vars(cls):
                continue
            source = inspect.getsource(vars(cls)[name])
            hits = set(makers.get(name, (set(),))[0])
            for helper, (helper_hits, _) in makers.items():
                if helper == "setUp" or re.search(rf"\bself\.{helper}\(", source):
                    hits |= helper_hits
            if hits:
                found[(cls, name)] = hits
    return found


def test_every_test_that_makes_a_queue_or_a_lock_is_bound():
    bound = dict(BOUND)
    scanned = _scan()
    for (cls, name), hits in scanned.items():
        assert cls in bound, (
            f"{cls.__name__}.{name} makes {hits} but its class is not bound"
        )
        test = getattr(bound[cls], name)
        assert callable(test), f"{cls.__name__}.{name} is not bound"
        if "multiprocessing" in hits:
            assert getattr(test, "rebinds_multiprocessing", False), (
                f"{cls.__name__}.{name} names multiprocessing.X: it must run with the view"
            )
    for cls, adapted in BOUND:
        if any(getattr(adapted, name) is None for name in _test_names(cls)):
            # bound in part: only tests that make one
            assert {(cls, name) for name in _test_names(adapted)} <= set(scanned), cls
