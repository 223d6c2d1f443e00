"""The measuring engine: calibrated, time-boxed, interleaved batches.

For each case:

1. every loaded implementation gets its runner (``case.setup``) and a batch
   size, calibrated so that one batch takes about
   ``min_time / batches`` seconds (calibration doubles as warm-up);
2. each trial runs batches round-robin over the implementations
   (stdlib, tress, stdlib, tress, ...; the order is reversed on every other
   trial) until each has accumulated ``min_time`` timed seconds, so all of
   them are measured under the same conditions; the batch size follows the
   measured time so a batch stays near its target length;
3. a trial's figure is ``operations / timed seconds``; the reported figure
   is the median over the trials.

The garbage collector is disabled while a batch runs (as ``timeit`` does).
An exception in an implementation's set-up or batch marks that
implementation as failed (or skipped, for :class:`Unsupported`, ImportError
and NotImplementedError; not applicable, for :class:`NotApplicable`) for the
case and never stops the others.
"""

from __future__ import annotations

import faulthandler
import gc
import importlib.metadata
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from tress.bench.model import Case, NotApplicable, Runner, Scenario, Unsupported
from tress.bench.results import (
    ERROR,
    NOT_APPLICABLE,
    SKIPPED,
    CaseResult,
    ImplResult,
    ImplStatus,
    ScenarioResult,
)

#: progress callback: receives one line of text
Progress = Callable[[str], None]

#: default of ``--case-timeout``: seconds one case may take before the
#: watchdog dumps every thread's stack and ends the process
CASE_TIMEOUT = 300.0

#: safety bounds: rounds of one trial, iterations of one batch
MAX_ROUNDS = 100_000
MAX_ITERATIONS = 10**10


_SKIP_EXCEPTIONS = (Unsupported, ImportError, NotImplementedError)


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure."""

    #: timed seconds per implementation per trial
    min_time: float
    #: number of trials (the median is reported)
    trials: int
    #: batches per implementation per trial, aimed for
    batches: int = 4


#: defaults of ``python -m tress bench`` and of ``--quick``
FULL = Settings(min_time=0.2, trials=5)
QUICK = Settings(min_time=0.05, trials=3)


def describe_exception(exc: BaseException) -> str:
    """``Type: message``, followed by the chain of causes."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        parts.append(f"{type(current).__name__}: {text}" if text else type(current).__name__)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


def timed(runner: Runner, iterations: int) -> float:
    """Run one batch with the garbage collector off; return its seconds."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return runner(iterations)
    finally:
        if enabled:
            gc.enable()


def calibrate(runner: Runner, batch_time: float) -> int:
    """Iterations for one batch of about ``batch_time`` seconds.

    Grows the batch until it takes at least ``min(batch_time / 4, 1 ms)``
    (too short to extrapolate from otherwise), then scales it to
    ``batch_time``.
    """
    floor = min(batch_time / 4, 1e-3)
    iterations = 1
    while iterations < MAX_ITERATIONS:
        elapsed = timed(runner, iterations)
        if elapsed >= floor:
            return max(1, round(iterations * batch_time / elapsed))
        growth = 2 * floor / elapsed if elapsed > 0 else 100.0
        iterations = int(iterations * min(100.0, max(2.0, growth)))
    raise RuntimeError(
        f"calibration: {MAX_ITERATIONS} iterations still take under {floor:g} s; "
        "does the runner ignore its iteration count?"
    )


def _adjust(iterations: int, elapsed: float, batch_time: float) -> int:
    """Next batch size, moved toward ``batch_time`` by at most 2x."""
    if elapsed <= 0:
        return iterations * 2
    wanted = iterations * batch_time / elapsed
    wanted = min(iterations * 2, max(iterations / 2, wanted), MAX_ITERATIONS)
    return max(1, round(wanted))


def _enter(stack: ExitStack, made: Any) -> Runner:
    """A runner from what ``case.setup`` returned (runner or context)."""
    if isinstance(made, AbstractContextManager):
        return stack.enter_context(made)
    return made


def _failure(exc: Exception) -> ImplResult:
    if isinstance(exc, NotApplicable):
        status = NOT_APPLICABLE
    else:
        status = SKIPPED if isinstance(exc, _SKIP_EXCEPTIONS) else ERROR
    return ImplResult(status=status, reason=describe_exception(exc))


def measure_case(
    case: Case,
    loaded: dict[str, Any],
    settings: Settings,
) -> dict[str, ImplResult]:
    """Measure ``case`` on every loaded implementation, interleaved."""
    batch_time = settings.min_time / max(1, settings.batches)
    results: dict[str, ImplResult] = {}
    runners: dict[str, Runner] = {}
    sizes: dict[str, int] = {}
    stacks = {name: ExitStack() for name in loaded}
    try:
        for name, impl in loaded.items():
            try:
                runner = _enter(stacks[name], case.setup(impl))
                sizes[name] = calibrate(runner, batch_time)
            except Exception as exc:  # noqa: BLE001 - reported, never fatal
                results[name] = _failure(exc)
                continue
            runners[name] = runner
            results[name] = ImplResult(batch_iterations=sizes[name])

        for trial in range(settings.trials):
            _run_trial(case, trial, runners, sizes, results, settings, batch_time)
    finally:
        for name, stack in reversed(stacks.items()):
            try:
                stack.close()
            except Exception as exc:  # noqa: BLE001 - a failed clean-up fails the case
                results[name] = _failure(exc)
    return results


def _run_trial(
    case: Case,
    trial: int,
    runners: dict[str, Runner],
    sizes: dict[str, int],
    results: dict[str, ImplResult],
    settings: Settings,
    batch_time: float,
) -> None:
    """One trial: round-robin batches until each has ``min_time`` seconds."""
    order = list(runners)
    if trial % 2:
        order.reverse()
    iterations = dict.fromkeys(order, 0)
    seconds = dict.fromkeys(order, 0.0)
    active = list(order)
    rounds = 0
    while active and rounds < MAX_ROUNDS:
        rounds += 1
        for name in list(active):
            n = sizes[name]
            try:
                elapsed = timed(runners[name], n)
            except Exception as exc:  # noqa: BLE001 - reported, never fatal
                results[name] = _failure(exc)
                del runners[name]
                active.remove(name)
                continue
            iterations[name] += n
            seconds[name] += elapsed
            results[name].batches += 1
            sizes[name] = _adjust(n, elapsed, batch_time)
            if seconds[name] >= settings.min_time:
                active.remove(name)
    for name in order:
        if name not in runners:
            continue
        result = results[name]
        ops = iterations[name] * case.ops_per_iteration
        result.seconds += seconds[name]
        result.trials.append(ops / seconds[name] if seconds[name] > 0 else 0.0)


def version_of(obj: Any) -> str | None:
    """Best-effort version of a loaded implementation (module or object)."""
    version = getattr(obj, "__version__", None)
    if isinstance(version, str):
        return version
    module_name = getattr(obj, "__name__", None) or type(obj).__module__
    top = str(module_name).partition(".")[0]
    if top in sys.stdlib_module_names:
        return None
    version = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version(top)
    except Exception:  # noqa: BLE001 - not an installed distribution
        return None


def load_implementations(
    scenario: Scenario, result: ScenarioResult
) -> dict[str, Any]:
    """Load each implementation; record the skipped ones in ``result``."""
    loaded: dict[str, Any] = {}
    for impl in scenario.implementations:
        status = ImplStatus(name=impl.name, kind=impl.kind, source=impl.source)
        try:
            obj = impl.load()
        except Exception as exc:  # noqa: BLE001 - a missing peer is normal
            status.status = SKIPPED
            status.reason = describe_exception(exc)
        else:
            loaded[impl.name] = obj
            status.version = version_of(obj)
        result.implementations.append(status)
    return loaded


@contextmanager
def watchdog(seconds: float | None) -> Iterator[None]:
    """Dump all stacks and exit the process if the block takes too long.

    The last line of defence against a hang the cases' own timeouts cannot
    catch (an uncontended acquire that never returns).  It uses
    :func:`faulthandler.dump_traceback_later`, a process-wide timer, so only
    the command line arms it (``seconds=None`` disarms).
    """
    if seconds is None:
        yield
        return
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def run_scenario(
    scenario: Scenario,
    settings: Settings,
    cases: Iterable[str] | None = None,
    progress: Progress | None = None,
    case_timeout: float | None = None,
) -> ScenarioResult:
    """Run ``scenario`` (all its cases, or those named in ``cases``).

    ``case_timeout`` arms :func:`watchdog` around each case.
    """
    started = time.perf_counter()
    result = ScenarioResult.for_scenario(scenario)
    loaded = load_implementations(scenario, result)
    skipped = {s.name: s for s in result.implementations if s.status == SKIPPED}
    wanted = None if cases is None else set(cases)
    for case in scenario.cases:
        if wanted is not None and case.name not in wanted:
            continue
        case_started = time.perf_counter()
        impls = scenario.implementations_for(case)
        names = {impl.name for impl in impls}
        with watchdog(case_timeout):
            measured = measure_case(
                case, {n: obj for n, obj in loaded.items() if n in names}, settings
            )
        case_result = CaseResult(case=case, baseline=scenario.baseline)
        for impl in impls:
            if impl.name in measured:
                case_result.results[impl.name] = measured[impl.name]
            else:
                case_result.results[impl.name] = ImplResult(
                    status=SKIPPED, reason=skipped[impl.name].reason
                )
        result.cases.append(case_result)
        if progress is not None:
            progress(
                _progress_line(scenario, case_result, time.perf_counter() - case_started)
            )
    result.elapsed = time.perf_counter() - started
    return result


def _progress_line(scenario: Scenario, case: CaseResult, elapsed: float) -> str:
    from tress.bench.report import format_rate, format_ratio

    parts = []
    for name, r in case.results.items():
        if r.median is not None:
            text = f"{name} {format_rate(r.median)}"
            ratio = case.ratio(name)
            if name != scenario.baseline and ratio is not None:
                text += f" ({format_ratio(ratio)})"
        else:
            text = f"{name} {r.status}"
        parts.append(text)
    return f"{scenario.name}/{case.case.name}: {', '.join(parts)} [{elapsed:.1f} s]"
