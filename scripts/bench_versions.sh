#!/usr/bin/env bash
# Runs the main job on every supported CPython present: builds and installs
# tress into each (scripts/pythons.sh finds them), runs
# `python -m tress bench` there (default --quick; extra arguments go to it),
# keeps each run's JSON in $TRESS_BENCH_OUT (default a temporary directory),
# then prints the achieved target ratios side by side, one column per
# version, each against the first version's.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pythons.sh
find_pythons
out=${TRESS_BENCH_OUT:-$(mktemp -d -t tress-bench-XXXXXX)}
mkdir -p "$out"
if [ "$#" -eq 0 ]; then set -- --quick; fi
runs=()
for py in "${PYTHONS[@]}"; do
    version=$(python_version "$py")
    echo "== CPython $version: building and installing tress" >&2
    "$py" -m pip install -q --disable-pip-version-check "maturin==1.16.0"
    "$py" -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps .
    echo "== CPython $version: python -m tress bench $*" >&2
    # a failed case is in the JSON (and exits 1): the comparison still runs
    (cd /tmp && "$py" -m tress bench "$@" --json) > "$out/bench-$version.json" || true
    runs+=("$out/bench-$version.json")
done
echo "== JSON runs kept in $out" >&2
exec python3 scripts/bench_versions.py "${runs[@]}"
