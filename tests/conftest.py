"""Shared fixtures for the tress test suite.

* ``mod``: parametrized over the stdlib ``threading`` module and
  ``tress.threading`` -- a test written once runs on both; the tress param
  is skipped (with the import error as the reason) until the extension
  module imports.  ``qmod`` / ``tq`` / ``qmodname``: the same for ``queue``
  and ``tress.queue``.
* ``stdlib`` / ``tress_threading``: the two modules by name.
* ``check_error``: assert that a call raises exactly what CPython raises
  (type and message), checked against the stdlib in the same test.
* ``wait_until`` / ``wait_blocked`` / ``join_all``: bounded sequencing
  helpers, so that a bug makes a test fail instead of hang.
* ``run_python``: run a snippet in a child interpreter with a timeout.

Hang protection (autouse): pytest-timeout (``timeout``/``timeout_method`` in
pyproject.toml) dumps all stacks and exits from a Python thread; that thread
needs the GIL, so a primitive that blocks *while holding the GIL* would
defeat it.  A faulthandler watchdog (a C thread, no GIL needed) therefore
dumps every thread's stack and exits a little after the pytest-timeout
deadline.  Without pytest-timeout installed, the watchdog is the only guard
and fires at the deadline itself.

Thread-leak check (autouse): after each test, the number of OS threads
(``_thread._count()``) and of live ``threading.Thread`` objects must come
back to the values they had before the test, within a bounded wait.
"""

from __future__ import annotations

import _thread
import faulthandler
import importlib
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

DEFAULT_TIMEOUT = 120.0  # mirrors [tool.pytest.ini_options] timeout
FAULTHANDLER_GRACE = 15.0  # seconds after the pytest-timeout deadline
LEAK_WAIT = 5.0  # seconds to wait for threads to go away after a test


_REAL_STDERR_FD = None  # for the faulthandler watchdog, see below


def pytest_configure(config):
    # An assertion failing inside a worker thread must fail its test, not
    # only print a warning.
    config.addinivalue_line("filterwarnings", "error::pytest.PytestUnhandledThreadExceptionWarning")
    # During a test, fd 2 is pytest's capture file, and a dump written there
    # is lost when the watchdog exits the process.  At configure time fd 2
    # is still the terminal/CI log (pytest's own faulthandler plugin relies
    # on the same), so keep a copy of it.
    global _REAL_STDERR_FD
    try:
        _REAL_STDERR_FD = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        _REAL_STDERR_FD = os.dup(2)


def pytest_unconfigure(config):
    global _REAL_STDERR_FD
    if _REAL_STDERR_FD is not None:
        faulthandler.cancel_dump_traceback_later()
        os.close(_REAL_STDERR_FD)
        _REAL_STDERR_FD = None


# --------------------------------------------------------------------------
# the module under test


def _import_tress(name):
    """``(module, None)``, or ``(None, reason)`` if the build is missing or broken."""
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # ImportError, or a broken build
        return None, f"{type(exc).__name__}: {exc}"


def _skip_reason(name, error):
    return (
        f"{name} is not importable ({error}); build and install it with "
        "`pip install --no-build-isolation --force-reinstall --no-deps .`"
    )


TRESS_THREADING, TRESS_IMPORT_ERROR = _import_tress("tress.threading")
TRESS_SKIP_REASON = _skip_reason("tress.threading", TRESS_IMPORT_ERROR)
# Imported here, before the test modules: they find it in sys.modules.
TRESS_QUEUE, TRESS_QUEUE_IMPORT_ERROR = _import_tress("tress.queue")
TRESS_QUEUE_SKIP_REASON = _skip_reason("tress.queue", TRESS_QUEUE_IMPORT_ERROR)


@pytest.fixture(params=["threading", "tress"])
def mod(request):
    """The module under test: stdlib ``threading`` or ``tress.threading``."""
    if request.param == "threading":
        return threading
    if TRESS_THREADING is None:
        pytest.skip(TRESS_SKIP_REASON)
    return TRESS_THREADING


@pytest.fixture
def stdlib():
    return threading


@pytest.fixture
def tress_threading():
    if TRESS_THREADING is None:
        pytest.skip(TRESS_SKIP_REASON)
    return TRESS_THREADING


@pytest.fixture
def modname(mod):
    """Importable name of the module under test (for child interpreters)."""
    return "threading" if mod is threading else "tress.threading"


@pytest.fixture(params=["queue", "tress"])
def qmod(request):
    """The queue module under test: stdlib ``queue`` or ``tress.queue``."""
    if request.param == "queue":
        return queue
    if TRESS_QUEUE is None:
        pytest.skip(TRESS_QUEUE_SKIP_REASON)
    return TRESS_QUEUE


@pytest.fixture
def tq():
    """``tress.queue`` only (behaviour where tress is stricter than the stdlib)."""
    if TRESS_QUEUE is None:
        pytest.skip(TRESS_QUEUE_SKIP_REASON)
    return TRESS_QUEUE


@pytest.fixture
def qmodname(qmod):
    """Importable name of the queue module under test (for child interpreters)."""
    return "queue" if qmod is queue else "tress.queue"


# --------------------------------------------------------------------------
# error checks against the stdlib


def _capture(call):
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - we report what was raised
        return exc
    return None


@pytest.fixture
def check_error():
    """check_error(mod, call, exc_type, message=None).

    ``call(module)`` must raise ``exc_type`` with ``message`` (exact string)
    on the stdlib -- which pins the expectation to CPython 3.11 -- and then
    exactly the same type and message on ``mod``.  ``message=None`` checks
    the type only and that the message is the stdlib's, unless
    ``type_only=True``.
    """

    def check(mod, call, exc_type, message=None, *, type_only=False):
        ref = _capture(lambda: call(threading))
        assert ref is not None, "stdlib raised nothing: the expectation is wrong"
        assert type(ref) is exc_type, f"stdlib raised {ref!r}, expected {exc_type}"
        if message is not None:
            assert str(ref) == message, f"stdlib message is {str(ref)!r}"
        got = _capture(lambda: call(mod))
        assert got is not None, f"{mod.__name__} raised nothing, stdlib raised {ref!r}"
        assert type(got) is type(ref), f"{mod.__name__} raised {got!r}, stdlib raised {ref!r}"
        if not type_only:
            assert str(got) == str(ref), (
                f"{mod.__name__} message {str(got)!r} != stdlib {str(ref)!r}"
            )
        return got

    return check


# --------------------------------------------------------------------------
# bounded sequencing helpers


def _wait_until(predicate, timeout=10.0, interval=0.001, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
        interval = min(interval * 2, 0.02)


@pytest.fixture
def wait_until():
    """wait_until(predicate, timeout=10, message=...): poll with a deadline."""
    return _wait_until


@pytest.fixture
def wait_blocked():
    """wait_blocked(thread, funcname, lineno=None, timeout=10).

    Wait until ``thread``'s frame for ``funcname`` (searched outward from
    the innermost frame, since a primitive written in Python adds frames of
    its own) sits on ``lineno``, the line of the blocking call.  Used instead
    of sleep-and-hope to know that a thread reached its blocking call.

    For a primitive implemented in C or Rust this is exact when the line
    starts with the blocking call (``r = ev.wait(t)``,
    ``out.append(ev.wait(t))``): CPython 3.11 only switches threads at
    eval-breaker checks (function entry, backward jumps, after a call
    returns), none of which lies between the start of such a line and the
    call, and inside the call the GIL is only given up to block.  For the
    stdlib's Python-level primitives the thread may still be a few lines
    into threading.py; callers that need more than "about to block" check
    the stdlib's own state (e.g. ``Condition._waiters``).
    """

    def wait(thread, funcname, lineno=None, timeout=10.0):
        def pred():
            f = sys._current_frames().get(thread.ident)
            while f is not None:
                if f.f_code.co_name == funcname:
                    return lineno is None or f.f_lineno == lineno
                f = f.f_back
            return False

        _wait_until(pred, timeout, message=f"{thread.name} to block in {funcname}")

    return wait


def _join_all(threads, timeout=30.0):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still alive after {timeout} s: {alive}"


@pytest.fixture
def join_all():
    """join_all(threads, timeout=30): join with one deadline, assert none alive."""
    return _join_all


@pytest.fixture
def run_python(tmp_path):
    """run_python(code, *args, timeout=60) -> CompletedProcess (text mode)."""

    def run(code, *args, timeout=60.0, env=None):
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONFAULTHANDLER", "1")
        if env:
            full_env.update(env)
        try:
            return subprocess.run(
                [sys.executable, "-c", code, *args],
                cwd=tmp_path,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"child interpreter did not finish in {timeout} s\n"
                f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
            )

    return run


# --------------------------------------------------------------------------
# hang protection


def _item_timeout(item):
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        try:
            return float(marker.args[0])
        except (TypeError, ValueError):
            pass
    env_timeout = getattr(item.config, "_env_timeout", None)  # pytest-timeout
    if env_timeout:
        return float(env_timeout)
    return DEFAULT_TIMEOUT


@pytest.fixture(autouse=True)
def _faulthandler_watchdog(request):
    have_pytest_timeout = request.config.pluginmanager.hasplugin("timeout")
    timeout = _item_timeout(request.node)
    if timeout > 0:
        delay = timeout + FAULTHANDLER_GRACE if have_pytest_timeout else timeout
        out = _REAL_STDERR_FD if _REAL_STDERR_FD is not None else sys.__stderr__
        faulthandler.dump_traceback_later(delay, exit=True, file=out)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# --------------------------------------------------------------------------
# thread-leak check


def _live_threads():
    # _DummyThread entries (foreign threads that called current_thread())
    # are never removed in 3.11; they are counted by _thread._count() while
    # they run, so ignoring them here loses nothing.
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


@pytest.fixture(autouse=True)
def _no_thread_leak(request):
    before_count = _thread._count()
    before = _live_threads()
    yield
    deadline = time.monotonic() + LEAK_WAIT
    while True:
        extra = _live_threads() - before
        count = _thread._count()
        if count <= before_count and not extra:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    pytest.fail(
        f"thread leak: _thread._count() {before_count} -> {count}, "
        f"new threads still alive after {LEAK_WAIT} s: "
        f"{sorted(t.name for t in extra)}",
        pytrace=False,
    )
