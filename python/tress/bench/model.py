"""What a benchmark is made of: implementations, cases, scenarios, targets.

A *scenario* (one module under ``tress.bench.scenarios``, listed in
``tress.bench.registry``) is a named group of *cases* measured on several
*implementations* of the same API: ``stdlib``, ``tress`` and the peers that
happen to be installed.

A case's ``setup`` receives the loaded implementation (for the primitives:
the module ``threading`` or ``tress.threading``) and returns a *runner*, or
a context manager that yields one (for cases that own resources such as a
pool, to be closed after the last trial).  ``runner(n)`` performs ``n``
iterations of the case, each of ``case.ops_per_iteration`` operations, and
returns the seconds they took, measured with ``time.perf_counter`` around
the loop only: thread start-up and other set-up stay outside the timed
region.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

#: ``runner(n) -> seconds``: run ``n`` iterations, return the timed seconds.
Runner = Callable[[int], float]

#: ``setup(impl) -> runner`` or a context manager yielding the runner.
Setup = Callable[[Any], Runner | AbstractContextManager[Runner]]

#: Implementation kinds: the baseline, the product and everything else.
STDLIB = "stdlib"
TRESS = "tress"
PEER = "peer"


class Unsupported(Exception):
    """Raised by a case's set-up when an implementation lacks the feature.

    The implementation is then reported as *skipped* for that case (as it
    is when set-up raises ImportError or NotImplementedError).
    """


class NotApplicable(Unsupported):
    """Raised by a case's set-up when the case lies outside what the
    implementation is made for, by design rather than by a missing feature
    or package (faster-fifo's messages are bounded by its ``max_size_bytes``:
    it cannot carry a 256 MiB message at all).

    The implementation is then reported as *not applicable* (``n/a``) for
    that case, with the reason: neither a skip nor a failure.
    """


@dataclass(frozen=True)
class Implementation:
    """One implementation of a scenario's API.

    ``load()`` imports it lazily (only when the scenario runs) and returns
    the object handed to each case's ``setup``.  Any exception it raises
    marks the implementation *skipped* for the whole scenario, with the
    exception as the reason.
    """

    name: str
    kind: str
    load: Callable[[], Any]
    #: what is loaded, for humans (e.g. the module name)
    source: str = ""
    #: a yardstick rather than a contender: measured only in the cases whose
    #: target names it (``Target.versus``) or that list it
    #: (``Case.references``), e.g. the stdlib's C
    #: ``queue.SimpleQueue`` as the floor for tress's ``Queue``
    reference: bool = False


def module_implementation(name: str, kind: str, module: str) -> Implementation:
    """An implementation that is simply an importable module."""
    return Implementation(
        name=name,
        kind=kind,
        load=lambda: importlib.import_module(module),
        source=module,
    )


@dataclass(frozen=True)
class Target:
    """A performance target: ``tress / versus >= ratio`` (from DESIGN.md).

    ``versus`` names an implementation, or is ``"best"`` for the fastest
    non-tress implementation measured in the same run.
    """

    ratio: float
    versus: str = STDLIB

    def describe(self) -> str:
        """Short text such as ``>=10x``, ``>=1x best`` or ``>=1/1.3x X``.

        A ratio below 1 ("within 1.3x of X") is written as its inverse.
        """
        ratio = f"{self.ratio:g}" if self.ratio >= 1 else f"1/{1 / self.ratio:.3g}"
        text = f">={ratio}x"
        return text if self.versus == STDLIB else f"{text} {self.versus}"


@dataclass(frozen=True)
class Case:
    """One measured operation of a scenario."""

    #: short identifier, unique within the scenario (used by ``--only``)
    name: str
    #: what one operation is, in words
    description: str
    #: throughput unit, e.g. ``ops/s`` or ``round trips/s``
    unit: str
    #: ``setup(impl) -> runner`` (see the module docstring)
    setup: Setup
    #: operations performed by one iteration of the runner (loop unrolling)
    ops_per_iteration: int = 1
    #: the DESIGN.md target for tress, if any
    target: Target | None = None
    #: further references (:attr:`Implementation.reference`) measured in this
    #: case besides the one its target names, shown beside it (no target)
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A named group of cases measured on the same implementations."""

    name: str
    description: str
    implementations: tuple[Implementation, ...]
    cases: tuple[Case, ...]
    #: the implementation ratios are computed against
    baseline: str = STDLIB
    #: free-form notes shown with the results (e.g. how a case is built)
    notes: tuple[str, ...] = field(default=())

    def implementations_for(self, case: Case) -> tuple[Implementation, ...]:
        """The implementations ``case`` is measured on: every one except the
        references (:attr:`Implementation.reference`) neither its target
        names nor :attr:`Case.references` lists."""
        versus = case.target.versus if case.target is not None else None
        return tuple(
            impl for impl in self.implementations
            if not impl.reference or impl.name == versus or impl.name in case.references
        )

    def case(self, name: str) -> Case:
        """The case called ``name`` (``KeyError`` if there is none)."""
        for case in self.cases:
            if case.name == name:
                return case
        raise KeyError(name)
