"""CPython's ``test.test_asyncio`` loop suites bound to ``tress.asyncio``.

``test_events`` binds ``EventLoopTestsMixin`` (with ``SubprocessTestsMixin``)
once per selector, in ``create_event_loop``; the binding here does the same
with tress's ``EventLoop``, from the running interpreter's own
``test.test_asyncio`` (never copied). ``test_sock_lowlevel``,
``test_buffered_proto`` and ``test_server`` are bound the same way. The
suites that run on whatever loop the policy makes (``test_tasks``,
``test_locks``, ``test_queues``, ``test_streams``...) run in
``test_asyncio_policy_suites.py`` with tress's policy installed.

``TRESS_ASYNCIO_CONFORMANCE_TARGET=asyncio`` binds the same classes to
asyncio's own ``SelectorEventLoop`` (to tell a harness problem from a tress
bug). Divergences are listed in ``tests/conformance/DIVERGENCES.md``.
"""

import asyncio
import os
import sys
import unittest

import pytest

if sys.platform != "linux":
    pytest.skip("tress.asyncio is Linux-only (epoll and eventfd)", allow_module_level=True)

try:
    from test.test_asyncio import test_events
    from test.test_asyncio import utils as test_utils
except ImportError as exc:  # interpreter packaged without its test suite
    pytest.skip(
        f"CPython's test.test_asyncio cannot be imported ({exc}): this interpreter "
        "does not ship the `test` package",
        allow_module_level=True,
    )

try:
    import tress.asyncio as tress_asyncio
except Exception as exc:  # noqa: BLE001 - not built yet, or a broken build
    pytest.skip(
        f"tress.asyncio is not importable ({type(exc).__name__}: {exc}); build and "
        "install tress with `pip install --no-build-isolation --force-reinstall --no-deps .`",
        allow_module_level=True,
    )

if os.environ.get("TRESS_ASYNCIO_CONFORMANCE_TARGET") == "asyncio":
    make_loop = asyncio.SelectorEventLoop
else:
    make_loop = tress_asyncio.EventLoop


def tearDownModule():
    asyncio.set_event_loop_policy(None)


# test_events binds its Unix loops through UnixEventLoopTestsMixin (which
# attaches a child watcher where the version has them).
_Mixin = getattr(test_events, "UnixEventLoopTestsMixin", test_events.EventLoopTestsMixin)


class TressEventLoopTests(_Mixin, test_events.SubprocessTestsMixin, test_utils.TestCase):
    def create_event_loop(self):
        return make_loop()


# The loop-parametrised classes CPython binds to its default selector on
# Linux, bound here to tress's loop instead.
LOOP_CLASSES = {
    "test_sock_lowlevel": ["EPollEventLoopTests"],
    "test_buffered_proto": ["BufferedProtocolSelectorTests"],
    "test_server": ["SelectorStartServerTests"],
}


def _bind(module_name, class_names):
    import importlib

    module = importlib.import_module(f"test.test_asyncio.{module_name}")
    bound = {}
    for name in class_names:
        cls = getattr(module, name)
        bound[f"Tress_{module_name}_{name}"] = type(
            f"Tress_{module_name}_{name}",
            (cls,),
            {"create_event_loop": lambda self: make_loop(), "__module__": __name__},
        )
    return bound


for _module, _names in LOOP_CLASSES.items():
    globals().update(_bind(_module, _names))


# test_unix_events builds its loops with asyncio.SelectorEventLoop() in
# setUp: bound by making that name tress's loop while setUp runs.
def _bind_constructed(module_name, class_names):
    import importlib
    from unittest import mock

    module = importlib.import_module(f"test.test_asyncio.{module_name}")
    bound = {}
    for name in class_names:
        cls = getattr(module, name, None)
        if cls is None:  # a version without it
            continue

        def setUp(self, _base=cls):
            with mock.patch.object(asyncio, "SelectorEventLoop", make_loop):
                _base.setUp(self)

        bound[f"Tress_{module_name}_{name}"] = type(
            f"Tress_{module_name}_{name}", (cls,), {"setUp": setUp, "__module__": __name__}
        )
    return bound


globals().update(
    _bind_constructed(
        "test_unix_events", ["SelectorEventLoopSignalTests", "SelectorEventLoopUnixSocketTests"]
    )
)
