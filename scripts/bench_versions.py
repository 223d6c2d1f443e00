"""Prints the target ratios of several `python -m tress bench --json` runs
(one per CPython version, or one per build) side by side: one row per case
with a target, one column per run, and each later run's ratio against the
first's. Columns are named by the run's Python version, or by its file name
where two runs share a version. ``--all``: every case, by its tress/stdlib
ratio (paired), not only those with a target.

    python3 scripts/bench_versions.py bench-3.11.7.json bench-3.12.1.json ...
    python3 scripts/bench_versions.py --all per-version.json abi3.json
"""

import json
import os
import sys


def ratios(path, every):
    """(python version, {scenario/case: (ratio, target text)})."""
    with open(path) as f:
        run = json.load(f)
    version = run["machine"].get("python_version") or run["machine"].get("python", path)
    found = {}
    for scenario in run["scenarios"]:
        for case in scenario.get("cases", []):
            name = f"{scenario['name']}/{case['name']}"
            target = case.get("target") or {}
            if every:
                ratio = (case.get("paired_ratios") or case.get("ratios") or {}).get("tress")
                if ratio is not None:
                    found[name] = (ratio, target.get("text", "-"))
            elif target.get("achieved") is not None:
                found[name] = (target["achieved"], target["text"])
    return version, found


def main(args):
    every = "--all" in args
    paths = [a for a in args if a != "--all"]
    runs = [ratios(p, every) for p in paths]
    versions = [v for v, _ in runs]
    if len(set(versions)) < len(versions):  # name the columns by their files
        runs = [(os.path.splitext(os.path.basename(p))[0], found)
                for p, (_, found) in zip(paths, runs)]
    names = list(dict.fromkeys(n for _, found in runs for n in found))
    first = runs[0][1]
    head = ["case", "target"] + [v for v, _ in runs] + [f"{v}/{runs[0][0]}" for v, _ in runs[1:]]
    rows = []
    for name in names:
        text = next(found[name][1] for _, found in runs if name in found)
        row = [name, text]
        row += [f"{found[name][0]:.2f}x" if name in found else "-" for _, found in runs]
        for _, found in runs[1:]:
            if name in found and name in first and first[name][0] > 0:
                row.append(f"{found[name][0] / first[name][0]:.2f}")
            else:
                row.append("-")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
