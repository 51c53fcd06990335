# The README's commands. Everything runs from a virtual environment in .venv that this file
# builds from requirements/dev.lock, so a fresh machine needs nothing but Python >= 3.11.
# The locks (requirements/runtime.lock, requirements/dev.lock) come from pip's resolver: `make lock`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/var/dagster_home
export AI_ASSETS_DATA_DIR ?= $(CURDIR)/var
export GX_ANALYTICS_ENABLED := false

.PHONY: install demo test test-fast lint lock check-install encoder encoder-export ui review bench chaos validate status clean

$(BIN)/.installed: pyproject.toml requirements/dev.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements/dev.lock -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# A second environment, only for producing the shipped ONNX encoder (and the torch baseline of
# benchmarks/encoder.py): the project with its dev and encoder-export extras (torch, sentence-transformers).
ENCODER_VENV := .venv-encoder
$(ENCODER_VENV)/bin/.installed: pyproject.toml requirements/encoder.lock
	$(PYTHON) -m venv $(ENCODER_VENV)
	$(ENCODER_VENV)/bin/pip install --quiet --upgrade pip
	$(ENCODER_VENV)/bin/pip install --quiet -c requirements/encoder.lock -e '.[dev,encoder-export]'
	touch $@

# Export all-MiniLM-L6-v2 to ONNX again and compare it byte for byte with the shipped files
# (ai_assets/data/encoders/all_minilm_l6_v2/); non-zero if they differ.
encoder: $(ENCODER_VENV)/bin/.installed
	$(ENCODER_VENV)/bin/python scripts/export_encoder.py --check

# Write the shipped encoder files anew (after changing scripts/export_encoder.py or its pins).
encoder-export: $(ENCODER_VENV)/bin/.installed
	$(ENCODER_VENV)/bin/python scripts/export_encoder.py

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ai-assets demo

test: install
	$(BIN)/python scripts/test_prereqs.py
	$(BIN)/python -m pytest -n 2 --durations=10

# The inner loop: everything but the tests marked slow (model training, browser, chaos, lifecycle).
test-fast: install
	$(BIN)/python -m pytest -n 2 -m "not slow"

lint: install
	$(BIN)/ruff check ai_assets ai_assets_tests benchmarks scripts

# Re-resolve both locks with pip's resolver (keeps today's pins where they fit; see scripts/lock.py).
lock: install
	$(BIN)/python scripts/lock.py

# A plain `pip install -c requirements/runtime.lock .` into an empty venv in a temp dir, then import
# every module of the installed package, outside the source tree. JSON summary; non-zero on failure.
check-install:
	$(PYTHON) scripts/check_fresh_install.py

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

# The reviewers' web app on http://127.0.0.1:8787 (accounts: `.venv/bin/ai-assets review add-user`).
review: install
	$(BIN)/ai-assets review

status: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ai-assets status --json

validate: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: install $(ENCODER_VENV)/bin/.installed
	$(ENCODER_VENV)/bin/python -m benchmarks.encoder
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.intent_model_report
	$(BIN)/python -m benchmarks.serving
	$(BIN)/python -m benchmarks.local_path
	$(BIN)/python -m benchmarks.actions
	$(BIN)/python -m benchmarks.monitoring
	$(BIN)/python -m benchmarks.drift_detection
	$(BIN)/python -m benchmarks.review_app
	$(BIN)/python -m benchmarks.retraining

clean:
	rm -rf var .pytest_cache

# Kill the run, cut the database, stop the mail server, change the policy — mid-action — and
# count lost, duplicated and half-done actions on SQLite and PostgreSQL. Non-zero exit if any.
chaos: install
	$(BIN)/python -m ai_assets_tests.chaos
