#!/usr/bin/env bash
# Builds and installs tress, then runs the main job: the benchmark comparing
# the standard library, tress and any installed peers. Extra arguments go to
# `python -m tress bench` (default: --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check "maturin==1.16.0"
python3 -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps .
# the peers, one at a time: one that will not install is left out
grep -v '^#' requirements-peers.txt | while read -r peer; do
    [ -n "$peer" ] || continue
    python3 -m pip install -q --disable-pip-version-check "$peer" \
        || echo "== $peer could not be installed: the bench leaves it out" >&2
done
cd /tmp
if [ "$#" -eq 0 ]; then set -- --quick; fi
exec python3 -m tress bench "$@"
