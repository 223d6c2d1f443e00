"""CPython's ``test.test_asyncio`` suites that run on whatever loop asyncio
makes, run with tress's event loop policy installed.

These suites (tasks, locks, queues, streams, task groups, timeouts,
``wait_for``, ``to_thread``, futures, contexts, runners) get their loops
from ``asyncio.new_event_loop``, ``asyncio.run``, ``asyncio.Runner`` and
``IsolatedAsyncioTestCase``, all of which go through the policy: with
``tress.asyncio.EventLoopPolicy`` installed for each test, those loops are
tress's (checked by ``test_the_policy_makes_tress_loops``). Tests that
build a loop of their own (``test_utils.TestLoop``, a virtual clock) run as
CPython runs them. Every ``TestCase`` the interpreter's own module defines
is bound, from its ``test`` package (never copied).

``TRESS_ASYNCIO_CONFORMANCE_TARGET=asyncio`` leaves asyncio's own policy in
place, to tell a harness problem from a tress bug.
"""

import asyncio
import importlib
import os
import sys
import unittest

import pytest

if sys.platform != "linux":
    pytest.skip("tress.asyncio is Linux-only (epoll and eventfd)", allow_module_level=True)

try:
    import test.test_asyncio  # noqa: F401
except ImportError as exc:
    pytest.skip(
        f"CPython's test.test_asyncio cannot be imported ({exc}): this interpreter "
        "does not ship the `test` package",
        allow_module_level=True,
    )

try:
    import tress.asyncio as tress_asyncio
except Exception as exc:  # noqa: BLE001 - not built yet, or a broken build
    pytest.skip(
        f"tress.asyncio is not importable ({type(exc).__name__}: {exc})",
        allow_module_level=True,
    )

ON_TRESS = os.environ.get("TRESS_ASYNCIO_CONFORMANCE_TARGET") != "asyncio"

SUITES = [
    "test_tasks",
    "test_locks",
    "test_queues",
    "test_streams",
    "test_taskgroups",
    "test_timeouts",
    "test_waitfor",
    "test_threads",
    "test_futures2",
    "test_context",
    "test_runners",
    "test_pep492",
    "test_unix_events",
]


@pytest.fixture(autouse=True)
def tress_policy():
    if ON_TRESS:
        asyncio.set_event_loop_policy(tress_asyncio.EventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(None)


def test_the_policy_makes_tress_loops():
    if not ON_TRESS:
        pytest.skip("bound to asyncio's own policy")
    loop = asyncio.new_event_loop()
    try:
        assert type(loop) is tress_asyncio.EventLoop
    finally:
        loop.close()

    async def which():
        return type(asyncio.get_running_loop())

    assert asyncio.run(which()) is tress_asyncio.EventLoop
    with asyncio.Runner() as runner:
        assert runner.run(which()) is tress_asyncio.EventLoop


def _bind(module_name):
    try:
        module = importlib.import_module(f"test.test_asyncio.{module_name}")
    except ImportError as exc:  # a suite this version does not have
        reason = f"{sys.version.split()[0]} has no test.test_asyncio.{module_name} ({exc})"

        @pytest.mark.skip(reason=reason)
        def missing():
            pass

        return {f"test_{module_name}_is_missing": missing}
    bound = {}
    for name, cls in vars(module).items():
        if isinstance(cls, type) and issubclass(cls, unittest.TestCase) and cls.__module__ == module.__name__:
            bound[f"{module_name}__{name}"] = cls
    return bound


for _module in SUITES:
    globals().update(_bind(_module))
