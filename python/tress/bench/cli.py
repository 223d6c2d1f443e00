"""``python -m tress bench``: compare tress with the stdlib and peers.

Exit status: 0 on success; 1 if any case failed (an exception in an
implementation, e.g. a stuck handoff); 2 for a usage error (unknown
``--only`` name, bad option) or when ``--plot`` was asked for and
matplotlib is not installed (the results are still printed).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import replace
from typing import Any

from tress.bench import plot
from tress.bench.measure import CASE_TIMEOUT, FULL, QUICK, Settings, run_scenario
from tress.bench.model import Scenario
from tress.bench.registry import BrokenScenario, load_scenarios
from tress.bench.results import ScenarioResult, count_errors

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2

PROG = "python -m tress bench"


class UsageError(Exception):
    """A command-line mistake: reported on stderr, exit status 2."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _cpu_list(text: str) -> set[int]:
    """``0``, ``0,1`` or ``0-3`` -> a set of CPU numbers."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU list like 0 or 0,1 or 0-3: {text!r}") from None
    if not cpus:
        raise argparse.ArgumentTypeError("empty CPU list")
    return cpus


def _plot_file(text: str) -> str:
    if not text.lower().endswith(plot.FORMATS):
        raise argparse.ArgumentTypeError(
            f"the chart's file name must end in one of {', '.join(plot.FORMATS)}: {text!r}"
        )
    return text


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``bench`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmark tress against the standard library and peers",
        description=(
            "Run the benchmark scenarios on the standard library, on tress and "
            "on the peers that are installed, in one process, interleaved; "
            "print medians, ratios and the DESIGN.md targets."
        ),
        epilog=(
            "Names for --only: a scenario (e.g. primitives) or one case "
            "(e.g. primitives/lock); see --list. Exit status: 0 ok, 1 a case "
            "failed, 2 usage error or --plot without matplotlib."
        ),
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=f"shorter run: {QUICK.trials} trials of {QUICK.min_time:g} s "
        f"(default {FULL.trials} of {FULL.min_time:g} s)",
    )
    parser.add_argument("--json", action="store_true",
                        help="print a JSON document (with the raw trial values) "
                        "instead of the table")
    parser.add_argument("--only", nargs="+", action="extend", metavar="NAME",
                        help="run only these scenarios or scenario/case names")
    parser.add_argument("--plot", metavar="FILE", type=_plot_file,
                        help="draw a bar chart of the ratios (.png, .svg or .pdf; "
                        "needs matplotlib)")
    parser.add_argument("--trials", type=_positive_int, metavar="N",
                        help="number of trials (the median is reported)")
    parser.add_argument("--min-time", type=_positive_float, metavar="SECONDS",
                        help="timed seconds per implementation per trial")
    parser.add_argument("--cpus", type=_cpu_list, metavar="LIST",
                        help="pin the benchmark to these CPUs first (e.g. 0 for one core)")
    parser.add_argument("--case-timeout", type=_positive_float, metavar="SECONDS",
                        default=CASE_TIMEOUT,
                        help="if one case runs longer, dump every thread's stack and "
                        f"exit (default {CASE_TIMEOUT:g})")
    parser.add_argument("--list", action="store_true",
                        help="list the scenarios and cases, then exit")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress lines on stderr")
    parser.set_defaults(func=main)
    return parser


# --------------------------------------------------------------------------
# selection


def select(
    scenarios: list[Scenario | BrokenScenario], names: list[str] | None
) -> list[tuple[Scenario | BrokenScenario, list[str] | None]]:
    """The scenarios to run, each with its selected cases (None = all).

    Raises :class:`UsageError` for a name that matches nothing.
    """
    if not names:
        return [(scenario, None) for scenario in scenarios]
    by_name = {scenario.name: scenario for scenario in scenarios}
    chosen: dict[str, list[str] | None] = {}
    unknown = []
    for name in names:
        scenario_name, _, case_name = name.partition("/")
        scenario = by_name.get(scenario_name)
        if scenario is None:
            unknown.append(name)
        elif not case_name:
            chosen[scenario_name] = None
        elif isinstance(scenario, BrokenScenario) or case_name not in {
            c.name for c in scenario.cases
        }:
            unknown.append(name)
        elif scenario_name not in chosen or chosen[scenario_name] is not None:
            chosen.setdefault(scenario_name, [])
            cases = chosen[scenario_name]
            if cases is not None and case_name not in cases:
                cases.append(case_name)
    if unknown:
        known = ", ".join(_all_names(scenarios))
        raise UsageError(
            f"unknown benchmark name(s): {', '.join(unknown)}; known names: {known}"
        )
    return [(s, chosen[s.name]) for s in scenarios if s.name in chosen]


def _all_names(scenarios: list[Scenario | BrokenScenario]) -> list[str]:
    names = []
    for scenario in scenarios:
        names.append(scenario.name)
        if isinstance(scenario, Scenario):
            names += [f"{scenario.name}/{case.name}" for case in scenario.cases]
    return names


def _listing(scenarios: list[Scenario | BrokenScenario]) -> str:
    lines = []
    for scenario in scenarios:
        if isinstance(scenario, BrokenScenario):
            lines.append(f"{scenario.name}: BROKEN ({scenario.module}: {scenario.error})")
            continue
        impls = ", ".join(
            f"{impl.name}={impl.source}" if impl.source else impl.name
            for impl in scenario.implementations
        )
        lines.append(f"{scenario.name}: {scenario.description}")
        lines.append(f"  implementations: {impls}")
        for case in scenario.cases:
            target = f" [target {case.target.describe()}]" if case.target else ""
            lines.append(f"  {scenario.name}/{case.name}: {case.description} ({case.unit}){target}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# running


def settings_from(args: argparse.Namespace) -> Settings:
    """Defaults of --quick or the full run, overridden by explicit options."""
    settings = QUICK if args.quick else FULL
    if args.trials is not None:
        settings = replace(settings, trials=args.trials)
    if args.min_time is not None:
        settings = replace(settings, min_time=args.min_time)
    return settings


def run_selected(
    selected: list[tuple[Scenario | BrokenScenario, list[str] | None]],
    settings: Settings,
    quiet: bool = False,
    case_timeout: float | None = None,
) -> list[ScenarioResult]:
    """Run the selected scenarios, reporting progress on stderr."""

    def progress(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    results = []
    for scenario, cases in selected:
        if isinstance(scenario, BrokenScenario):
            results.append(ScenarioResult(
                name=scenario.name, description=f"module {scenario.module}",
                error=scenario.error,
            ))
            progress(f"{scenario.name}: BROKEN: {scenario.error}")
            continue
        results.append(run_scenario(scenario, settings, cases, progress, case_timeout))
    return results


def main(args: argparse.Namespace) -> int:
    """Run ``bench`` with parsed arguments; return the exit status."""
    # imported here: machine info may import tress's metadata, report nothing heavy
    from tress.bench.machine import machine_info
    from tress.bench.report import dumps, render_text, to_json_document

    scenarios = load_scenarios()
    if args.list:
        sys.stdout.write(_listing(scenarios))
        return EXIT_OK
    try:
        selected = select(scenarios, args.only)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    plot_problem = plot.matplotlib_missing() if args.plot else None
    if plot_problem:
        print(f"{PROG}: warning: {plot_problem}; running the benchmark anyway",
              file=sys.stderr)
    if args.cpus is not None:
        try:
            os.sched_setaffinity(0, args.cpus)
        except (AttributeError, OSError, ValueError) as exc:
            print(f"{PROG}: error: cannot pin to CPUs {sorted(args.cpus)}: {exc}",
                  file=sys.stderr)
            return EXIT_USAGE

    settings = settings_from(args)
    machine = machine_info()  # before the run: the load average is the machine's
    started = time.perf_counter()
    results = run_selected(selected, settings, args.quiet, args.case_timeout)
    run_info = {
        "command": " ".join(
            ["python -m tress"] + [shlex.quote(a) for a in getattr(args, "argv", ["bench"])]
        ),
        "quick": args.quick,
        "only": args.only,
        "cpus": sorted(args.cpus) if args.cpus is not None else None,
        "elapsed": time.perf_counter() - started,
    }

    if args.json:
        sys.stdout.write(dumps(to_json_document(results, machine, settings, run_info)) + "\n")
    else:
        sys.stdout.write(render_text(results, machine, settings, run_info))
    sys.stdout.flush()

    status = EXIT_ERRORS if count_errors(results) else EXIT_OK
    if args.plot:
        if plot_problem:
            print(f"{PROG}: error: {plot_problem}; {args.plot} was not written",
                  file=sys.stderr)
            return EXIT_USAGE
        title = (
            f"tress bench: {machine['cpu_count']} CPUs, {machine['cpu_model']}, "
            f"Python {machine['python_version']}, "
            f"tress {machine['tress_version'] or 'not installed'}"
        )
        plot.draw(results, args.plot, title)
        if not args.quiet:
            print(f"chart written to {args.plot}", file=sys.stderr)
    return status
