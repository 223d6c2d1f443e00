"""Bounded helpers for cases that run several threads.

A benchmark must never hang: every blocking call in a thread case takes a
timeout (:data:`HANDOFF_TIMEOUT`), a wait that times out raises
:class:`HandoffError`, and :func:`run_with_partner` always joins its thread
(with a deadline) and re-raises whatever the thread raised; :func:`bounded` runs one call
with a deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: seconds any single wait in a thread case may take before it is an error
HANDOFF_TIMEOUT = 5.0


class HandoffError(RuntimeError):
    """A multi-thread case got stuck or one of its threads failed."""


class StillRunning(HandoffError):
    """A call :func:`bounded` waited for did not end in time."""


def bounded(call: Callable[[], Any], what: str, limit: float) -> Any:
    """``call()`` in a daemon thread, waited for at most ``limit`` seconds:
    its result, or its exception re-raised; :class:`StillRunning` if it has
    not ended by then (the thread is left behind)."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"bench-{what}", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise StillRunning(f"{what} still running after {limit:g} s (left behind as a daemon)")
    if errors:
        raise errors[0]
    return out[0]


def stuck(who: str, what: str) -> HandoffError:
    """The error for a wait of ``who`` for ``what`` that timed out."""
    return HandoffError(f"{who}: no {what} within {HANDOFF_TIMEOUT:g} s")


def run_with_partner(
    main: Callable[[], float],
    partner: Callable[[], None],
    *,
    name: str = "tress-bench-partner",
) -> float:
    """Run ``partner`` in a new thread and ``main`` in this one.

    Returns what ``main`` returns (its timed seconds).  The partner thread
    is a daemon and is always joined, within ``2 * HANDOFF_TIMEOUT``
    seconds (its own waits time out before that); an exception in either
    thread, or a partner that does not finish, raises :class:`HandoffError`.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            partner()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        elapsed = main()
    except BaseException as exc:
        thread.join(2 * HANDOFF_TIMEOUT)
        if errors and isinstance(exc, HandoffError):
            # the partner's failure is usually why main got stuck
            raise HandoffError(f"{exc}; partner thread failed") from errors[0]
        raise
    thread.join(2 * HANDOFF_TIMEOUT)
    if thread.is_alive():
        raise HandoffError(
            f"partner thread {name!r} still running {2 * HANDOFF_TIMEOUT:g} s "
            "after the timed loop ended"
        )
    if errors:
        raise HandoffError("partner thread failed") from errors[0]
    return elapsed
