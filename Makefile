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

# Samples from the shipped models (seconds on a CPU): the original scripts, on this project's models.
demo: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/txt2img.py --prompt "a large red circle at the center" --n_samples 4 --n_iter 2 --scale 3 --ddim_steps 25
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/txt2img.py --prompt "an emoji of red apple" --n_samples 4 --n_iter 2 --scale 3 --ddim_steps 25
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/inpaint.py --indir data/inpainting_examples/ --outdir outputs/inpainting_results --steps 25
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/sample_diffusion.py -r models/ldm/mnist-class -l outputs/samples -n 10 --batch_size 10 -c 25 --classes 0 1 2 3 4 5 6 7 8 9 --scale 3
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/sample_diffusion.py -r models/ldm/emoji-uncond -l outputs/samples -n 16 --batch_size 16 -c 25
	@echo "Images: outputs/txt2img-samples/ (grids <prompt>.png), outputs/inpainting_results/, outputs/samples/"

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
