#!/usr/bin/env bash
# Installs the test dependencies and runs every test: the Rust crates (format,
# lints, unit/integration/doc tests) and the Python package (pytest: behaviour,
# CPython conformance suites, stress, fault and example tests), the latter
# on every supported CPython present (scripts/pythons.sh finds them through
# pyenv), each against its own `test` package. A failure on any version
# fails the whole; every version runs first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pythons.sh
find_pythons

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# the stable-ABI build (one wheel for every version; not the default)
cargo clippy -p tress-python --features abi3 --locked -- -D warnings

echo "== cargo test (crates/tress)"
# Bounded as a whole (the Python side has pytest-timeout): a hung Rust test
# fails CI instead of stalling it.
timeout -k 30 900 cargo test -p tress --locked

echo "== loom (crates/tress: every interleaving of the event loop's parking protocol)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom timeout -k 30 900 \
    cargo test -p tress --release --locked --test loom_parking

echo "== cargo doc (crates/tress: every public item documented, links resolve)"
RUSTDOCFLAGS="-D warnings" cargo doc -p tress --no-deps --locked

failed=()
for py in "${PYTHONS[@]}"; do
    version=$(python_version "$py")
    echo "== CPython $version ($py): installing test dependencies"
    "$py" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    echo "== CPython $version: building and installing the tress package"
    "$py" -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps .
    echo "== CPython $version: pytest"
    # The installed package (with its extension) is the one imported, never
    # the source tree's python/tress (which has no extension).
    if ! "$py" -m pytest tests -q -p no:cacheprovider "$@"; then
        failed+=("$version")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== pytest FAILED on CPython ${failed[*]}" >&2
    exit 1
fi
echo "== pytest passed on every CPython present (${#PYTHONS[@]})"
