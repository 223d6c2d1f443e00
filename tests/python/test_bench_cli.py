"""Tests of the ``python -m tress bench`` command line.

Every test runs the command in a child interpreter with a timeout, with the
shortest settings (``--min-time 0.01 --trials 1``) so each takes a few
seconds.  No test asserts on speed: only the structure of the output.

Which ``tress`` package the child runs: the repository's ``python/`` tree
if it imports there (an in-place build, or a pure-Python package), else the
installed one; if neither imports (``tress/__init__`` needs the extension
and it is not built), the tests are skipped with the reason.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "python"
FAST = ["--min-time", "0.01", "--trials", "1"]
RUN_TIMEOUT = 120.0

PRIMITIVE_CASES = {
    "lock",
    "rlock",
    "condition",
    "semaphore",
    "bounded-semaphore",
    "event",
    "barrier",
    "condition-pingpong",
    "event-pingpong",
    "lock-handoff",
    "lock-contended",
    "condition-buffer",
}

#: cases measured without a DESIGN.md target
UNTARGETED = {"lock-contended", "condition-buffer"}

QUEUE_CASES = {
    f"{prefix}-{kind}"
    for prefix in ("queue", "lifo", "priority")
    for kind in ("putget", "1p1c", "4p4c", "bounded", "join")
} | {"queue-vs-simple", "simple-putget", "simple-1p1c", "simple-4p4c"}

#: queue cases without a target: SimpleQueue versus the stdlib's C one
QUEUE_UNTARGETED = {"simple-putget", "simple-1p1c", "simple-4p4c"}

#: the reference implementation of the queues scenario, and its one case
QUEUE_REFERENCE = "SimpleQueue"
QUEUE_REFERENCE_CASE = "queue-vs-simple"

POOL_CASES = {
    "submit", "submit-seq", "map", "as-completed", "io-bound", "pool-map",
    "pool-imap-unordered",
}

#: pool cases without a target (the issue sets none for as_completed; the
#: sequential round trip is reported beside the batch the target is about)
POOL_UNTARGETED = {"as-completed", "submit-seq"}

#: the ThreadPool cases: tress is skipped there until tress.pool exists
POOL_THREADPOOL_CASES = {"pool-map", "pool-imap-unordered"}

#: the reference of the pools scenario (the ideal wall time), and its one case
POOL_REFERENCE = "ideal"
POOL_REFERENCE_CASE = "io-bound"

#: the other reference of that case (plain threads, no pool), no target
POOL_CEILING = "threads"

#: pool targets, by case: (ratio, versus)
POOL_TARGETS = {
    "submit": (10.0, "stdlib"),
    "map": (50.0, "stdlib"),
    "io-bound": (0.95, POOL_REFERENCE),
    "pool-map": (1.0, "stdlib"),
    "pool-imap-unordered": (1.0, "stdlib"),
}

IPC_CASES = {"64B", "64B-vs-faster-fifo", "1KiB", "64KiB", "1MiB", "16MiB", "256MiB",
             "numpy-100MB", "ping-pong"}

#: ipc cases of large messages, and the MiB of payload one iteration moves
IPC_LARGE = {"16MiB": 16, "256MiB": 256}

#: the ipc case skipped (every implementation) where NumPy is not installed
IPC_NUMPY_CASE = "numpy-100MB"

#: ipc cases faster-fifo cannot carry (its max_size_bytes): "n/a", with why
IPC_PEER_NOT_APPLICABLE = {"256MiB", "numpy-100MB"}

#: ipc cases without a target (the issue sets none for 1 KiB and 64 KiB)
IPC_UNTARGETED = {"1KiB", "64KiB"}

#: ipc units, by case: messages/s for small payloads, MiB/s for large ones
IPC_UNITS = {
    "64B": "msgs/s",
    "64B-vs-faster-fifo": "msgs/s",
    "1KiB": "msgs/s",
    "64KiB": "MiB/s",
    "1MiB": "MiB/s",
    "16MiB": "MiB/s",
    "256MiB": "MiB/s",
    "numpy-100MB": "round trips/s",
    "ping-pong": "round trips/s",
}

#: the stdlib's other channels, measured in every ipc case
IPC_EXTRAS = {"mp.SimpleQueue", "mp.Pipe"}

#: the peer: measured when installed, skipped with the reason otherwise
IPC_PEER = "faster-fifo"

#: the reference of the ipc scenario (bare os.pipe), and its one case
IPC_REFERENCE = "os.pipe"
IPC_REFERENCE_CASE = "ping-pong"

#: ipc targets, by case: (ratio, versus)
IPC_TARGETS = {
    "64B": (10.0, "stdlib"),
    "64B-vs-faster-fifo": (10.0, IPC_PEER),
    "1MiB": (3.0, IPC_PEER),
    "16MiB": (5.0, "stdlib"),
    "256MiB": (5.0, "stdlib"),
    "numpy-100MB": (5.0, "stdlib"),
    "ping-pong": (1.0, IPC_REFERENCE),
}


PROCPOOL_CASES = {"map", "map-vs-pool", "map-tuned", "cpu", "round-trip", "backlog", "start"}

#: procpool cases without a target (the tuned map is reported beside the
#: default; the backlog's time to return is shown beside the stdlib's)
PROCPOOL_UNTARGETED = {"map-tuned", "backlog"}

#: procpool units, by case
PROCPOOL_UNITS = {
    "map": "items/s",
    "map-vs-pool": "items/s",
    "map-tuned": "items/s",
    "cpu": "tasks/s",
    "round-trip": "round trips/s",
    "backlog": "calls/s",
    "start": "starts/s",
}

#: the stdlib's other pool, measured in every procpool case
PROCPOOL_EXTRA = "mp.Pool"

#: tress's other pool (tress.pool.Pool), measured in every procpool case
PROCPOOL_TRESS_POOL = "tress.Pool"

#: the peers: measured when installed, skipped with the reason otherwise
PROCPOOL_PEERS = {"loky", "mpire"}

#: the reference of the procpool scenario (serial time / 2 workers), and its one case
PROCPOOL_REFERENCE = "ideal"
PROCPOOL_REFERENCE_CASE = "cpu"

#: the other reference of that case (forked processes, no pool), no target
PROCPOOL_CEILING = "processes"

#: procpool targets, by case: (ratio, versus)
PROCPOOL_TARGETS = {
    "map": (100.0, "stdlib"),
    "map-vs-pool": (1.0, PROCPOOL_EXTRA),
    "cpu": (0.95, PROCPOOL_REFERENCE),
    "round-trip": (10.0, "stdlib"),
    "start": (1.0, "stdlib"),
}


def _env(pythonpath: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    parts = pythonpath + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONFAULTHANDLER"] = "1"
    return env


@functools.cache
def _child_env() -> tuple[dict[str, str] | None, str]:
    """An environment in which ``import tress.bench.cli`` works, or why not."""
    reasons = []
    for label, pythonpath in (("source tree", [str(SOURCE)]), ("installed", [])):
        env = _env(pythonpath)
        probe = subprocess.run(
            [sys.executable, "-c", "import tress.__main__, tress.bench.cli"],
            env=env, capture_output=True, text=True, timeout=60, cwd=REPO,
        )
        if probe.returncode == 0:
            return env, label
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        reasons.append(f"{label}: {last}")
    return None, "; ".join(reasons)


def run_tress(*args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python -m tress ARGS`` in a child; skip if tress cannot be imported."""
    env, why = _child_env()
    if env is None:
        pytest.skip(f"the tress package is not importable ({why})")
    try:
        return subprocess.run(
            [sys.executable, "-m", "tress", *args],
            env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"python -m tress {' '.join(args)} did not finish in {timeout} s\n"
            f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
        )


def run_snippet(code: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    env, why = _child_env()
    if env is None:
        pytest.skip(f"the tress package is not importable ({why})")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )


def _has_matplotlib() -> bool:
    return run_snippet("import matplotlib").returncode == 0


# --------------------------------------------------------------------------
# help and usage


def test_top_level_help_lists_bench():
    proc = run_tress("--help")
    assert proc.returncode == 0, proc.stderr
    assert "bench" in proc.stdout
    assert "COMMAND" in proc.stdout


def test_no_command_is_a_usage_error():
    proc = run_tress()
    assert proc.returncode == 2
    assert "COMMAND" in proc.stderr


def test_bench_help_lists_options():
    proc = run_tress("bench", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--quick", "--json", "--only", "--plot", "--trials", "--min-time"):
        assert option in proc.stdout


def test_list_names_every_case():
    proc = run_tress("bench", "--list")
    assert proc.returncode == 0, proc.stderr
    for case in PRIMITIVE_CASES:
        assert f"primitives/{case}:" in proc.stdout
    for case in QUEUE_CASES:
        assert f"queues/{case}:" in proc.stdout
    assert "SimpleQueue=queue.SimpleQueue" in proc.stdout
    for case in POOL_CASES:
        assert f"pools/{case}:" in proc.stdout
    assert "ideal=ideal wall time 0.1 s" in proc.stdout
    for case in IPC_CASES:
        assert f"ipc/{case}:" in proc.stdout
    assert "stdlib=multiprocessing.Queue," in proc.stdout
    assert f"{IPC_PEER}=faster_fifo.Queue" in proc.stdout
    assert f"{IPC_REFERENCE}=os.pipe + os.write/os.read" in proc.stdout
    for case in PROCPOOL_CASES:
        assert f"procpool/{case}:" in proc.stdout
    assert "stdlib=concurrent.futures.ProcessPoolExecutor(max_workers=2)" in proc.stdout
    assert "tress=tress.futures.ProcessPoolExecutor(max_workers=2)" in proc.stdout
    assert f"{PROCPOOL_EXTRA}=multiprocessing.Pool(processes=2)" in proc.stdout
    for peer in PROCPOOL_PEERS:
        assert f"{peer}={peer}." in proc.stdout
    assert f"{PROCPOOL_REFERENCE}=200 tasks one after the other" in proc.stdout


def test_unknown_only_name_is_a_clear_error():
    proc = run_tress("bench", "--only", "no-such-scenario", timeout=60)
    assert proc.returncode == 2
    assert "unknown benchmark name" in proc.stderr
    assert "no-such-scenario" in proc.stderr
    assert "primitives" in proc.stderr  # lists the known names
    assert proc.stdout == ""  # nothing was run


def test_unknown_case_name_is_a_clear_error():
    proc = run_tress("bench", "--only", "primitives/no-such-case", timeout=60)
    assert proc.returncode == 2
    assert "primitives/no-such-case" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials", "0"], "--trials"),
        (["--min-time", "-1"], "--min-time"),
        (["--plot", "chart.jpg"], "--plot"),
    ],
)
def test_bad_option_values_are_usage_errors(args, message):
    proc = run_tress("bench", *args, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr


# --------------------------------------------------------------------------
# the JSON document


@pytest.fixture(scope="module")
def primitives_json():
    proc = run_tress("bench", "--quick", "--only", "primitives", "--json", *FAST)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_json_document_structure(primitives_json):
    doc = primitives_json
    assert doc["schema"] == "tress-bench/1"
    assert doc["errors"] == 0
    assert doc["settings"] == {"min_time": 0.01, "trials": 1, "batches": 4}
    machine = doc["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["python_version"].count(".") == 2
    assert doc["run"]["quick"] is True
    assert [s["name"] for s in doc["scenarios"]] == ["primitives"]

    (scenario,) = doc["scenarios"]
    assert scenario["error"] is None
    impls = {impl["name"]: impl for impl in scenario["implementations"]}
    assert impls["stdlib"]["status"] == "ok"
    assert impls["tress"]["status"] in ("ok", "skipped")
    if impls["tress"]["status"] == "skipped":
        assert impls["tress"]["reason"]
    assert {case["name"] for case in scenario["cases"]} == PRIMITIVE_CASES


def test_json_every_case_measured_or_skipped(primitives_json):
    (scenario,) = primitives_json["scenarios"]
    for case in scenario["cases"]:
        name = case["name"]
        assert case["unit"] in ("ops/s", "round trips/s", "items/s"), name
        assert case["description"], name
        if name in UNTARGETED:
            assert case["target"] is None, name
        else:
            assert case["target"]["ratio"] > 1, name

        stdlib = case["results"]["stdlib"]
        assert stdlib["status"] == "ok", (name, stdlib)
        assert stdlib["median"] > 0, name
        assert len(stdlib["trials"]) == 1 and stdlib["trials"][0] > 0, name

        tress = case["results"]["tress"]
        if tress["status"] == "ok":
            assert tress["median"] > 0, name
            assert all(t > 0 for t in tress["trials"]), name
            assert case["ratios"]["tress"] == pytest.approx(tress["median"] / stdlib["median"])
            if case["target"] is not None:
                assert case["target"]["met"] in (True, False), name
        else:
            assert tress["status"] == "skipped", (name, tress)
            assert tress["reason"], name
            assert case["ratios"]["tress"] is None
            if case["target"] is not None:
                assert case["target"]["met"] is None


@pytest.fixture(scope="module")
def queues_json():
    proc = run_tress("bench", "--quick", "--only", "queues", "--json", *FAST)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_queues_json_structure(queues_json):
    doc = queues_json
    assert doc["errors"] == 0
    (scenario,) = doc["scenarios"]
    assert scenario["name"] == "queues"
    assert scenario["error"] is None
    impls = {impl["name"]: impl for impl in scenario["implementations"]}
    assert set(impls) == {"stdlib", "tress", QUEUE_REFERENCE}
    assert impls["stdlib"]["status"] == "ok"
    assert impls[QUEUE_REFERENCE]["status"] == "ok"
    assert impls[QUEUE_REFERENCE]["source"] == "queue.SimpleQueue"
    assert impls["tress"]["status"] in ("ok", "skipped")
    if impls["tress"]["status"] == "skipped":
        assert impls["tress"]["reason"]
    assert {case["name"] for case in scenario["cases"]} == QUEUE_CASES


def test_queues_json_every_case_measured_or_skipped(queues_json):
    (scenario,) = queues_json["scenarios"]
    for case in scenario["cases"]:
        name = case["name"]
        assert case["unit"] in ("put+get/s", "items/s"), name
        assert case["description"], name
        target = case["target"]
        if name in QUEUE_UNTARGETED:
            assert target is None, name
        elif name == QUEUE_REFERENCE_CASE:
            assert target["versus"] == QUEUE_REFERENCE
            assert target["ratio"] == pytest.approx(1 / 1.3)
            assert target["text"] == f">=1/1.3x {QUEUE_REFERENCE}"
        else:
            assert target["versus"] == "stdlib", name
            assert target["ratio"] >= 10, name

        results = case["results"]
        # the reference is measured in its one case only
        expected = {"stdlib", "tress"} | (
            {QUEUE_REFERENCE} if name == QUEUE_REFERENCE_CASE else set()
        )
        assert set(results) == expected, name
        for impl in expected - {"tress"}:
            assert results[impl]["status"] == "ok", (name, impl, results[impl])
            assert results[impl]["median"] > 0, (name, impl)

        tress = results["tress"]
        if tress["status"] == "ok":
            assert tress["median"] > 0, name
            if target is not None:
                versus = results[target["versus"]]["median"]
                assert target["achieved"] == pytest.approx(tress["median"] / versus)
                assert target["met"] in (True, False), name
        else:
            assert tress["status"] == "skipped", (name, tress)
            assert tress["reason"], name
            if target is not None:
                assert target["met"] is None


@pytest.fixture(scope="module")
def pools_json():
    proc = run_tress("bench", "--quick", "--only", "pools", "--json", *FAST)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_pools_json_structure(pools_json):
    doc = pools_json
    assert doc["errors"] == 0
    (scenario,) = doc["scenarios"]
    assert scenario["name"] == "pools"
    assert scenario["error"] is None
    impls = {impl["name"]: impl for impl in scenario["implementations"]}
    assert set(impls) == {"stdlib", "tress", POOL_REFERENCE, POOL_CEILING}
    assert impls["stdlib"]["status"] == "ok"
    assert impls["stdlib"]["source"] == "concurrent.futures + multiprocessing.pool"
    assert impls["tress"]["source"] == "tress.futures + tress.pool"
    assert impls[POOL_REFERENCE]["status"] == "ok"
    assert impls[POOL_CEILING]["status"] == "ok"
    assert impls[POOL_CEILING]["source"] == (
        "2000 sleeps split statically over 100 threading.Thread objects, no pool")
    assert any("pool efficiency relative to the machine's ceiling" in note
               for note in scenario["notes"])
    assert impls["tress"]["status"] in ("ok", "skipped")
    if impls["tress"]["status"] == "skipped":
        assert impls["tress"]["reason"]
    assert {case["name"] for case in scenario["cases"]} == POOL_CASES


def test_pools_json_every_case_measured_or_skipped(pools_json):
    (scenario,) = pools_json["scenarios"]
    for case in scenario["cases"]:
        name = case["name"]
        assert case["unit"] in ("tasks/s", "items/s"), name
        assert case["description"], name
        target = case["target"]
        if name in POOL_UNTARGETED:
            assert target is None, name
        else:
            ratio, versus = POOL_TARGETS[name]
            assert target["versus"] == versus, name
            assert target["ratio"] == pytest.approx(ratio), name
        if name == POOL_REFERENCE_CASE:
            assert target["text"] == f">=1/1.05x {POOL_REFERENCE}"

        results = case["results"]
        # the references are measured in their one case only
        expected = {"stdlib", "tress"} | (
            {POOL_REFERENCE, POOL_CEILING} if name == POOL_REFERENCE_CASE else set()
        )
        assert set(results) == expected, name
        for impl in expected - {"tress"}:
            assert results[impl]["status"] == "ok", (name, impl, results[impl])
            assert results[impl]["median"] > 0, (name, impl)
        if name == POOL_REFERENCE_CASE:
            # 2,000 tasks in the ideal 0.1 s, computed: no spread
            assert results[POOL_REFERENCE]["median"] == pytest.approx(20_000)

        tress = results["tress"]
        if tress["status"] == "ok":
            assert tress["median"] > 0, name
            if target is not None:
                versus = results[target["versus"]]["median"]
                assert target["achieved"] == pytest.approx(tress["median"] / versus)
                assert target["met"] in (True, False), name
        else:
            assert tress["status"] == "skipped", (name, tress)
            assert tress["reason"], name
            if target is not None:
                assert target["met"] is None
            if name not in POOL_THREADPOOL_CASES:
                # only tress.pool may be missing once tress.futures loads
                assert "tress.pool" not in tress["reason"], name


@pytest.fixture(scope="module")
def ipc_json():
    proc = run_tress("bench", "--quick", "--only", "ipc", "--json", *FAST)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_ipc_json_structure(ipc_json):
    doc = ipc_json
    assert doc["errors"] == 0
    (scenario,) = doc["scenarios"]
    assert scenario["name"] == "ipc"
    assert scenario["error"] is None
    impls = {impl["name"]: impl for impl in scenario["implementations"]}
    assert set(impls) == {"stdlib", "tress", IPC_PEER, IPC_REFERENCE} | IPC_EXTRAS
    assert impls["stdlib"]["source"] == "multiprocessing.Queue"
    assert impls["tress"]["source"].startswith("tress.multiprocessing.Queue(capacity=")
    for name in {"stdlib", IPC_REFERENCE} | IPC_EXTRAS:
        assert impls[name]["status"] == "ok", (name, impls[name])
    assert impls[IPC_PEER]["kind"] == "peer"
    for name in ("tress", IPC_PEER):
        assert impls[name]["status"] in ("ok", "skipped"), name
        if impls[name]["status"] == "skipped":
            assert impls[name]["reason"], name
    if impls[IPC_PEER]["status"] == "skipped":
        assert "faster-fifo is not installed" in impls[IPC_PEER]["reason"]
    assert {case["name"] for case in scenario["cases"]} == IPC_CASES
    assert any("fork" in note for note in scenario["notes"])


def test_ipc_json_every_case_measured_or_skipped(ipc_json):
    (scenario,) = ipc_json["scenarios"]
    impls = {impl["name"]: impl for impl in scenario["implementations"]}
    for case in scenario["cases"]:
        name = case["name"]
        assert case["unit"] == IPC_UNITS[name], name
        assert case["description"], name
        if name in IPC_LARGE:  # one message an iteration, counted in MiB
            assert case["ops_per_iteration"] == IPC_LARGE[name], name
        elif case["unit"] == "MiB/s":
            assert case["ops_per_iteration"] == 1, name  # one MiB per iteration
        target = case["target"]
        if name in IPC_UNTARGETED:
            assert target is None, name
        else:
            ratio, versus = IPC_TARGETS[name]
            assert target["versus"] == versus, name
            assert target["ratio"] == pytest.approx(ratio), name
        if name == IPC_REFERENCE_CASE:
            assert target["text"] == f">=1x {IPC_REFERENCE}"

        results = case["results"]
        # the reference is measured in its one case only; the peer in all
        expected = {"stdlib", "tress", IPC_PEER} | IPC_EXTRAS | (
            {IPC_REFERENCE} if name == IPC_REFERENCE_CASE else set()
        )
        assert set(results) == expected, name
        if name == IPC_NUMPY_CASE and results["stdlib"]["status"] == "skipped":
            for impl in expected:  # no NumPy: skipped, saying why
                assert results[impl]["status"] == "skipped", (name, impl)
                assert "NumPy is not installed" in results[impl]["reason"], impl
            continue
        for impl in expected - {"tress", IPC_PEER}:
            assert results[impl]["status"] == "ok", (name, impl, results[impl])
            assert results[impl]["median"] > 0, (name, impl)
            assert case["ratios"].get(impl, 1) > 0, (name, impl)
        peer = results[IPC_PEER]
        if name in IPC_PEER_NOT_APPLICABLE and impls[IPC_PEER]["status"] == "ok":
            # installed, yet it cannot carry the message: not applicable,
            # neither a failure nor a skip
            assert peer["status"] == "n/a", (name, peer)
            assert "max_size_bytes" in peer["reason"], (name, peer)
            assert case["ratios"][IPC_PEER] is None, name
        for impl in ("tress", IPC_PEER):
            if results[impl]["status"] == "n/a" and impl == IPC_PEER:
                continue  # checked above
            if results[impl]["status"] == "ok":
                assert results[impl]["median"] > 0, (name, impl)
            else:
                assert results[impl]["status"] == "skipped", (name, impl, results[impl])
                assert results[impl]["reason"], (name, impl)
                assert case["ratios"][impl] is None, (name, impl)

        if target is not None:
            mine, theirs = results["tress"], results[target["versus"]]
            if mine["status"] == "ok" and theirs["status"] == "ok":
                assert target["achieved"] == pytest.approx(mine["median"] / theirs["median"])
                assert target["met"] in (True, False), name
            else:  # e.g. faster-fifo not installed: not measured, not failed
                assert target["achieved"] is None, name
                assert target["met"] is None, name


@pytest.fixture(scope="module")
def procpool_json():
    proc = run_tress("bench", "--quick", "--only", "procpool", "--json", *FAST)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_procpool_json_structure(procpool_json):
    doc = procpool_json
    assert doc["errors"] == 0
    (scenario,) = doc["scenarios"]
    assert scenario["name"] == "procpool"
    assert scenario["error"] is None
    impls = {impl["name"]: impl for impl in scenario["implementations"]}
    assert set(impls) == {
        "stdlib", "tress", PROCPOOL_EXTRA, PROCPOOL_TRESS_POOL, PROCPOOL_REFERENCE,
        PROCPOOL_CEILING,
    } | PROCPOOL_PEERS
    assert impls["stdlib"]["source"] == "concurrent.futures.ProcessPoolExecutor(max_workers=2)"
    assert impls["tress"]["source"] == "tress.futures.ProcessPoolExecutor(max_workers=2)"
    assert impls[PROCPOOL_TRESS_POOL]["source"] == "tress.pool.Pool(processes=2)"
    assert impls[PROCPOOL_TRESS_POOL]["kind"] == "tress"
    for name in ("stdlib", PROCPOOL_EXTRA, PROCPOOL_REFERENCE, PROCPOOL_CEILING):
        assert impls[name]["status"] == "ok", (name, impls[name])
    for name in {"tress", PROCPOOL_TRESS_POOL} | PROCPOOL_PEERS:
        assert impls[name]["status"] in ("ok", "skipped"), name
        if impls[name]["status"] == "skipped":
            assert impls[name]["reason"], name
    for peer in PROCPOOL_PEERS:
        assert impls[peer]["kind"] == "peer"
        if impls[peer]["status"] == "skipped":
            assert f"{peer} is not installed" in impls[peer]["reason"], peer
    assert {case["name"] for case in scenario["cases"]} == PROCPOOL_CASES
    assert any("fork" in note for note in scenario["notes"])
    assert any("95% efficiency" in note for note in scenario["notes"])
    assert any("pool efficiency relative to the machine's ceiling" in note
               for note in scenario["notes"])


def test_procpool_json_every_case_measured_or_skipped(procpool_json):
    (scenario,) = procpool_json["scenarios"]
    for case in scenario["cases"]:
        name = case["name"]
        assert case["unit"] == PROCPOOL_UNITS[name], name
        assert case["description"], name
        target = case["target"]
        if name in PROCPOOL_UNTARGETED:
            assert target is None, name
        else:
            ratio, versus = PROCPOOL_TARGETS[name]
            assert target["versus"] == versus, name
            assert target["ratio"] == pytest.approx(ratio), name
        if name == PROCPOOL_REFERENCE_CASE:
            assert target["text"] == f">=1/1.05x {PROCPOOL_REFERENCE}"
            assert case["ops_per_iteration"] == 200, name  # the 200 tasks

        results = case["results"]
        # the references are measured in their one case only; the pools in all
        expected = {"stdlib", "tress", PROCPOOL_EXTRA, PROCPOOL_TRESS_POOL} | PROCPOOL_PEERS | (
            {PROCPOOL_REFERENCE, PROCPOOL_CEILING} if name == PROCPOOL_REFERENCE_CASE else set()
        )
        assert set(results) == expected, name
        for impl in expected - {"tress", PROCPOOL_TRESS_POOL} - PROCPOOL_PEERS:
            assert results[impl]["status"] == "ok", (name, impl, results[impl])
            assert results[impl]["median"] > 0, (name, impl)
            assert case["ratios"].get(impl, 1) > 0, (name, impl)
        for impl in {"tress", PROCPOOL_TRESS_POOL} | PROCPOOL_PEERS:
            if results[impl]["status"] == "ok":
                assert results[impl]["median"] > 0, (name, impl)
            else:
                assert results[impl]["status"] == "skipped", (name, impl, results[impl])
                assert results[impl]["reason"], (name, impl)
                assert case["ratios"][impl] is None, (name, impl)

        if target is not None:
            mine, theirs = results["tress"], results[target["versus"]]
            if mine["status"] == "ok" and theirs["status"] == "ok":
                assert target["achieved"] == pytest.approx(mine["median"] / theirs["median"])
                assert target["met"] in (True, False), name
            else:
                assert target["achieved"] is None, name
                assert target["met"] is None, name


def test_json_only_one_case():
    proc = run_tress("bench", "--only", "primitives/lock-handoff", "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    (scenario,) = json.loads(proc.stdout)["scenarios"]
    assert [case["name"] for case in scenario["cases"]] == ["lock-handoff"]


# --------------------------------------------------------------------------
# the text table


def test_text_table():
    proc = run_tress(
        "bench", "--quick", "--only", "primitives/lock", "primitives/event-pingpong", *FAST
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # header with the machine and the versions
    assert "CPUs" in out
    assert "CPython 3." in out or "python:" in out
    assert "tress:" in out
    # the table
    lines = out.splitlines()
    (header,) = [line for line in lines if line.startswith("scenario ")]
    for column in ("case", "unit", "stdlib", "tress", "tress/stdlib", "target", "met"):
        assert column in header.split()
    rows = [line.split() for line in lines if line.startswith("primitives ")]
    assert [row[1] for row in rows] == ["lock", "event-pingpong"]
    assert ">=1.2x" in rows[0] and ">=1.8x" in rows[1]
    # progress goes to stderr, not into the table
    assert "primitives/lock:" in proc.stderr
    # a skipped tress says why
    if any("skipped" in row for row in rows):
        assert "skipped:" in out


def test_text_table_reference_column():
    """The reference gets a column only when its case is run."""
    proc = run_tress(
        "bench", "--only", "queues/queue-putget", f"queues/{QUEUE_REFERENCE_CASE}", *FAST
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (header,) = [line for line in lines if line.startswith("scenario ")]
    assert header.split()[-2:] == [QUEUE_REFERENCE, f"{QUEUE_REFERENCE}/stdlib"]
    rows = {line.split()[1]: line for line in lines if line.startswith("queues ")}
    assert set(rows) == {"queue-putget", QUEUE_REFERENCE_CASE}
    assert ">=20x" in rows["queue-putget"].split()
    assert f">=1/1.3x {QUEUE_REFERENCE}" in rows[QUEUE_REFERENCE_CASE]

    proc = run_tress("bench", "--only", "queues/queue-putget", *FAST)
    assert proc.returncode == 0, proc.stderr
    (header,) = [line for line in proc.stdout.splitlines() if line.startswith("scenario ")]
    assert QUEUE_REFERENCE not in header


def test_text_table_pools_ideal_column():
    """The pools scenario's references ideal and threads get columns only
    with io-bound."""
    proc = run_tress("bench", "--only", "pools/submit", f"pools/{POOL_REFERENCE_CASE}", *FAST)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (header,) = [line for line in lines if line.startswith("scenario ")]
    assert header.split()[-4:] == [POOL_REFERENCE, f"{POOL_REFERENCE}/stdlib",
                                   POOL_CEILING, f"{POOL_CEILING}/stdlib"]
    rows = {line.split()[1]: line for line in lines if line.startswith("pools ")}
    assert set(rows) == {"submit", POOL_REFERENCE_CASE}
    assert ">=10x" in rows["submit"].split()
    assert f">=1/1.05x {POOL_REFERENCE}" in rows[POOL_REFERENCE_CASE]
    assert "20.0k" in rows[POOL_REFERENCE_CASE].split()  # the ideal, tasks/s
    assert "95% of the ideal" in proc.stdout  # the note says what the target means
    assert "machine's ceiling" in proc.stdout  # and what threads is

    proc = run_tress("bench", "--only", "pools/submit", *FAST)
    assert proc.returncode == 0, proc.stderr
    (header,) = [line for line in proc.stdout.splitlines() if line.startswith("scenario ")]
    assert POOL_REFERENCE not in header.split()
    assert POOL_CEILING not in header.split()


def test_text_table_ipc_columns():
    """The ipc scenario's extra channels and peer get columns; its os.pipe
    reference only with ping-pong; a skipped faster-fifo says why."""
    proc = run_tress("bench", "--only", "ipc/64B", f"ipc/{IPC_REFERENCE_CASE}", *FAST)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (header,) = [line for line in lines if line.startswith("scenario ")]
    columns = header.split()
    for name in sorted(IPC_EXTRAS) + [IPC_PEER]:
        assert name in columns and f"{name}/stdlib" in columns, name
    assert columns[-2:] == [IPC_REFERENCE, f"{IPC_REFERENCE}/stdlib"]
    rows = {line.split()[1]: line for line in lines if line.startswith("ipc ")}
    assert set(rows) == {"64B", IPC_REFERENCE_CASE}
    assert ">=10x" in rows["64B"].split()
    assert f">=1x {IPC_REFERENCE}" in rows[IPC_REFERENCE_CASE]
    if f"{IPC_PEER} in ipc:" in proc.stdout:  # skipped, with the reason
        assert "skipped:" in proc.stdout
    assert "start method fork" in proc.stdout  # the note says how children start

    proc = run_tress("bench", "--only", "ipc/1MiB", *FAST)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (header,) = [line for line in lines if line.startswith("scenario ")]
    assert IPC_REFERENCE not in header.split()
    (row,) = [line for line in lines if line.startswith("ipc ")]
    assert "MiB/s" in row and f">=3x {IPC_PEER}" in row


def test_text_table_procpool_columns():
    """The procpool scenario's multiprocessing.Pool, tress.pool.Pool and peers
    get columns; its references ideal and processes only with cpu (not run
    here: it takes seconds)."""
    proc = run_tress("bench", "--only", "procpool/round-trip", "procpool/start", *FAST)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (header,) = [line for line in lines if line.startswith("scenario ")]
    columns = header.split()
    for name in [PROCPOOL_EXTRA, PROCPOOL_TRESS_POOL] + sorted(PROCPOOL_PEERS):
        assert name in columns and f"{name}/stdlib" in columns, name
    assert PROCPOOL_REFERENCE not in columns
    assert PROCPOOL_CEILING not in columns
    rows = {line.split()[1]: line for line in lines if line.startswith("procpool ")}
    assert set(rows) == {"round-trip", "start"}
    assert "round trips/s" in rows["round-trip"] and ">=10x" in rows["round-trip"].split()
    assert "starts/s" in rows["start"] and ">=1x" in rows["start"].split()
    for peer in PROCPOOL_PEERS:
        if f"{peer} in procpool:" in proc.stdout:  # skipped, with the reason
            assert f"{peer} is not installed" in proc.stdout
    assert "start method fork" in proc.stdout  # the note says how workers start
    assert "shutdown after it is not timed" in proc.stdout


def test_quiet_has_no_progress():
    proc = run_tress("bench", "--only", "primitives/lock", "-q", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


# --------------------------------------------------------------------------
# the chart


def test_plot(tmp_path):
    chart = tmp_path / "ratios.svg"
    proc = run_tress("bench", "--only", "primitives/lock", "--plot", str(chart), *FAST)
    assert "primitives" in proc.stdout  # the results are printed either way
    if _has_matplotlib():
        assert proc.returncode == 0, proc.stderr
        assert chart.read_text().lstrip().startswith("<?xml")
    else:
        assert proc.returncode == 2
        assert "matplotlib is not installed" in proc.stderr
        assert not chart.exists()


# --------------------------------------------------------------------------
# robustness


def test_command_line_does_not_import_the_implementations():
    proc = run_snippet(
        """
        import sys
        import tress
        before = set(sys.modules)
        import tress.__main__
        tress.__main__.build_parser()
        from tress.bench.registry import load_scenarios
        assert all(hasattr(s, "cases") for s in load_scenarios())
        new = sorted(set(sys.modules) - before)
        bad = [m for m in new if m in ("tress.threading", "tress.queue", "tress._tress")]
        assert not bad, bad
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_failing_implementations_are_reported_not_fatal():
    """A stuck handoff raises within its timeout; others keep running."""
    proc = run_snippet(
        """
        import json, threading, time, types
        from tress.bench import threads
        from tress.bench.measure import Settings, run_scenario
        from tress.bench.model import Implementation, Scenario
        from tress.bench.scenarios.primitives import SCENARIO

        threads.HANDOFF_TIMEOUT = 0.2

        class DeafEvent:                      # wait() never sees set()
            def set(self): pass
            def clear(self): pass
            def is_set(self): return False
            def wait(self, timeout=None):
                time.sleep(timeout or 0)
                return False

        class NeverReleasedLock:              # release() does nothing
            def __init__(self): self._lock = threading.Lock()
            def acquire(self, blocking=True, timeout=-1):
                return self._lock.acquire(blocking, timeout)
            def release(self): pass

        broken = types.SimpleNamespace(__name__="broken", Event=DeafEvent,
                                       Lock=NeverReleasedLock)
        def missing():
            raise ImportError("not installed here")

        scenario = Scenario(
            "p", "test",
            (SCENARIO.implementations[0],
             Implementation("broken", "peer", lambda: broken),
             Implementation("missing", "peer", missing)),
            SCENARIO.cases,
        )
        started = time.monotonic()
        result = run_scenario(scenario, Settings(0.01, 1),
                              ["event", "barrier", "event-pingpong", "lock-handoff"])
        elapsed = time.monotonic() - started
        print(json.dumps({"elapsed": elapsed, "threads": threading.active_count(),
                          "result": result.to_dict()}))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["threads"] == 1  # every partner thread was joined
    assert out["elapsed"] < 30
    cases = {case["name"]: case["results"] for case in out["result"]["cases"]}
    assert cases["event"]["broken"]["status"] == "ok"
    assert cases["barrier"]["broken"]["status"] == "skipped"
    assert "has no Barrier" in cases["barrier"]["broken"]["reason"]
    for name in ("event-pingpong", "lock-handoff"):
        assert cases[name]["stdlib"]["status"] == "ok"
        assert cases[name]["broken"]["status"] == "error"
        assert "HandoffError" in cases[name]["broken"]["reason"]
    for results in cases.values():
        assert results["missing"] == {
            "status": "skipped",
            "reason": "ImportError: not installed here",
        }


def test_failing_queues_are_reported_not_fatal():
    """A lost item, a bounded put that never finds room and a join() that
    never returns each fail their case within the timeouts."""
    proc = run_snippet(
        """
        import json, queue, threading, time, types
        from tress.bench import threads
        from tress.bench.measure import Settings, run_scenario
        from tress.bench.model import Implementation, Scenario
        from tress.bench.scenarios.queues import SCENARIO

        threads.HANDOFF_TIMEOUT = 0.2

        class Lossy(queue.Queue):             # drops the 1st, 51st, ... item
            puts = 0
            def put(self, item, block=True, timeout=None):
                self.puts += 1
                if self.puts % 50 != 1:
                    super().put(item, block, timeout)

        class NeverFull(queue.Queue):         # a bounded put never finds room
            def put(self, item, block=True, timeout=None):
                if self.maxsize and self.qsize() >= 10:
                    # at once: a sleep of `timeout` would race the
                    # consumer's equal timeout for the first error reported
                    raise queue.Full
                super().put(item, block, timeout)

        class NeverJoins(queue.Queue):        # task_done() does nothing
            def task_done(self):
                pass

        def broken(cls):
            return lambda: types.SimpleNamespace(
                __name__="broken", Queue=cls, Empty=queue.Empty, Full=queue.Full)

        scenario = Scenario(
            "q", "test",
            (SCENARIO.implementations[0],
             Implementation("lossy", "peer", broken(Lossy)),
             Implementation("neverfull", "peer", broken(NeverFull)),
             Implementation("neverjoins", "peer", broken(NeverJoins))),
            SCENARIO.cases,
        )
        started = time.monotonic()
        result = run_scenario(scenario, Settings(0.01, 1), [
            "queue-putget", "queue-1p1c", "queue-4p4c", "queue-bounded",
            "queue-join", "lifo-putget"])
        elapsed = time.monotonic() - started
        print(json.dumps({"elapsed": elapsed, "threads": threading.active_count(),
                          "result": result.to_dict()}))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # the main thread, and the one stuck in NeverJoins' join() (a daemon)
    assert out["threads"] == 2
    assert out["elapsed"] < 30
    cases = {case["name"]: case["results"] for case in out["result"]["cases"]}
    for results in cases.values():
        assert results["stdlib"]["status"] == "ok"
    assert "raised Empty" in cases["queue-putget"]["lossy"]["reason"]
    for name in ("queue-1p1c", "queue-4p4c", "queue-bounded", "queue-join"):
        assert cases[name]["lossy"]["status"] == "error", name
        assert "HandoffError" in cases[name]["lossy"]["reason"], name
    assert cases["queue-1p1c"]["neverfull"]["status"] == "ok"
    assert cases["queue-bounded"]["neverfull"]["status"] == "error"
    assert "no room in the queue" in cases["queue-bounded"]["neverfull"]["reason"]
    assert cases["queue-putget"]["neverjoins"]["status"] == "ok"
    assert cases["queue-join"]["neverjoins"]["status"] == "error"
    assert "join-producer" in cases["queue-join"]["neverjoins"]["reason"]
    assert cases["lifo-putget"]["lossy"]["status"] == "skipped"
    assert "has no LifoQueue" in cases["lifo-putget"]["lossy"]["reason"]


def test_failing_pools_are_reported_not_fatal():
    """A future that never completes, an executor whose shutdown never
    returns and a missing ThreadPool each fail (or skip) their case within
    the timeouts; the stdlib keeps running."""
    proc = run_snippet(
        """
        import concurrent.futures as cf, json, threading, time, types
        from multiprocessing.pool import ThreadPool
        from tress.bench import threads
        from tress.bench.measure import Settings, run_scenario
        from tress.bench.model import Implementation, Scenario
        from tress.bench.scenarios.pools import SCENARIO

        threads.HANDOFF_TIMEOUT = 0.2

        class Lossy(cf.ThreadPoolExecutor):   # every 50th future never completes
            submits = 0
            def submit(self, fn, /, *args, **kwargs):
                self.submits += 1
                if self.submits % 50 == 0:
                    return cf.Future()
                return super().submit(fn, *args, **kwargs)

        class NeverStops(cf.ThreadPoolExecutor):  # shutdown() never returns
            def shutdown(self, wait=True, *, cancel_futures=False):
                super().shutdown(wait=False)
                threading.Event().wait()

        def broken(cls, pool=None):
            return lambda: types.SimpleNamespace(
                __name__="broken",
                futures=types.SimpleNamespace(ThreadPoolExecutor=cls,
                                              as_completed=cf.as_completed),
                ThreadPool=pool, pool_problem="no ThreadPool here")

        scenario = Scenario(
            "p", "test",
            (SCENARIO.implementations[0],
             Implementation("lossy", "peer", broken(Lossy)),
             Implementation("neverstops", "peer", broken(NeverStops, ThreadPool))),
            SCENARIO.cases,
        )
        started = time.monotonic()
        result = run_scenario(scenario, Settings(0.01, 1),
                              ["submit", "map", "as-completed", "pool-map"])
        elapsed = time.monotonic() - started
        print(json.dumps({"elapsed": elapsed, "result": result.to_dict()}))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["elapsed"] < 30
    cases = {case["name"]: case["results"] for case in out["result"]["cases"]}
    for results in cases.values():
        assert results["stdlib"]["status"] == "ok"
    for name in ("submit", "map", "as-completed"):
        assert cases[name]["lossy"]["status"] == "error", name
        assert "TimeoutError" in cases[name]["lossy"]["reason"], name
        assert cases[name]["neverstops"]["status"] == "error", name
        assert "executor shutdown still running" in cases[name]["neverstops"]["reason"]
    assert cases["pool-map"]["lossy"]["status"] == "skipped"
    assert "no ThreadPool here" in cases["pool-map"]["lossy"]["reason"]
    assert cases["pool-map"]["neverstops"]["status"] == "ok"


def test_not_applicable_is_shown_as_such_not_as_a_failure():
    """An implementation whose set-up raises NotApplicable (a case outside
    what it is made for) is "n/a" in the table, listed with its reason under
    "not applicable", and counts neither as an error nor as a skip."""
    proc = run_snippet(
        """
        import json
        from tress.bench.measure import Settings, run_scenario
        from tress.bench.model import Case, Implementation, NotApplicable, Scenario
        from tress.bench.report import render_text
        from tress.bench.results import count_errors

        def setup(impl):
            if impl == "bounded":
                raise NotApplicable("bounded carries 64 MiB at most")
            return lambda n: 0.001 * n

        scenario = Scenario(
            "s", "test",
            (Implementation("stdlib", "stdlib", lambda: "stdlib"),
             Implementation("tress", "tress", lambda: "tress"),
             Implementation("bounded", "peer", lambda: "bounded")),
            (Case("big", "a big one", "MiB/s", setup),),
        )
        result = run_scenario(scenario, Settings(0.01, 1))
        text = render_text([result], {}, Settings(0.01, 1), {"command": "x"})
        print(json.dumps({"errors": count_errors([result]), "text": text,
                          "result": result.to_dict()}))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["errors"] == 0
    (case,) = out["result"]["cases"]
    assert case["results"]["bounded"] == {
        "status": "n/a", "reason": "NotApplicable: bounded carries 64 MiB at most"}
    lines = out["text"].splitlines()
    (row,) = [line for line in lines if line.startswith("s ")]
    assert row.split()[-2:] == ["n/a", "-"]
    assert "not applicable (n/a):" in lines
    assert "  bounded in s/big: NotApplicable: bounded carries 64 MiB at most" in lines
    assert "skipped:" not in lines and "ERRORS:" not in lines


def test_failing_ipc_is_reported_not_fatal():
    """A lost, a torn or a refused message, a child that never exits and a
    receive that never returns each fail their case within the timeouts;
    the stdlib keeps running and no child process is left behind."""
    proc = run_snippet(
        """
        import json, multiprocessing, os, signal, threading, time, types
        from tress.bench import threads
        from tress.bench.measure import Settings, run_scenario
        from tress.bench.model import Implementation, Scenario
        from tress.bench.scenarios import ipc

        threads.HANDOFF_TIMEOUT = 0.2
        PARENT = os.getpid()

        def broken(make, change):
            # a channel whose put, in the child only, goes through change
            def channel(size, timeout):
                ch = make(size, timeout)
                count = [0]
                def put(obj):
                    if os.getpid() == PARENT:
                        return ch.put(obj)
                    count[0] += 1
                    return change(ch.put, obj, count[0])
                return ipc._Channel(put, ch.get, ch.close)
            return lambda: types.SimpleNamespace(__name__="broken", channel=channel,
                                                 messages=True)

        def lossy(put, obj, i):       # the 7th message is lost
            if i != 7:
                put(obj)

        def torn(put, obj, i):        # every message loses its last byte
            put(obj[:-1])

        def refusing(put, obj, i):    # the 10th put raises
            if i == 10:
                raise ValueError("refused")
            put(obj)

        def stubborn(put, obj, i):    # the child ignores SIGTERM, never exits
            if i == 1:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                threading.Thread(target=threading.Event().wait).start()
            put(obj)

        def mute(put, obj, i):        # nothing arrives: SimpleQueue.get waits forever
            pass

        scenario = Scenario(
            "i", "test",
            (ipc.SCENARIO.implementations[0],
             Implementation("lossy", "peer", broken(ipc._mp_queue, lossy)),
             Implementation("torn", "peer", broken(ipc._mp_queue, torn)),
             Implementation("refusing", "peer", broken(ipc._mp_queue, refusing)),
             Implementation("stubborn", "peer", broken(ipc._mp_queue, stubborn)),
             Implementation("mute", "peer", broken(ipc._mp_simple_queue, mute))),
            ipc.SCENARIO.cases,
        )
        started = time.monotonic()
        result = run_scenario(scenario, Settings(0.01, 1), ["64B", "ping-pong"])
        elapsed = time.monotonic() - started
        print(json.dumps({"elapsed": elapsed,
                          "children": len(multiprocessing.active_children()),
                          "result": result.to_dict()}))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["elapsed"] < 30
    assert out["children"] == 0  # every child stopped, killed if need be
    cases = {case["name"]: case["results"] for case in out["result"]["cases"]}
    assert set(cases) == {"64B", "ping-pong"}
    for name, results in cases.items():
        assert results["stdlib"]["status"] == "ok", name
        for impl in ("lossy", "torn", "refusing", "stubborn", "mute"):
            assert results[impl]["status"] == "error", (name, impl)
        reasons = {impl: r.get("reason", "") for impl, r in results.items()}
        assert "child process (broken) failed" in reasons["refusing"], name
        assert "ValueError: refused" in reasons["refusing"], name
        assert "did not stop" in reasons["stubborn"], name
        assert "killed" in reasons["stubborn"], name
        assert "batch still running" in reasons["mute"], name
    assert "a message lost, duplicated" in cases["64B"]["lossy"]["reason"]
    assert "expected 64 bytes" in cases["64B"]["torn"]["reason"]
    assert "no reply within" in cases["ping-pong"]["lossy"]["reason"]
    assert "reply differs" in cases["ping-pong"]["torn"]["reason"]


def test_failing_procpools_are_reported_not_fatal():
    """A future that never completes and a pool whose shutdown never returns
    each fail their case within the timeouts, the workers of the latter are
    terminated; the stdlib keeps running and no child process is left."""
    proc = run_snippet(
        """
        import concurrent.futures as cf, json, multiprocessing, threading, time, types
        from tress.bench import threads
        from tress.bench.measure import Settings, run_scenario
        from tress.bench.model import Implementation, Scenario
        from tress.bench.scenarios import procpool

        threads.HANDOFF_TIMEOUT = 0.2

        class Lossy(cf.ProcessPoolExecutor):   # every 20th future never completes
            submits = 0
            def submit(self, fn, /, *args, **kwargs):
                self.submits += 1
                if self.submits % 20 == 0:
                    return cf.Future()
                return super().submit(fn, *args, **kwargs)

        class NeverStops(cf.ProcessPoolExecutor):  # shutdown() never returns
            def shutdown(self, wait=True, *, cancel_futures=False):
                threading.Event().wait()            # (its workers stay up)

        def broken(cls):
            def make():
                ex = cls(max_workers=procpool.WORKERS, mp_context=procpool._context())
                return procpool._executor_pool(cls.__name__, ex)
            return lambda: types.SimpleNamespace(__name__="broken", make=make)

        scenario = Scenario(
            "pp", "test",
            (procpool.SCENARIO.implementations[0],
             Implementation("lossy", "peer", broken(Lossy)),
             Implementation("neverstops", "peer", broken(NeverStops))),
            procpool.SCENARIO.cases,
        )
        started = time.monotonic()
        result = run_scenario(scenario, Settings(0.01, 1), ["map", "round-trip", "start"])
        elapsed = time.monotonic() - started
        print(json.dumps({"elapsed": elapsed,
                          "children": len(multiprocessing.active_children()),
                          "result": result.to_dict()}))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["elapsed"] < 60
    assert out["children"] == 0  # every worker stopped, terminated if need be
    cases = {case["name"]: case["results"] for case in out["result"]["cases"]}
    assert set(cases) == {"map", "round-trip", "start"}
    for name, results in cases.items():
        assert results["stdlib"]["status"] == "ok", (name, results["stdlib"])
        assert results["neverstops"]["status"] == "error", name
        reason = results["neverstops"]["reason"]
        assert "shutdown failed" in reason and "terminated" in reason, (name, reason)
    for name in ("map", "round-trip"):
        assert cases[name]["lossy"]["status"] == "error", name
        assert "TimeoutError" in cases[name]["lossy"]["reason"], name
    assert cases["start"]["lossy"]["status"] == "ok"  # its first task is never lost
