"""Run every example as `python examples/NAME.py` in a child process: it
must exit 0 and print its result.  Each example is also run with its
one-line migration undone (`from tress import threading` back to
`import threading`, `from tress import queue` back to `import queue`,
`from tress import futures` back to `from concurrent import futures`,
`from tress import multiprocessing` back to `import multiprocessing`,
`from tress.asyncio import run` back to `from asyncio import run`),
which shows it is the same program on the stdlib."""

import importlib
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

#: a migration: the tress import, the stdlib import it replaces, the module
THREADING = ("from tress import threading", "import threading", "tress.threading")
QUEUE = ("from tress import queue", "import queue", "tress.queue")
FUTURES = ("from tress import futures", "from concurrent import futures", "tress.futures")
MULTIPROCESSING = (
    "from tress import multiprocessing", "import multiprocessing", "tress.multiprocessing",
)
ASYNCIO = ("from tress.asyncio import run", "from asyncio import run", "tress.asyncio")

#: example -> (regular expression its output must match, its migration)
EXPECTED = {
    "counter_lock.py": (r"counter = 160000 \(expected 160000\)", THREADING),
    "event_signal.py": (
        r"5 workers released by one Event.*\nresults: \[0, 1, 4, 9, 16\]",
        THREADING,
    ),
    "semaphore_limit.py": (r"12 jobs, limit 3: peak concurrency [123],", THREADING),
    "producer_consumer.py": (
        r"baker: all 30 buns eaten, closing\n"
        r"30 buns baked, 30 eaten \(eater-0 \d+, eater-1 \d+, eater-2 \d+\)",
        QUEUE,
    ),
    "thread_pool_fetch.py": (r"fetched 200 pages, 9295 bytes, 16 workers", FUTURES),
    "cpu_bound_pools.py": (
        r"8 tasks counting 6057 primes, \d+ workers: threads \d+\.\d\d s, "
        r"processes \d+\.\d\d s \(\d+\.\dx: one thread at a time runs Python\)",
        FUTURES,
    ),
    "echo_threads.py": (r"threads: 50 clients x 20 messages, 1000 echoed", FUTURES),
    "echo_selectors.py": (r"selectors: 50 clients x 20 messages, 1000 echoed", THREADING),
    "echo_coroutines.py": (
        r"coroutines \([\w.]+\): 50 clients x 20 messages, 1000 echoed", ASYNCIO,
    ),
    "process_queue.py": (
        r"2000 numbers squared by 3 consumer processes: sum 2664667000 \(expected 2664667000\)",
        MULTIPROCESSING,
    ),
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_is_short_and_uses_tress(name):
    source = (EXAMPLES / name).read_text()
    tress_import, stdlib_import, _ = EXPECTED[name][1]
    assert len(source.splitlines()) < 60
    assert tress_import in source
    assert not re.search(rf"^\s*{stdlib_import}\b", source, re.M)


def run(args, timeout=60):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=EXAMPLES)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} did not finish in {timeout} s\n{exc.stdout}\n{exc.stderr}")


def require(module):
    """Skip the test unless ``module`` (a tress module) imports."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken build
        pytest.skip(
            f"{module} is not importable ({type(exc).__name__}: {exc}); build and "
            "install it with `pip install --no-build-isolation --force-reinstall --no-deps .`"
        )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_on_tress(name):
    expected, (_, _, module) = EXPECTED[name]
    require(module)
    proc = run([sys.executable, str(EXAMPLES / name)])
    assert proc.returncode == 0, proc.stderr
    assert re.search(expected, proc.stdout), proc.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_on_stdlib(name):
    expected, (tress_import, stdlib_import, _) = EXPECTED[name]
    source = (EXAMPLES / name).read_text().replace(tress_import, stdlib_import)
    proc = run([sys.executable, "-c", source])
    assert proc.returncode == 0, proc.stderr
    assert re.search(expected, proc.stdout), proc.stdout
