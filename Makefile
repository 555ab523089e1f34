# Two entry points that set themselves up on a fresh machine:
#   make demo   tiny dataset -> short CPU pre-training -> evaluation report, outputs under demo/results
#   make test   the test suite (what CI runs); make test-fast skips the tests marked slow
# Set-up installs into .venv. torch is installed first and pinned so that pip keeps it: on this kind of
# machine torch==2.13.0 resolves to a local CPU build; elsewhere pass TORCH="torch==X --index-url URL".

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
CORES  ?= 2
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint setup clean-demo FORCE

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

DEMO        := demo/results
DEMO_CKPT   := $(DEMO)/pretrain/checkpoints/last.ckpt
DEMO_PLAIN  := $(DEMO)/pretrain_plain/checkpoints/last.ckpt
DEMO_REPORT := $(DEMO)/report/report.html

demo: $(DEMO_REPORT)
	@echo "report: $(DEMO_REPORT) (metrics: $(DEMO)/report/metrics.json)"

# Each step runs every time and does only what is missing: Snakemake re-runs only out-of-date jobs
# (--unlock first clears the lock a hard kill leaves), the fit resumes from last.ckpt (a finished run
# returns at once), the report is redrawn when the checkpoint changed.
$(DEMO)/dataset_manifest.json: $(STAMP) FORCE
	$(BIN)/snakemake --snakefile workflow/Snakefile --directory demo --unlock --quiet all
	$(BIN)/snakemake --snakefile workflow/Snakefile --directory demo --cores $(CORES) all
	$(BIN)/python -m cryoengine report $(DEMO)

$(DEMO_CKPT): $(DEMO)/dataset_manifest.json FORCE
	$(BIN)/python -m aptvit.fit --config configs/pretrain_demo.yaml \
		$$(test -f $(DEMO_CKPT) && echo --ckpt_path last)

# The plain-ViT twin, pre-trained with the same recipe: the report's baseline for the phase selector.
$(DEMO_PLAIN): $(DEMO)/dataset_manifest.json FORCE
	$(BIN)/python -m aptvit.fit --config configs/pretrain_demo.yaml --config configs/pretrain_demo_plain.yaml \
		$$(test -f $(DEMO_PLAIN) && echo --ckpt_path last)

$(DEMO_REPORT): $(DEMO_CKPT) $(DEMO_PLAIN)
	$(BIN)/python -m aptvit.evaluate --checkpoint $(DEMO_CKPT) --plain-checkpoint $(DEMO_PLAIN) \
		--dataset $(DEMO)/dataset.zarr -o $(DEMO)/report \
		--cnn-epochs 5 --align-pairs 2 --exhaustive-step-deg 20 --average-particles 32

test: $(STAMP)
	$(BIN)/ruff check cryoengine aptvit tests benchmarks examples workflow/scripts
	$(BIN)/ruff format --check cryoengine aptvit tests benchmarks examples workflow/scripts
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --snakefile workflow/Snakefile --directory .test --lint
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not gpu" tests

# The fast path while editing: no workflow runs, no slow training tests (CI runs `make test`, everything).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu and not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check cryoengine aptvit tests benchmarks examples workflow/scripts
	$(BIN)/ruff format --check cryoengine aptvit tests benchmarks examples workflow/scripts
	$(BIN)/mypy

FORCE:

clean-demo:
	rm -rf demo/results demo/resources demo/logs demo/.snakemake
