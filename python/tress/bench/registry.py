"""The one place where benchmark scenarios are registered.

Add a scenario by writing a module under ``tress.bench.scenarios`` that
defines ``SCENARIO`` (a :class:`tress.bench.model.Scenario`) and appending
its name here; the CLI, ``--only``, ``--list``, the report and the chart
pick it up from this list.  The order here is the order of the run.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from tress.bench.model import Scenario

SCENARIO_MODULES: tuple[str, ...] = (
    "tress.bench.scenarios.primitives",
    "tress.bench.scenarios.queues",
    "tress.bench.scenarios.pools",
    "tress.bench.scenarios.ipc",
    "tress.bench.scenarios.procpool",
    "tress.bench.scenarios.eventloop",
)


@dataclass(frozen=True)
class BrokenScenario:
    """A registered module that could not be imported or has no SCENARIO."""

    module: str
    error: str

    @property
    def name(self) -> str:
        return self.module.rpartition(".")[2]


def load_scenarios() -> list[Scenario | BrokenScenario]:
    """Every registered scenario, in order; broken modules are reported."""
    from tress.bench.measure import describe_exception

    loaded: list[Scenario | BrokenScenario] = []
    for module_name in SCENARIO_MODULES:
        try:
            module = importlib.import_module(module_name)
            scenario = module.SCENARIO
            if not isinstance(scenario, Scenario):
                raise TypeError(f"{module_name}.SCENARIO is not a Scenario")
        except Exception as exc:  # noqa: BLE001 - reported, never fatal
            loaded.append(BrokenScenario(module_name, describe_exception(exc)))
        else:
            loaded.append(scenario)
    return loaded
