"""tress follows the interpreter it runs in: where the stdlib's behaviour
changed between 3.11, 3.12 and 3.13, each test compares tress with the
stdlib of the interpreter running it (never with a fixed version's)."""

import json
import os
import queue
import sys

import pytest

from tress import queue as tq


def test_shutdown_is_the_stdlibs_where_it_has_one():
    if sys.version_info >= (3, 13):
        assert tq.ShutDown is queue.ShutDown
    else:
        assert not hasattr(queue, "ShutDown")
        assert issubclass(tq.ShutDown, Exception)
    # 3.13's Queue.shutdown is offered on every version
    q = tq.Queue()
    q.put(1)
    q.shutdown()
    with pytest.raises(tq.ShutDown):
        q.put(2)
    assert q.get(timeout=5) == 1
    with pytest.raises(tq.ShutDown):
        q.get(timeout=5)


DEFAULTS = """
import concurrent.futures as cf, json, multiprocessing.pool as mpp, os, sys
from tress import futures as tf, pool as tp
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # fewer CPUs than the machine's
out = {}
with cf.ThreadPoolExecutor() as s, tf.ThreadPoolExecutor() as t:
    out["ThreadPoolExecutor"] = (s._max_workers, t._max_workers)
with cf.ProcessPoolExecutor() as s, tf.ProcessPoolExecutor() as t:
    out["ProcessPoolExecutor"] = (s._max_workers, t._max_workers)
for name, std, ours in (("ThreadPool", mpp.ThreadPool, tp.ThreadPool), ("Pool", mpp.Pool, tp.Pool)):
    a, b = std(), ours()
    out[name] = (a._processes, b._processes)
    a.terminate(); b.terminate(); a.join(); b.join()
print(json.dumps(out))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs to tell the counts apart")
def test_default_worker_counts_are_the_running_stdlibs(run_python):
    """3.13 counts the CPUs this process may use (os.process_cpu_count),
    earlier versions the machine's: with the affinity cut to one CPU the
    two differ, and tress's defaults must be the running stdlib's."""
    proc = run_python(DEFAULTS, timeout=120)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert set(counts) == {"ThreadPoolExecutor", "ProcessPoolExecutor", "ThreadPool", "Pool"}
    for name, (std, ours) in counts.items():
        assert ours == std, f"{name}: stdlib {std}, tress {ours}"
    cpus = 1 if sys.version_info >= (3, 13) else os.cpu_count()
    assert counts["ThreadPoolExecutor"][1] == min(32, cpus + 4)



def test_a_free_threaded_interpreter_keeps_the_gil_off_on_import():
    import subprocess
    import sysconfig

    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip(f"{sys.version.split()[0]} is not a free-threaded build (3.13t): nothing to re-enable")
    # the environment may force the GIL on; the module itself must not
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    code = "import sys, tress.futures, tress.queue, tress.multiprocessing; print(sys._is_gil_enabled())"
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
