# Two commands do everything on a fresh machine with Python 3.10+ and pip:
#   make demo   set up .venv, then sample from the shipped models (images under outputs/)
#   make test   set up .venv, then run the whole test suite (unit tests, notebooks, browser test)
PYTHON_SYSTEM ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SMOKE ?= 1

.PHONY: demo test notebooks browser-deps lab clean

$(INSTALLED): pyproject.toml
	$(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# torch first, pinned: on these CPU machines it is the local CPU build (elsewhere PyPI's default build)
	$(PYTHON) -m pip install --quiet "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(PYTHON) scripts/demo.py

# Debian's Chromium for the one real-browser test (Playwright drives it; no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will fail; install Debian's chromium package"

test: $(INSTALLED) browser-deps
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

# All notebooks through papermill: SMOKE=1 (default) for the fast mode, SMOKE=0 for the full runs.
notebooks: $(INSTALLED)
	HF_HUB_OFFLINE=1 LDM_LITE_SMOKE=$(SMOKE) $(PYTHON) scripts/run_notebooks.py

lab: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) outputs logs
