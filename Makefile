# overdrive developer commands. `make help` lists them.
#
# Everything runs in .venv (created on demand). Tests and benchmarks run
# against the installed release wheel, never an in-place build.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
DIST   := dist
CARGO  ?= cargo
# asv: the commits `make asv` benchmarks (a git range), and extra `asv run` flags
# (ASV_ARGS= drops --quick: many samples per benchmark, much slower).
ASV_RANGE ?= HEAD~2..HEAD
ASV_ARGS  ?= --quick

.DEFAULT_GOAL := help
.PHONY: help venv build-dev build-prod install-test install-bench test test-rust test-python \
        lint format bench asv asv-publish asv-check clean system-deps

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/maturin:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.7,<2"

venv: $(BIN)/maturin ## create .venv with maturin

build-dev: venv ## debug build installed in place (fast edit loop; not for benchmarks)
	$(BIN)/maturin develop --uv 2>/dev/null || $(BIN)/maturin develop

build-prod: venv ## build the release wheel into dist/ and install it into .venv
	rm -rf $(DIST)
	$(BIN)/maturin build --release -o $(DIST)
	$(PY) -m pip install -q --force-reinstall --no-deps $(DIST)/overdrive-*.whl

install-test: build-prod
	$(PY) -m pip install -q "$$(ls $(DIST)/overdrive-*.whl)[test,lint]"

install-bench: build-prod
	$(PY) -m pip install -q "$$(ls $(DIST)/overdrive-*.whl)[bench]"

system-deps: ## install system programs the tests use (zstd CLI) if missing
	bash scripts/system-deps.sh

test-rust: ## Rust: fmt, clippy, cargo test (core crate + proptest)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

lint: venv ## all lint gates: ruff, mypy, stubtest, cargo fmt, clippy
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/mypy
	$(PY) -m mypy.stubtest overdrive._core --allowlist stubtest-allowlist.txt
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-python: ## pytest against the installed wheel
	$(PY) -m pytest

test: system-deps install-test ## everything CI runs: Rust tests, lints, pytest on the wheel
	$(CARGO) test --workspace
	$(MAKE) lint
	$(MAKE) test-python
	$(MAKE) asv-check

format: venv ## format Rust and Python
	$(CARGO) fmt --all
	$(BIN)/ruff format python tests benches
	$(BIN)/ruff check --fix python tests benches

bench: install-bench ## release wheel + `overdrive bench --quick` (table + report in reports/)
	$(BIN)/overdrive bench --quick --out reports

asv: install-bench ## asv history: benches/ over ASV_RANGE (wheel built per commit), then asv publish
	$(BIN)/asv machine --yes
	$(BIN)/asv run $(ASV_ARGS) --show-stderr --skip-existing-commits $(ASV_RANGE)
	$(MAKE) asv-publish

asv-publish: ## build the asv HTML site from the recorded results into .asv/html
	$(BIN)/asv publish
	@echo "open .asv/html/index.html, or: $(BIN)/asv preview"

asv-check: ## every asv benchmark once against the installed wheel; fails on a broken one
	$(BIN)/asv machine --yes
	$(BIN)/asv run --python=same --quick --show-stderr --dry-run --durations 5

clean: ## remove build outputs
	rm -rf target $(DIST) reports .asv
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
