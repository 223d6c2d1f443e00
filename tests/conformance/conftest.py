"""Make CPython's regrtest environment checks effective under pytest.

``test.lock_tests.BaseTestCase`` calls ``threading_helper.threading_setup()``
in ``setUp`` and ``threading_cleanup()`` plus ``support.reap_children()`` in
``tearDown``.  Under regrtest a leak there sets
``test.support.environment_altered`` and the run reports the test as
"ENV CHANGED"; under pytest the flag would only print a warning.  This
fixture resets the flag before every conformance test and fails the test
(in teardown) if it was set, so leaked threads and unreaped children are
errors here too.
"""

import pytest

try:
    from test import support as _support
except ImportError:  # the test modules skip themselves with a reason
    _support = None


@pytest.fixture(autouse=True)
def _regrtest_environment_check():
    if _support is None:
        yield
        return
    _support.environment_altered = False
    yield
    altered = _support.environment_altered
    _support.environment_altered = False
    if altered:
        pytest.fail(
            "test.support.environment_altered was set: threading_cleanup() or "
            "reap_children() found leaked threads or child processes "
            "(see the warning printed on stderr)",
            pytrace=False,
        )
