# labelstudio-ingest — every target creates what it needs (virtual environments, pinned installs, servers).
#   make demo   the main job on the embedded local stack (broker, Label Studio, consumer, a LangChain app)
#   make test   lint, type check, all tests against real servers started by the test harness

PYTHON   ?= python3.11
VENV     := .venv
LS_VENV  := .venv-ls
BENCH_VENV := .venv-bench
BIN      := $(VENV)/bin
UV       := $(BIN)/uv
# Both the dev tools and Label Studio come from lock files: the same versions on every machine and in CI.
DEV_LOCK := requirements/dev.lock
LS_LOCK  := requirements/label-studio.lock
BENCH_LOCK := requirements/bench.lock
PACKAGES := schemas producer consumer

export LABEL_STUDIO_BIN ?= $(CURDIR)/$(LS_VENV)/bin/label-studio

.PHONY: help demo bench faults test test-matrix tools lint format typecheck schemas check-schemas pytest lock venv ls-venv clean

help:
	@sed -n '2,3p' Makefile

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/bootstrap.txt

$(VENV)/.installed: $(UV) $(DEV_LOCK) pyproject.toml
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(UV) pip install --quiet -r $(DEV_LOCK)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(UV) pip install --quiet --no-deps -e .
	touch $@

$(LS_VENV)/.installed: $(UV) $(LS_LOCK)
	$(UV) venv --quiet --allow-existing -p $(PYTHON) $(LS_VENV)
	VIRTUAL_ENV=$(CURDIR)/$(LS_VENV) $(UV) pip install --quiet -r $(LS_LOCK)
	touch $@

# Benchmarks add the old LangChain handler (the baseline) and matplotlib on top of the dev lock.
$(BENCH_VENV)/.installed: $(UV) $(DEV_LOCK) $(BENCH_LOCK) pyproject.toml
	$(UV) venv --quiet --allow-existing -p $(PYTHON) $(BENCH_VENV)
	VIRTUAL_ENV=$(CURDIR)/$(BENCH_VENV) $(UV) pip install --quiet -r $(DEV_LOCK) -r $(BENCH_LOCK)
	VIRTUAL_ENV=$(CURDIR)/$(BENCH_VENV) $(UV) pip install --quiet --no-deps -e .
	touch $@

# Prometheus (server and promtool) from Debian, for the alert-rule checks and the scrape test.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
		--no-install-recommends prometheus >/dev/null; }
	@# Chromium for tests/browser (Playwright drives it; it never downloads a browser), and a font with
	@# Japanese and Korean glyphs so the screenshots of those tasks show text rather than boxes.
	@command -v chromium >/dev/null && fc-list 2>/dev/null | grep -q "WenQuanYi Micro Hei" || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
		--no-install-recommends chromium fonts-wqy-microhei >/dev/null; }

venv: $(VENV)/.installed
ls-venv: $(LS_VENV)/.installed

demo: venv ls-venv
	$(BIN)/python -m examples.demo

# Figures for docs/PERFORMANCE.md; each benchmark measures its own baseline in the same run.
bench: $(BENCH_VENV)/.installed ls-venv
	$(BENCH_VENV)/bin/python -m bench.producer_latency
	$(BENCH_VENV)/bin/python -m bench.producer_io
	$(BENCH_VENV)/bin/python -m bench.consumer_throughput

# The fault run of docs/RELIABILITY.md (a few minutes): consumer kills, a Label Studio outage, a replica
# added and removed; exits 1 with a diff on any lost, doubled or wrongly dead-lettered record.
faults: venv ls-venv
	$(BIN)/python -m bench.fault_run $(FAULTS_ARGS)

test: lint typecheck check-schemas pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# mypy reads the installed layout (labelstudio_ingest.<folder>) through a link tree of the three folders.
build/typecheck/labelstudio_ingest:
	mkdir -p $@
	for p in $(PACKAGES); do ln -sfn ../../../$$p $@/$$p; done

typecheck: venv build/typecheck/labelstudio_ingest
	$(BIN)/mypy $(foreach p,$(PACKAGES),-p labelstudio_ingest.$(p))
	# the contract and the producer also run on Python 3.10 (the consumer needs 3.11)
	$(BIN)/mypy --python-version 3.10 -p labelstudio_ingest.schemas -p labelstudio_ingest.producer

schemas: venv
	$(BIN)/python -m labelstudio_ingest.schemas.generate

check-schemas: venv
	$(BIN)/python -m labelstudio_ingest.schemas.generate --check

pytest: venv ls-venv tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The schemas and producer tests (with a real broker) on the other Pythons the producer supports, each in
# .venv-py3XX from requirements/matrix-py3XX.lock; the full suite (`make test`) runs on 3.11. Interpreters
# come from pyenv when it is there (`pyenv install 3.10 3.12 3.13`), else from PATH. The versions are
# independent targets: `make -j3 --output-sync=target test-matrix` runs them side by side (as CI does).
MATRIX_PYTHONS ?= 3.10 3.12 3.13
MATRIX_TESTS   ?= tests/schemas tests/producer --ignore=tests/producer/test_process_models.py
test-matrix: $(addprefix test-py,$(MATRIX_PYTHONS))

test-py%: $(UV)
	@set -e; v=$*; py=python$$v; \
	if command -v pyenv >/dev/null && latest=$$(pyenv latest $$v 2>/dev/null); then \
		py=$$(pyenv root)/versions/$$latest/bin/python$$v; fi; \
	venv=.venv-py$$(echo $$v | tr -d .); lock=requirements/matrix-py$$(echo $$v | tr -d .).lock; \
	echo "== Python $$v ($$py)"; \
	$(UV) venv --quiet --allow-existing -p $$py $$venv; \
	VIRTUAL_ENV=$(CURDIR)/$$venv $(UV) pip install --quiet -r $$lock; \
	VIRTUAL_ENV=$(CURDIR)/$$venv $(UV) pip install --quiet --no-deps -e .; \
	$$venv/bin/python -m pytest -q -m "not slow" --confcutdir tests/producer \
		-p tests.producer.matrix_plugin $(MATRIX_TESTS) $(PYTEST_ARGS)

# Re-resolve the pinned versions after changing dependencies in pyproject.toml.
lock: $(UV)
	$(UV) pip compile --quiet pyproject.toml --all-extras --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu -o $(DEV_LOCK)
	$(UV) pip compile --quiet requirements/label-studio.in --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu -o $(LS_LOCK)
	cd requirements && ../$(UV) pip compile --quiet bench.in --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu -o bench.lock
	cd requirements && for v in $(MATRIX_PYTHONS); do ../$(UV) pip compile --quiet ../pyproject.toml \
		--extra producer --extra local matrix.in --python-version $$v \
		--python-platform x86_64-unknown-linux-gnu -o matrix-py$$(echo $$v | tr -d .).lock; done

clean:
	rm -rf $(VENV) $(LS_VENV) $(BENCH_VENV) .venv-py3* build .demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
