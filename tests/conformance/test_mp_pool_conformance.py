"""CPython's pool tests of ``test._test_multiprocessing`` bound to tress.pool.

How CPython binds them
----------------------
``Lib/test/_test_multiprocessing.py`` (CPython 3.11, shipped with this
interpreter) writes its pool tests as classes without a ``TestCase`` base
that make their pools through ``self``: ``_TestPool`` (``cls.Pool(4)`` in
``setUpClass``, ``self.Pool(3)``...).  ``install_tests_in_module_dict``
combines it, once per type it allows, with ``ProcessesMixin`` (``Pool =
staticmethod(multiprocessing.Pool)``: the default context's ``Pool``, i.e. a
``multiprocessing.pool.Pool`` with the context of the global start method)
into ``WithProcessesTestPool``, and with ``ThreadsMixin`` (``Pool =
staticmethod(multiprocessing.dummy.Pool)``, which makes a
``multiprocessing.pool.ThreadPool``) into ``WithThreadsTestPool``; likewise
``WithProcessesTestPoolWorkerErrors`` and
``WithProcessesTestPoolWorkerLifetime`` (processes only), and it copies the
plain ``TestCase`` class ``TestInitializers``.  All of them go into each of
``test_multiprocessing_{fork,spawn,forkserver}``, whose ``setUpModule`` sets
the global start method (the thread classes too, though they start no
process).  No test code is copied here: the classes are imported (only the
module object is bound, so pytest collects none of CPython's classes by
themselves).

How this module binds them
--------------------------
``PoolProcessesMixin`` is ``ProcessesMixin`` (a subclass: the tests'
``self.TYPE`` checks hold) whose ``Pool`` is :func:`Pool`, the signature of
``multiprocessing.Pool`` making a ``tress.pool.Pool`` with the context of the
global start method (``multiprocessing.get_context()``, as the default
context's ``Pool`` passes it); ``PoolThreadsMixin`` is ``ThreadsMixin`` whose
``Pool`` is ``tress.pool.ThreadPool``.  Everything else (``Process``,
``Queue``, ``Lock``, ...) stays the stdlib's: the subject here is the pool.  A
bound class is ``(CPython's class, mixin, TestCase)``, named as CPython names
it plus the start method (``WithProcessesTestPool_spawn``,
``WithThreadsTestPool_fork``); ``TestInitializers`` is bound as
``TestInitializers_fork``...  The start method is set per class
(``cpython_suite.StartMethod``, as in ``test_mp_conformance.py``, whose
shared helpers this module uses), dangling processes or threads fail the
class, and the module's fixtures preload this module, the target and
CPython's module in the forkserver.

What is bound, under fork, spawn and forkserver alike (per start method: 25
tests of ``_TestPool`` with processes, 25 with threads, 2 of
``_TestPoolWorkerErrors``, 4 of ``_TestPoolWorkerLifetime``, 1 of
``TestInitializers``: 57; 171 in all, plus the harness tests below):

* every test of ``_TestPool``, with processes and with threads (CPython
  skips ``test_map_unplicklable`` for threads, and ``test_context`` and
  ``test_traceback`` check nothing for threads);
* every test of ``_TestPoolWorkerErrors`` and ``_TestPoolWorkerLifetime``
  (processes only, as CPython: ``ALLOWED_TYPES``);
* ``TestInitializers.test_pool_initializer`` (``test_manager_initializer``
  tests the stdlib's manager only and is not bound).

``test_every_test_that_makes_a_pool_is_bound`` scans CPython's module and
fails if a test that makes a pool is left out without a reason given in
``NOT_BOUND`` (the manager's pools, which run the stdlib's pool in the
manager process; ``TestPoolNotLeakOnFailure``, which drives the stdlib
pool's worker creation through a mocked context; module-level helpers run in
a child, ``pool_in_process``, are not scanned).

Tests that name the stdlib directly
-----------------------------------
``_TestPoolWorkerErrors``, ``_TestPoolWorkerLifetime`` and
``TestInitializers.test_pool_initializer`` make their pools with
``multiprocessing.Pool(...)``, not the mixin; ``_TestPool.test_traceback`` and
``test_resource_warning`` read ``multiprocessing.pool.RemoteTraceback`` and
``multiprocessing.pool.RUN``.  Bound as they are the first would test the
stdlib.  For these tests only, the global ``multiprocessing`` of
``test._test_multiprocessing`` is swapped (and restored after the test) for
a view of the package (``cpython_suite.ModuleView``, the mechanism
``test_mp_conformance.py`` uses for the queues) whose ``Pool`` is
:func:`Pool` and whose ``pool`` is a view of ``multiprocessing.pool`` with
the target's ``Pool`` and ``ThreadPool`` (its ``RemoteTraceback``,
``MaybeEncodingError``, ``RUN``... are the stdlib's, which tress raises and
uses); ``multiprocessing`` itself is not touched.
``test_worker_finalization_via_atexit_handler_of_multiprocessing`` runs a
child interpreter whose code says ``from multiprocessing import Pool``: for
that test ``test.support.script_helper.assert_python_ok`` is patched to run
the code with that line importing the target's ``Pool`` instead, after a
prelude that puts the directory tress was imported from on the child's
``sys.path`` (``cpython_suite.target_path_prelude``: the child runs in
isolated mode, which ignores ``PYTHONPATH``).  The test's own
``from multiprocessing.pool import MaybeEncodingError`` imports the stdlib's
exception, which is what tress raises.

Child processes
---------------
Pool tasks are module-level functions of ``test._test_multiprocessing``
(``sqr``, ``mul``, ``raising``...) and ``cls._test_*`` classmethods of the
bound classes; under spawn and forkserver the child imports this module by
its ``__name__`` (pytest's ``prepend`` import mode puts ``tests/conformance``
first on ``sys.path``, which the children get).

Divergences and bugs
--------------------
None is skipped or marked: a test that fails here is a failure of tress.
All 57 pass under each start method, as the stdlib's do. They found, when
this module was written: ``map_async`` of 10,000 one-item chunks blocking
in the caller until the task ring had room (``test_terminate``; submitting
now never waits, the backlog staying in the parent); a ``ThreadPool``
handing ``map_async``'s chunks to idle workers before ``terminate()`` could
stop them (``ThreadPool`` now has the stdlib's task-handler thread); an
exception larger than the result ring (``test_map_no_failfast``; the rings
now carry messages of any size); ``Pool._state`` not settable
(``test_resource_warning``) and no ``Pool._repopulate_pool()``
(``test_pool_worker_lifetime``).

Wall time (2 shared cores): about 7 s per start method, 20-22 s for the
module; the stdlib's pools take about the same.

A hung test fails alone, within a minute: the module's ``pytestmark`` gives
each test 60 s (the slowest passing one takes under 2 s) and makes
pytest-timeout use its ``signal`` method (the exception is raised in the
test, whose blocking tress or ``threading`` wait is interrupted) rather
than the project's ``thread`` method, which ends the whole session with
``os._exit``.

``TRESS_POOL_CONFORMANCE_TARGET=multiprocessing.pool`` binds the very same
classes to the stdlib's ``Pool`` and ``ThreadPool``, to tell a harness
problem from a tress bug; ``TRESS_MP_START_METHODS=fork,spawn`` restricts the
start methods.
"""

import inspect
import multiprocessing
import multiprocessing.pool
import pickle
import re
import sys
import unittest
import unittest.mock

import cpython_suite as cs
import pytest

_mp = cs.import_test_multiprocessing_or_skip()
TARGET, target = cs.import_mp_target_or_skip("TRESS_POOL_CONFORMANCE_TARGET", "tress.pool")
STDLIB = target is multiprocessing.pool
START_METHODS = cs.mp_start_methods()

from test.support import script_helper as _script_helper  # noqa: E402 - after the skip


# A hung test fails alone (see "Divergences and bugs" above).
pytestmark = pytest.mark.timeout(60, method="signal")


def Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None):
    """``multiprocessing.Pool`` (the default context's): the target's pool
    with the context of the global start method."""
    return target.Pool(
        processes, initializer, initargs, maxtasksperchild, context=multiprocessing.get_context()
    )


# --- tests that name `multiprocessing.X` directly --------------------------------

_VIEW = cs.ModuleView(
    multiprocessing,
    Pool=Pool,
    pool=cs.ModuleView(multiprocessing.pool, Pool=target.Pool, ThreadPool=target.ThreadPool),
)

CHILD_IMPORT = "from multiprocessing import Pool"


def _assert_python_ok(*args, **env_vars):
    """``assert_python_ok`` whose ``-c`` code imports the target's ``Pool``."""
    args = list(args)
    i = args.index("-c")
    code = cs.rewrite_child_import(args[i + 1], CHILD_IMPORT, f"from {TARGET} import Pool")
    args[i + 1] = cs.target_path_prelude(TARGET) + code
    return _STDLIB_ASSERT_PYTHON_OK(*args, **env_vars)


SCRIPT_POOL = "multiprocessing.Pool("


def _assert_script_ok(script, *args, **env_vars):
    """``assert_python_ok`` of a script file (3.13's ``test_large_pool``)
    whose ``multiprocessing.Pool(`` is the target's ``Pool``: the file is
    rewritten in place (the test made it, in its temporary directory)."""
    with open(script, encoding="utf-8") as f:
        code = f.read()
    if code.count(SCRIPT_POOL) != 1:
        raise AssertionError(
            f"harness: expected the script to call {SCRIPT_POOL!r} exactly once:\n{code}"
        )
    code = code.replace(SCRIPT_POOL, "_TressPool(")
    with open(script, "w", encoding="utf-8") as f:
        f.write(cs.target_path_prelude(TARGET) + f"from {TARGET} import Pool as _TressPool\n" + code)
    return _STDLIB_ASSERT_PYTHON_OK(script, *args, **env_vars)


_STDLIB_ASSERT_PYTHON_OK = _script_helper.assert_python_ok


def _with_target_module(test, *, child_interpreter=False, child_script=False):
    """Run ``test`` with ``test._test_multiprocessing.multiprocessing`` the
    view (and, ``child_interpreter``, its child interpreter importing the
    target's ``Pool``; ``child_script``, its child script calling it)."""
    patches = [(_mp, "multiprocessing", _VIEW)]
    if child_interpreter and not STDLIB:
        patches.append((_script_helper, "assert_python_ok", _assert_python_ok))
    if child_script and not STDLIB:
        patches.append((_script_helper, "assert_python_ok", _assert_script_ok))
    return cs.with_patches(test, *patches)


# --- the mixins ------------------------------------------------------------------


class PoolProcessesMixin(cs.StartMethod, _mp.ProcessesMixin):
    """CPython's ProcessesMixin with the target's ``Pool``."""

    Pool = staticmethod(Pool)


class PoolThreadsMixin(cs.StartMethod, _mp.ThreadsMixin):
    """CPython's ThreadsMixin with the target's ``ThreadPool``."""

    Pool = staticmethod(target.ThreadPool)


MIXINS = {"processes": PoolProcessesMixin, "threads": PoolThreadsMixin}


# --- per-class adaptations ---------------------------------------------------------
# Underscored; the TestCase subclasses say __test__ = False: pytest collects
# none of them, only the bound classes made by _install().


class _Pool(_mp._TestPool):
    test_traceback = _with_target_module(_mp._TestPool.test_traceback)
    test_resource_warning = _with_target_module(_mp._TestPool.test_resource_warning)


class _PoolWorkerErrors(_mp._TestPoolWorkerErrors):
    test_async_error_callback = _with_target_module(
        _mp._TestPoolWorkerErrors.test_async_error_callback
    )
    test_unpickleable_result = _with_target_module(
        _mp._TestPoolWorkerErrors.test_unpickleable_result
    )


_L = _mp._TestPoolWorkerLifetime


class _PoolWorkerLifetime(_L):
    test_pool_worker_lifetime = _with_target_module(_L.test_pool_worker_lifetime)
    test_pool_worker_lifetime_early_close = _with_target_module(
        _L.test_pool_worker_lifetime_early_close
    )
    test_pool_maxtasksperchild_invalid = _with_target_module(
        _L.test_pool_maxtasksperchild_invalid
    )
    test_worker_finalization_via_atexit_handler_of_multiprocessing = _with_target_module(
        _L.test_worker_finalization_via_atexit_handler_of_multiprocessing,
        child_interpreter=True,
    )


del _L

# (CPython's class, the types bound, what is bound)
BOUND = [
    (_mp._TestPool, ("processes", "threads"), _Pool),
    (_mp._TestPoolWorkerErrors, ("processes",), _PoolWorkerErrors),
    (_mp._TestPoolWorkerLifetime, ("processes",), _PoolWorkerLifetime),
    (
        _mp.TestInitializers,
        (),
        cs.only(
            _mp.TestInitializers,
            ["test_pool_initializer"],
            test_pool_initializer=_with_target_module(
                _mp.TestInitializers.test_pool_initializer
            ),
        ),
    ),
]
if hasattr(_mp.MiscTestCase, "test_large_pool"):  # 3.13: a pool of 200 workers
    BOUND.append((
        _mp.MiscTestCase,
        (),
        cs.only(
            _mp.MiscTestCase,
            ["test_large_pool"],
            test_large_pool=_with_target_module(
                _mp.MiscTestCase.test_large_pool, child_script=True
            ),
        ),
    ))

# The tests that make a pool and are not bound, with the reason.
NOT_BOUND = {
    _mp.TestPoolNotLeakOnFailure: (
        "makes multiprocessing.pool.Pool with a mocked context whose Process() fails, to check "
        "the stdlib pool's own worker bookkeeping"
    ),
}


def _bound_name(base, type_, start_method):
    if issubclass(base, _mp.BaseTestCase):  # install_tests_in_module_dict's name
        return f"With{type_.capitalize()}{base.__name__[1:]}_{start_method}"
    return f"{base.__name__}_{start_method}"


def _install(globs):
    for start_method in START_METHODS:
        for base, types_, adapted in BOUND:
            if issubclass(base, _mp.BaseTestCase):
                assert set(types_) <= set(base.ALLOWED_TYPES), (base, types_)
                variants = [(t, (adapted, MIXINS[t], unittest.TestCase)) for t in types_]
            else:  # a TestCase that CPython copies into each start-method module
                variants = [(None, (cs.StartMethod, adapted))]
            for type_, bases in variants:
                cs.install_bound_class(globs, _bound_name(base, type_, start_method), bases,
                                       start_method)


_install(globals())

setUpModule, tearDownModule = cs.mp_module_fixtures([__name__, TARGET, _mp.__name__])


# --- the harness itself ------------------------------------------------------------


def _bound_classes():
    return cs.bound_classes(globals())


def test_binding_targets_the_module_under_test():
    # A misbinding would silently test something else.
    classes = _bound_classes()
    per_method = sum(max(1, len(types_)) for _, types_, _ in BOUND)
    assert len(classes) == per_method * len(START_METHODS)
    for cls in classes:
        assert cls.start_method in START_METHODS
        if issubclass(cls, _mp.BaseTestCase):
            if cls.TYPE == "processes":
                assert issubclass(cls, _mp.ProcessesMixin) and cls.Pool is Pool
                for name in ("Process", "Queue", "Lock", "Event", "Value"):
                    assert getattr(cls, name) is getattr(_mp.ProcessesMixin, name), (cls, name)
            else:
                assert cls.TYPE == "threads" and issubclass(cls, _mp.ThreadsMixin)
                assert cls.Pool is target.ThreadPool
    assert _VIEW.Pool is Pool
    assert _VIEW.pool.Pool is target.Pool and _VIEW.pool.ThreadPool is target.ThreadPool
    assert _VIEW.pool.RemoteTraceback is multiprocessing.pool.RemoteTraceback
    assert _VIEW.Process is multiprocessing.Process and _VIEW.Queue is multiprocessing.Queue
    assert _mp.multiprocessing is multiprocessing
    assert _script_helper.assert_python_ok is _STDLIB_ASSERT_PYTHON_OK


def test_pool_has_the_start_methods_context():
    # What the mixin's and the view's Pool pass: the global start method's
    # context (the default context's Pool passes the same).
    seen = []

    class Recorder:
        def __init__(self, *args, context=None):
            seen.append((args, context))

    for method in START_METHODS:
        old = multiprocessing.get_start_method(allow_none=True)
        multiprocessing.set_start_method(method, force=True)
        try:
            with unittest.mock.patch.object(target, "Pool", Recorder):
                Pool(2, maxtasksperchild=3)
        finally:
            multiprocessing.set_start_method(old, force=True)
        args, context = seen.pop()
        assert args == (2, None, (), 3)
        assert context.get_start_method() == method


def test_child_interpreter_imports_the_target():
    code = _mp._TestPoolWorkerLifetime.test_worker_finalization_via_atexit_handler_of_multiprocessing
    source = inspect.getsource(code)
    assert source.count(CHILD_IMPORT) == 1


def test_bound_targets_pickle_by_reference():
    # Under spawn/forkserver the child imports this module by name to find
    # the classmethod targets of the bound classes.
    assert sys.modules[__name__].__file__ == __file__
    for cls in _bound_classes():
        assert pickle.loads(pickle.dumps(cls)) is cls
    cls = globals()[f"WithProcessesTestPool_{START_METHODS[0]}"]
    assert pickle.loads(pickle.dumps(cls._test_traceback)) == cls._test_traceback


_MAKES = re.compile(
    r"\b(?:(self|cls)\.Pool\(|(multiprocessing)\.(?:Pool|pool\.Pool|pool\.ThreadPool|dummy\.Pool)\("
    r"|(from multiprocessing(?:\.pool)? import) (?:Pool|ThreadPool)\b)"
)
_NAMES = re.compile(r"\bmultiprocessing\.pool\.\w+")


def _scan():
    """{(CPython class, test name): {"self", "multiprocessing", "from ..."}}
    for every test of test._test_multiprocessing that makes a pool itself or
    in ``setUp``/``setUpClass`` (and "names" for the tests that read another
    ``multiprocessing.pool.X``)."""
    found = {}
    for cls in vars(_mp).values():
        if not isinstance(cls, type):
            continue
        if not (issubclass(cls, _mp.BaseTestCase) or issubclass(cls, unittest.TestCase)):
            continue
        setup = "".join(
            inspect.getsource(getattr(vars(cls)[n], "__func__", vars(cls)[n]))
            for n in ("setUp", "setUpClass")
            if n in vars(cls)
        )
        for name in cs.test_names(cls):
            if name not in vars(cls):
                continue
            source = inspect.getsource(vars(cls)[name])
            hits = {h for m in _MAKES.findall(source + setup) for h in m if h}
            if _NAMES.search(source):
                hits.add("names")
            if hits:
                found[(cls, name)] = {"self" if h == "cls" else h for h in hits}
    return found


def test_every_test_that_makes_a_pool_is_bound():
    bound = {cls: (types_, adapted) for cls, types_, adapted in BOUND}
    scanned = _scan()
    for (cls, name), hits in scanned.items():
        if cls in NOT_BOUND:
            continue
        assert cls in bound, f"{cls.__name__}.{name} makes a pool ({hits}) but is not bound"
        test = getattr(bound[cls][1], name)
        assert callable(test), f"{cls.__name__}.{name} is not bound"
        if hits - {"self"}:
            assert getattr(test, "rebinds_multiprocessing", False), (
                f"{cls.__name__}.{name} names the stdlib's pool ({hits}): it must run with the view"
            )
    for cls, _, adapted in BOUND:
        # bound in part: only the tests that make a pool
        if any(getattr(adapted, name) is None for name in cs.test_names(cls)):
            assert {(cls, name) for name in cs.test_names(adapted)} <= set(scanned), cls
