"""Results of a benchmark run, and their JSON form.

Per case and implementation an :class:`ImplResult` holds one throughput per
trial (operations per second); the median of the trials is the reported
figure.  Ratios are medians divided by the baseline's median.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from tress.bench.model import STDLIB, TRESS, Case, Scenario

OK = "ok"
SKIPPED = "skipped"
ERROR = "error"
#: the case lies outside what the implementation is made for
#: (:class:`tress.bench.model.NotApplicable`)
NOT_APPLICABLE = "n/a"


@dataclass
class ImplResult:
    """The measurements of one case on one implementation."""

    status: str = OK
    #: ops/s of each trial, in trial order
    trials: list[float] = field(default_factory=list)
    #: why the implementation was skipped or failed
    reason: str | None = None
    #: timed batches and timed seconds over all trials (calibration excluded)
    batches: int = 0
    seconds: float = 0.0
    #: iterations per batch chosen by calibration
    batch_iterations: int = 0

    @property
    def median(self) -> float | None:
        """Median ops/s over the trials, ``None`` unless measured."""
        if self.status != OK or not self.trials:
            return None
        return statistics.median(self.trials)

    @property
    def spread(self) -> float | None:
        """Half the min-max range of the trials, relative to the median."""
        median = self.median
        if median is None or median <= 0 or len(self.trials) < 2:
            return None
        return (max(self.trials) - min(self.trials)) / 2 / median

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status}
        if self.status == OK:
            data.update(
                median=self.median,
                trials=list(self.trials),
                spread=self.spread,
                batches=self.batches,
                seconds=self.seconds,
                batch_iterations=self.batch_iterations,
            )
        else:
            data["reason"] = self.reason
        return data


@dataclass
class CaseResult:
    """One case measured on every implementation of its scenario."""

    case: Case
    baseline: str
    results: dict[str, ImplResult] = field(default_factory=dict)

    def ratio(self, name: str, versus: str | None = None) -> float | None:
        """``median(name) / median(versus)`` (versus the baseline by default).

        ``versus="best"`` compares with the fastest measured implementation
        other than tress.
        """
        mine = self._median(name)
        if versus == "best":
            others = [
                r.median
                for n, r in self.results.items()
                if n != TRESS and r.median is not None
            ]
            theirs = max(others) if others else None
        else:
            theirs = self._median(versus or self.baseline)
        if mine is None or not theirs:
            return None
        return mine / theirs

    def paired_ratio(self, name: str) -> float | None:
        """Median over trials of ``trial(name) / trial(baseline)``.

        Each trial measures the implementations interleaved, so this pairs
        figures taken under the same conditions; it is steadier than the
        ratio of medians when the machine's load changes between trials.
        """
        mine, theirs = self.results.get(name), self.results.get(self.baseline)
        if mine is None or theirs is None or mine.median is None or theirs.median is None:
            return None
        pairs = [m / t for m, t in zip(mine.trials, theirs.trials, strict=False) if t > 0]
        return statistics.median(pairs) if pairs else None

    def target_met(self) -> bool | None:
        """Whether tress meets the case's target; ``None`` if unknown."""
        target = self.case.target
        if target is None:
            return None
        ratio = self.ratio(TRESS, target.versus)
        return None if ratio is None else ratio >= target.ratio

    def _median(self, name: str) -> float | None:
        result = self.results.get(name)
        return None if result is None else result.median

    def to_dict(self) -> dict[str, Any]:
        target = self.case.target
        return {
            "name": self.case.name,
            "description": self.case.description,
            "unit": self.case.unit,
            "ops_per_iteration": self.case.ops_per_iteration,
            "target": None
            if target is None
            else {
                "ratio": target.ratio,
                "versus": target.versus,
                "text": target.describe(),
                "achieved": self.ratio(TRESS, target.versus),
                "met": self.target_met(),
            },
            "results": {name: r.to_dict() for name, r in self.results.items()},
            "ratios": {
                name: self.ratio(name)
                for name in self.results
                if name != self.baseline
            },
            "paired_ratios": {
                name: self.paired_ratio(name)
                for name in self.results
                if name != self.baseline
            },
        }


@dataclass
class ImplStatus:
    """Whether an implementation could be loaded for a scenario."""

    name: str
    kind: str
    source: str
    status: str = OK
    reason: str | None = None
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "status": self.status,
            "reason": self.reason,
            "version": self.version,
        }


@dataclass
class ScenarioResult:
    """A scenario's cases, or the error that kept it from running."""

    name: str
    description: str
    baseline: str = STDLIB
    implementations: list[ImplStatus] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    #: set when the scenario module itself could not be used
    error: str | None = None
    #: wall-clock seconds the scenario took
    elapsed: float = 0.0

    @classmethod
    def for_scenario(cls, scenario: Scenario) -> ScenarioResult:
        return cls(
            name=scenario.name,
            description=scenario.description,
            baseline=scenario.baseline,
            notes=scenario.notes,
        )

    def impl_names(self) -> list[str]:
        return [impl.name for impl in self.implementations]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "baseline": self.baseline,
            "error": self.error,
            "elapsed": self.elapsed,
            "notes": list(self.notes),
            "implementations": [impl.to_dict() for impl in self.implementations],
            "cases": [case.to_dict() for case in self.cases],
        }


def count_errors(scenarios: list[ScenarioResult]) -> int:
    """Scenario and case errors (skips are not errors)."""
    errors = 0
    for scenario in scenarios:
        errors += scenario.error is not None
        for case in scenario.cases:
            errors += sum(r.status == ERROR for r in case.results.values())
    return errors


__all__ = [
    "ERROR",
    "NOT_APPLICABLE",
    "OK",
    "SKIPPED",
    "STDLIB",
    "CaseResult",
    "ImplResult",
    "ImplStatus",
    "ScenarioResult",
    "count_errors",
]
