"""CPython's ``test.test_queue`` bound to tress.queue.

The bindings mirror ``Lib/test/test_queue.py`` (CPython 3.11), which binds
its mixins twice, to the pure-Python ``queue`` (``py_queue``) and to the one
backed by the ``_queue`` C module (``c_queue``), by setting the class
attribute ``queue`` to the module under test: ``QueueTest``,
``LifoQueueTest``, ``PriorityQueueTest``, ``FailingQueueTest`` (a ``Queue``
subclass whose ``_put``/``_get`` hooks raise on demand) and the SimpleQueue
tests.  For SimpleQueue the binding subclasses ``CSimpleQueueTest`` itself:
its ``setUp`` takes ``self.queue.SimpleQueue``, and on top of
``BaseSimpleQueueTest`` it adds the C-only ``test_is_default`` and
``test_reentrancy`` (a ``put`` from a ``__del__`` run by the garbage
collector in the middle of another ``put``), which a native SimpleQueue
must pass as well.

No test code is copied: the classes are imported from ``test.test_queue``
(only the module object is bound here, so pytest does not collect CPython's
own ``Py*``/``C*`` bindings a second time).

Divergences (each skipped test, with its reason) are listed in
``tests/conformance/DIVERGENCES.md``; there are none for this suite.

``TRESS_QUEUE_CONFORMANCE_TARGET=queue`` binds the very same classes to the
stdlib instead, to tell a harness problem from a tress bug.
"""

import importlib
import os
import unittest

import pytest

try:
    from test import test_queue
except ImportError as exc:  # interpreter built/packaged without its test suite
    pytest.skip(
        f"CPython's test.test_queue cannot be imported ({exc}): this interpreter "
        "does not ship the `test` package (e.g. Debian's python3-test is missing)",
        allow_module_level=True,
    )

TARGET = os.environ.get("TRESS_QUEUE_CONFORMANCE_TARGET", "tress.queue")
try:
    target = importlib.import_module(TARGET)
except Exception as exc:  # noqa: BLE001 - not built yet, or a broken build
    pytest.skip(
        f"{TARGET} is not importable ({type(exc).__name__}: {exc}); build and install "
        "tress with `pip install --no-build-isolation --force-reinstall --no-deps .`",
        allow_module_level=True,
    )


# --- CPython's own bindings (Lib/test/test_queue.py) --------------------------


class QueueTest(test_queue.QueueTest, unittest.TestCase):
    queue = target


class LifoQueueTest(test_queue.LifoQueueTest, unittest.TestCase):
    queue = target


class PriorityQueueTest(test_queue.PriorityQueueTest, unittest.TestCase):
    queue = target


class FailingQueueTest(test_queue.FailingQueueTest, unittest.TestCase):
    queue = target


class SimpleQueueTest(test_queue.CSimpleQueueTest):
    """BaseSimpleQueueTest + the C-only test_is_default and test_reentrancy.

    ``CSimpleQueueTest`` carries ``@need_c_queue``: it would be skipped (with
    CPython's reason) on an interpreter built without ``_queue``."""

    queue = target


def test_binding_targets_the_module_under_test():
    # The harness itself: a misbinding would silently test something else.
    cases = [
        (QueueTest, "test_basic", "Queue"),
        (LifoQueueTest, "test_basic", "LifoQueue"),
        (PriorityQueueTest, "test_basic", "PriorityQueue"),
        (SimpleQueueTest, "test_basic", "SimpleQueue"),
    ]
    for cls, method, name in cases:
        case = cls(method)
        case.setUp()
        assert case.type2test is getattr(target, name), (cls, case.type2test)
    case = FailingQueueTest("test_failing_queue")
    case.setUp()
    assert issubclass(case.FailingQueue, target.Queue)
