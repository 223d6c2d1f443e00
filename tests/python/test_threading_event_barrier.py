"""Event set/clear generation semantics; Barrier abort, reset, failing
action, timeouts, indices."""

import sys
import threading
import time

import pytest

BrokenBarrierError = threading.BrokenBarrierError


def start(target, *args, name=None):
    t = threading.Thread(target=target, args=args, name=name)
    t.start()
    return t


# --------------------------------------------------------------------------
# Event


def test_event_set_clear_is_set(mod):
    ev = mod.Event()
    assert ev.is_set() is False
    ev.set()
    ev.set()
    assert ev.is_set() is True
    ev.clear()
    ev.clear()
    assert ev.is_set() is False


def _blocked_waiters(ev, n, wait_blocked, timeout=30.0):
    """Start n threads in ev.wait(timeout); return once all are inside it."""
    results = []
    lines = {}

    def waiter(i):
        lines[i] = sys._getframe().f_lineno + 1
        results.append((i, ev.wait(timeout)))

    threads = [start(waiter, i, name=f"ev-waiter-{i}") for i in range(n)]
    deadline = time.monotonic() + 10
    for i, t in enumerate(threads):
        while i not in lines:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        wait_blocked(t, "waiter", lines[i])
    if isinstance(ev, threading.Event):
        # stdlib reference (a Python class): registered in its Condition
        cond = ev._cond
        while True:
            with cond:
                if len(cond._waiters) >= n:
                    break
            assert time.monotonic() < deadline, "stdlib Event waiters did not register"
            time.sleep(0.001)
    return threads, results


def test_event_set_wakes_all(mod, wait_blocked, join_all):
    ev = mod.Event()
    threads, results = _blocked_waiters(ev, 6, wait_blocked)
    assert results == []
    ev.set()
    join_all(threads)
    assert sorted(results) == [(i, True) for i in range(6)]


def test_event_set_then_clear_still_wakes_waiters(mod, wait_blocked, join_all):
    # gh-57711: waiters that were waiting when set() ran return True even if
    # clear() ran before they got to look at the flag.
    ev = mod.Event()
    for _ in range(3):
        threads, results = _blocked_waiters(ev, 5, wait_blocked)
        ev.set()
        ev.clear()
        join_all(threads)
        assert sorted(results) == [(i, True) for i in range(5)]
        assert ev.is_set() is False
        # a new wait after the clear blocks again
        assert ev.wait(0.05) is False


def test_event_waiter_after_clear_blocks_until_next_set(mod, wait_blocked, join_all):
    ev = mod.Event()
    ev.set()
    assert ev.wait(1) is True
    ev.clear()
    threads, results = _blocked_waiters(ev, 2, wait_blocked)
    time.sleep(0.1)  # negative check: the earlier set() is not remembered
    assert results == []
    ev.set()
    join_all(threads)
    assert sorted(results) == [(0, True), (1, True)]


def test_event_timed_waiters_vs_set(mod, wait_blocked, join_all):
    # waiters with a long timeout are woken by set(), not by the timeout
    ev = mod.Event()
    threads, results = _blocked_waiters(ev, 3, wait_blocked, timeout=20)
    t0 = time.monotonic()
    ev.set()
    join_all(threads)
    assert time.monotonic() - t0 < 10
    assert all(r for _, r in results)


# --------------------------------------------------------------------------
# Barrier


def run_parties(barrier, n, body, join_all):
    out, errors = [], []

    def party(i):
        try:
            out.append(body(i))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [start(party, i, name=f"party-{i}") for i in range(n)]
    join_all(threads)
    return out, errors


def test_barrier_indices(mod, join_all):
    b = mod.Barrier(5)
    out, errors = run_parties(b, 5, lambda i: b.wait(30), join_all)
    assert errors == []
    assert sorted(out) == [0, 1, 2, 3, 4]
    assert b.n_waiting == 0 and not b.broken


def test_barrier_action_runs_once_per_round(mod, join_all):
    calls = []
    b = mod.Barrier(3, action=lambda: calls.append(b.n_waiting))

    def body(i):
        return [b.wait(30) for _ in range(4)]

    out, errors = run_parties(b, 3, body, join_all)
    assert errors == []
    assert len(calls) == 4
    for round_ in zip(*out, strict=True):
        assert sorted(round_) == [0, 1, 2]


def test_barrier_abort_releases_waiters(mod, wait_until, join_all):
    b = mod.Barrier(4)
    threads_out = []

    def body(i):
        try:
            b.wait(30)
            return "passed"
        except BrokenBarrierError:
            return "broken"

    t = threading.Thread(target=lambda: threads_out.extend(run_parties(b, 3, body, join_all)))
    t.start()
    wait_until(lambda: b.n_waiting == 3, message="3 parties waiting")
    b.abort()
    join_all([t])
    out, errors = threads_out
    assert errors == []
    assert out == ["broken"] * 3
    assert b.broken is True
    assert b.n_waiting == 0
    with pytest.raises(BrokenBarrierError):
        b.wait(1)
    assert repr(b).endswith(": broken>")
    b.reset()
    assert b.broken is False
    out, errors = run_parties(b, 4, body, join_all)
    assert errors == [] and out == ["passed"] * 4


def test_barrier_reset_while_waiting(mod, wait_until, join_all):
    b = mod.Barrier(3)
    holder = []

    def body(i):
        try:
            b.wait(30)
            return "passed"
        except BrokenBarrierError:
            return "broken"

    t = threading.Thread(target=lambda: holder.extend(run_parties(b, 2, body, join_all)))
    t.start()
    wait_until(lambda: b.n_waiting == 2, message="2 parties waiting")
    b.reset()
    join_all([t])
    out, errors = holder
    assert errors == [] and out == ["broken", "broken"]
    # reset() leaves the barrier usable (not broken)
    assert b.broken is False
    out, errors = run_parties(b, 3, lambda i: b.wait(30), join_all)
    assert errors == [] and sorted(out) == [0, 1, 2]


def test_barrier_action_exception(mod, join_all):
    class Boom(Exception):
        pass

    def action():
        raise Boom("from action")

    b = mod.Barrier(3, action=action)

    def body(i):
        try:
            b.wait(30)
            return "passed"
        except BrokenBarrierError:
            return "broken"

    out, errors = run_parties(b, 3, body, join_all)
    # the thread that ran the action gets its exception; the others see
    # the barrier broken
    assert len(errors) == 1 and isinstance(errors[0], Boom), errors
    assert str(errors[0]) == "from action"
    assert out == ["broken", "broken"]
    assert b.broken is True


def test_barrier_timeout_breaks_for_everyone(mod, wait_until, join_all):
    b = mod.Barrier(3)
    results = []

    def patient():
        try:
            b.wait(30)
            results.append("passed")
        except BrokenBarrierError:
            results.append("broken")

    t1 = start(patient)
    wait_until(lambda: b.n_waiting == 1, message="a patient waiter")
    t0 = time.monotonic()
    with pytest.raises(BrokenBarrierError):
        b.wait(0.05)  # the impatient one times out and breaks the barrier
    assert time.monotonic() - t0 >= 0.05
    join_all([t1])
    assert results == ["broken"]
    assert b.broken is True


def test_barrier_parties_and_waiting(mod, wait_until, join_all):
    b = mod.Barrier(3)
    t1 = start(b.wait, 30)
    t2 = start(b.wait, 30)
    try:
        wait_until(lambda: b.n_waiting == 2, message="2 waiters")
        assert b.parties == 3
    finally:
        idx = b.wait(30)
        join_all([t1, t2])
    assert idx in (0, 1, 2)
    assert b.n_waiting == 0
