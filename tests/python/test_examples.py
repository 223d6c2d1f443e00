"""Run every example as `python examples/NAME.py` in a child process: it
must exit 0 and print its result.  Each example is also run with the
one-line migration undone (`import threading`), which shows it is the same
program on the stdlib."""

import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
MIGRATION = "from tress import threading"

EXPECTED = {
    "counter_lock.py": r"counter = 160000 \(expected 160000\)",
    "event_signal.py": r"5 workers released by one Event.*\nresults: \[0, 1, 4, 9, 16\]",
    "semaphore_limit.py": r"12 jobs, limit 3: peak concurrency [123],",
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_is_short_and_uses_tress(name):
    source = (EXAMPLES / name).read_text()
    assert len(source.splitlines()) < 60
    assert MIGRATION in source
    assert not re.search(r"^\s*import threading\b", source, re.M)


def run(args, timeout=60):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=EXAMPLES)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} did not finish in {timeout} s\n{exc.stdout}\n{exc.stderr}")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_on_tress(name, tress_threading):  # skips if tress is not built
    proc = run([sys.executable, str(EXAMPLES / name)])
    assert proc.returncode == 0, proc.stderr
    assert re.search(EXPECTED[name], proc.stdout), proc.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_on_stdlib(name):
    source = (EXAMPLES / name).read_text().replace(MIGRATION, "import threading")
    proc = run([sys.executable, "-c", source])
    assert proc.returncode == 0, proc.stderr
    assert re.search(EXPECTED[name], proc.stdout), proc.stdout
