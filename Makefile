# Shortcuts for development; CI runs scripts/test.sh through .ci/run.
.PHONY: build-dev lint test bench

build-dev:
	python3 -m pip install -q --no-build-isolation --force-reinstall --no-deps .

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh
