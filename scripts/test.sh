#!/usr/bin/env bash
# Installs the test dependencies and runs every test: the Rust crates (format,
# lints, unit/integration/doc tests) and the Python package (pytest: behaviour,
# CPython conformance suites, stress, fault and example tests).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
python3 -m pip install -q --disable-pip-version-check -r requirements-dev.txt

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test (crates/tress)"
# Bounded as a whole (the Python side has pytest-timeout): a hung Rust test
# fails CI instead of stalling it.
timeout -k 30 900 cargo test -p tress --locked

echo "== cargo doc (crates/tress: every public item documented, links resolve)"
RUSTDOCFLAGS="-D warnings" cargo doc -p tress --no-deps --locked

echo "== building and installing the tress package"
python3 -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps .

echo "== pytest"
# Run from the tests' own tree so the installed package (with its extension)
# is the one imported, never the source tree's python/tress.
python3 -m pytest tests -q -p no:cacheprovider "$@"
