"""Reports of a benchmark run: a plain-text table and a JSON document."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tress.bench.machine import compact_cpus
from tress.bench.measure import Settings
from tress.bench.model import STDLIB, TRESS
from tress.bench.results import (
    ERROR,
    NOT_APPLICABLE,
    OK,
    SKIPPED,
    ScenarioResult,
    count_errors,
)

#: version of the JSON document's layout
SCHEMA = "tress-bench/1"


# --------------------------------------------------------------------------
# number formatting


def format_rate(value: float) -> str:
    """``4612345.0`` -> ``4.61M`` (3 significant digits, SI suffix)."""
    suffix = ""
    for factor, name in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor * 0.9995:
            value, suffix = value / factor, name
            break
    digits = 0 if abs(value) >= 99.95 else 1 if abs(value) >= 9.995 else 2
    return f"{value:.{digits}f}{suffix}"


def format_ratio(value: float) -> str:
    """``1.2345`` -> ``1.23x``; ``12.345`` -> ``12.3x``."""
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _format_result(result: Any) -> str:
    if result is None:
        return "-"
    if result.status != OK or result.median is None:
        return result.status
    text = format_rate(result.median)
    if result.spread is not None:
        text += f" ±{result.spread * 100:.0f}%"
    return text


# --------------------------------------------------------------------------
# JSON


def to_json_document(
    scenarios: list[ScenarioResult],
    machine: dict[str, Any],
    settings: Settings,
    run: dict[str, Any],
) -> dict[str, Any]:
    """Everything the text report shows, plus the raw trial values."""
    return {
        "schema": SCHEMA,
        "machine": machine,
        "settings": asdict(settings),
        "run": run,
        "errors": count_errors(scenarios),
        "scenarios": [scenario.to_dict() for scenario in scenarios],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False)


# --------------------------------------------------------------------------
# text


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    """Align ``rows`` (the first is the header) into lines."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _peers(scenarios: list[ScenarioResult]) -> list[str]:
    """Names of the implementations other than stdlib and tress, in order.

    An implementation none of the run's cases has a result for (a reference
    whose case was not selected) gets no column.
    """
    names: list[str] = []
    for scenario in scenarios:
        for impl in scenario.implementations:
            if impl.name in (STDLIB, TRESS) or impl.name in names:
                continue
            if any(impl.name in case.results for case in scenario.cases):
                names.append(impl.name)
    return names


def header_lines(machine: dict[str, Any], settings: Settings, run: dict[str, Any]) -> list[str]:
    """Machine, software and settings, one fact per line."""
    cpus = f"{machine.get('cpu_count')} CPUs"
    affinity = machine.get("cpu_affinity")
    if affinity is not None:
        cpus += f" (this process may use {compact_cpus(affinity)})"
    load = machine.get("load_average")
    tress = machine.get("tress_version") or "not installed"
    if machine.get("tress_location"):
        tress += f" ({machine['tress_location']})"
    return [
        f"tress bench, {machine.get('date')}: {run.get('command')}",
        f"machine:  {cpus}, {machine.get('cpu_model') or machine.get('machine')}"
        + (f", load average {' '.join(map(str, load))}" if load else ""),
        f"platform: {machine.get('platform')}",
        f"python:   {machine.get('python_implementation')} "
        f"{machine.get('python_version')} ({machine.get('python_build')})",
        f"tress:    {tress}",
        f"settings: {settings.trials} trial(s), {settings.min_time:g} s of timed work "
        f"per implementation per trial, interleaved; figures are medians "
        f"(± half the min-max range of the trials)",
    ]


def render_text(
    scenarios: list[ScenarioResult],
    machine: dict[str, Any],
    settings: Settings,
    run: dict[str, Any],
) -> str:
    """The human-readable report: header, table, legend, skips, errors."""
    peers = _peers(scenarios)
    header = ["scenario", "case", "unit", STDLIB, TRESS, "tress/stdlib", "target", "met"]
    for peer in peers:
        header += [peer, f"{peer}/stdlib"]
    rows = [header]
    met_count = measured_targets = targets = 0
    for scenario in scenarios:
        for case in scenario.cases:
            ratio = case.ratio(TRESS)
            met = case.target_met()
            if case.case.target is not None:
                targets += 1
                measured_targets += met is not None
                met_count += bool(met)
            row = [
                scenario.name,
                case.case.name,
                case.case.unit,
                _format_result(case.results.get(STDLIB)),
                _format_result(case.results.get(TRESS)),
                "-" if ratio is None else format_ratio(ratio),
                case.case.target.describe() if case.case.target else "-",
                "-" if met is None else ("yes" if met else "NO"),
            ]
            for peer in peers:
                peer_ratio = case.ratio(peer)
                row += [
                    _format_result(case.results.get(peer)),
                    "-" if peer_ratio is None else format_ratio(peer_ratio),
                ]
            rows.append(row)
    right = {3, 4, 5} | {8 + i for i in range(2 * len(peers))}

    lines = header_lines(machine, settings, run)
    lines.append("")
    if len(rows) > 1:
        lines += _table(rows, right)
    else:
        lines.append("(no case was run)")
    if targets:
        lines.append("")
        if measured_targets:
            summary = f"targets met: {met_count} of {measured_targets} measured"
            if measured_targets < targets:
                summary += f" ({targets - measured_targets} not measured)"
        else:
            summary = "targets: none measured (tress was not run)"
        lines.append(
            summary + "; a target is tress's ratio versus the named "
            "implementation, from DESIGN.md"
        )
    lines += _legend(scenarios)
    lines += _problems(scenarios)
    return "\n".join(lines) + "\n"


def _legend(scenarios: list[ScenarioResult]) -> list[str]:
    lines = []
    for scenario in scenarios:
        if not scenario.cases:
            continue
        lines += ["", f"{scenario.name}: {scenario.description}"]
        width = max(len(case.case.name) for case in scenario.cases)
        for case in scenario.cases:
            lines.append(f"  {case.case.name.ljust(width)}  {case.case.description}")
        lines += [f"  note: {note}" for note in scenario.notes]
    return lines


def _problems(scenarios: list[ScenarioResult]) -> list[str]:
    """Why implementations were skipped or do not apply, and every error,
    once each."""
    skipped: list[str] = []
    not_applicable: list[str] = []
    errors: list[str] = []
    for scenario in scenarios:
        if scenario.error is not None:
            errors.append(f"  {scenario.name}: {scenario.error}")
        not_loaded = set()
        for impl in scenario.implementations:
            if impl.status == SKIPPED:
                not_loaded.add(impl.name)
                skipped.append(f"  {impl.name} in {scenario.name}: {impl.reason}")
        for case in scenario.cases:
            for name, result in case.results.items():
                where = f"{name} in {scenario.name}/{case.case.name}"
                if result.status == SKIPPED and name not in not_loaded:
                    skipped.append(f"  {where}: {result.reason}")
                elif result.status == NOT_APPLICABLE:
                    not_applicable.append(f"  {where}: {result.reason}")
                elif result.status == ERROR:
                    errors.append(f"  {where}: {result.reason}")
    lines = []
    if not_applicable:
        lines += ["", "not applicable (n/a):"] + not_applicable
    if skipped:
        lines += ["", "skipped:"] + skipped
    if errors:
        lines += ["", "ERRORS:"] + errors
    return lines
