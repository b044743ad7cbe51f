# Two commands do everything on a fresh machine with Python 3.10+ and pip:
#   make demo   set up .venv, then sample from the shipped models (images under outputs/)
#   make test   set up .venv, then run the whole test suite (unit tests, notebooks, browser test)
PYTHON_SYSTEM ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SMOKE ?= 1

.PHONY: demo test notebooks solutions browser-deps clipart-deps lab clean own-autoencoder own-ldm

$(INSTALLED): pyproject.toml
	$(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# torch first, pinned: on these CPU machines it is the local CPU build (elsewhere PyPI's default build)
	$(PYTHON) -m pip install --quiet "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

# Samples from the shipped models (seconds on a CPU): the original scripts, on this project's models.
demo: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/txt2img.py --prompt "a loudly crying face" --n_samples 4 --n_iter 2 --scale 4 --ddim_steps 25
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/txt2img.py --prompt "a yellow heart" --n_samples 4 --n_iter 2 --scale 4 --ddim_steps 25
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/txt2img.py -r models/ldm/text-shapes-emoji --prompt "a large red circle at the center" --n_samples 4 --n_iter 2 --scale 3 --ddim_steps 25
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/inpaint.py --indir data/inpainting_examples/ --outdir outputs/inpainting_results --steps 25
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/sample_diffusion.py -r models/ldm/mnist-class -l outputs/samples -n 10 --batch_size 10 -c 25 --classes 0 1 2 3 4 5 6 7 8 9 --scale 3
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/sample_diffusion.py -r models/ldm/emoji-uncond -l outputs/samples -n 16 --batch_size 16 -c 25
	@echo "Images: outputs/txt2img-samples/ (grids <prompt>.png), outputs/inpainting_results/, outputs/samples/"

# Your own images (README "Train on your own images"): a folder of png/jpg/jpeg/webp files, class subfolders
# and captions optional. Two commands, each trains with main.py and exports the run with scripts/export_model.py:
#   make own-autoencoder DATA=<folder>                  first stage -> $(MODELS)/first_stage_models/$(NAME)-kl-f4/
#   make own-ldm DATA=<folder> KIND=uncond|class|text   LDM on it   -> $(MODELS)/ldm/$(NAME)-$(KIND)/
# SIZE: image side (64); BATCH, STEPS: batch size and optimizer steps (the config's by default); NAME (own);
# LOGS (logs); MODELS (outputs/models); ARGS: more main.py options and dotted.key=value overrides;
# PYTHON: another environment's interpreter (e.g. conda's python) instead of .venv, which is then left alone.
KIND ?= uncond
NAME ?= own
SIZE ?= 64
LOGS ?= logs
MODELS ?= outputs/models
OWN_FIRST_STAGE = $(MODELS)/first_stage_models/$(NAME)-kl-f4
OWN_OPTIONS = -l "$(LOGS)" data.params.train.params.root="$(DATA)" data.params.train.params.size=$(SIZE) \
	$(if $(BATCH),data.params.batch_size=$(BATCH)) $(if $(STEPS),--max_steps $(STEPS))
OWN_CLASSES = $(shell $(PYTHON) -c 'import sys; from ldm_lite.data.folder import class_names; print(len(class_names(sys.argv[1])))' "$(DATA)" 2>/dev/null)
own_run = "$$(ls -d "$(LOGS)"/*_$(1) | tail -n 1)"
OWN_SETUP = $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(INSTALLED))

own-autoencoder: $(OWN_SETUP)
	@test -n "$(DATA)" || { echo "error: no image folder given: make own-autoencoder DATA=<folder of images>" >&2; exit 2; }
	HF_HUB_OFFLINE=1 $(PYTHON) main.py --base configs/autoencoder/folder_kl_f4.yaml -t -n $(NAME)-kl-f4 $(OWN_OPTIONS) $(ARGS)
	$(PYTHON) scripts/export_model.py $(call own_run,$(NAME)-kl-f4) "$(OWN_FIRST_STAGE)"
	@echo "Next: make own-ldm DATA=$(DATA) KIND=uncond|class|text$(if $(filter-out 64,$(SIZE)), SIZE=$(SIZE))$(if $(filter-out own,$(NAME)), NAME=$(NAME))"

own-ldm: $(OWN_SETUP)
	@test -n "$(DATA)" || { echo "error: no image folder given: make own-ldm DATA=<folder of images> KIND=uncond|class|text" >&2; exit 2; }
	@case "$(KIND)" in uncond|class|text) ;; *) echo "error: KIND=$(KIND) is not a kind of model: use KIND=uncond, class or text" >&2; exit 2;; esac
	HF_HUB_OFFLINE=1 $(PYTHON) main.py --base configs/latent-diffusion/folder_$(KIND).yaml -t -n $(NAME)-$(KIND) $(OWN_OPTIONS) \
	  model.params.image_size=$(shell echo $$(($(SIZE) / 4))) model.params.first_stage_config.params.folder="$(OWN_FIRST_STAGE)" \
	  $(if $(filter class,$(KIND)),model.params.cond_stage_config.params.n_classes=$(OWN_CLASSES)) $(ARGS)
	$(PYTHON) scripts/export_model.py $(call own_run,$(NAME)-$(KIND)) "$(MODELS)/ldm/$(NAME)-$(KIND)"
	@echo "Sample it: $(PYTHON) scripts/$(if $(filter text,$(KIND)),txt2img.py --prompt \"<a caption>\" --scale 3,sample_diffusion.py -n 16 --batch_size 16$(if $(filter class,$(KIND)), --classes 0 1 --scale 3)) -r $(MODELS)/ldm/$(NAME)-$(KIND)"

# Debian's Chromium for the one real-browser test (Playwright drives it; no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will fail; install Debian's chromium package"

# Debian's clip-art packages (openclipart-png: public domain; tuxpaint-stamps-default: GPL-2) for
# ClipartDataset; without them it falls back to the emoji alone and says so. Tests never need them.
clipart-deps:
	@test -d /usr/share/openclipart/png -a -d /usr/share/tuxpaint/stamps \
	  || (apt-get update -qq && apt-get install -y -qq --no-install-recommends openclipart-png tuxpaint-stamps-default >/dev/null) \
	  || echo "the clip-art packages could not be installed: install them with: apt-get install openclipart-png tuxpaint-stamps-default"

test: $(INSTALLED) browser-deps
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

# All notebooks through papermill: SMOKE=1 (default) for the fast mode, SMOKE=0 for the full runs.
notebooks: $(INSTALLED) clipart-deps
	HF_HUB_OFFLINE=1 LDM_LITE_SMOKE=$(SMOKE) $(PYTHON) scripts/run_notebooks.py

# The worked solutions of the notebooks' exercises (notebooks/solutions/NN_*.py): SMOKE=1 (default) for tiny
# sizes (about 3 CPU minutes for all), SMOKE=0 for the real ones (hours: each file's docstring says how long).
solutions: $(INSTALLED) clipart-deps
	@failed=""; for solution in notebooks/solutions/[0-9][0-9]_*.py; do \
	  echo "== $$solution (LDM_LITE_SMOKE=$(SMOKE))"; \
	  HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 LDM_LITE_SMOKE=$(SMOKE) $(PYTHON) $$solution || failed="$$failed $$solution"; \
	done; test -z "$$failed" || { echo "failed:$$failed" >&2; exit 1; }

lab: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) outputs logs
