# The README's two commands: `make demo` and `make test`. Both create .venv when it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench check-gguf clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools

# torch first and pinned: a bare `torch` requirement elsewhere would pull GBs of CUDA wheels.
# Debian's Chromium lets the report test look at the page, Debian's redis-server is the real
# server of the Redis dedup index tests; without them those tests skip. libjemalloc2 is the
# training processes' host allocator (swahili100/host_memory.py); without it they use glibc's.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[tpu,data,export,eval,viz,wandb,dev,launch,bench]'
	command -v chromium >/dev/null && command -v redis-server >/dev/null && \
	  $(BIN)/python -c "from swahili100 import host_memory as h; assert h.find_jemalloc()" \
	  2>/dev/null || \
	  { command -v apt-get >/dev/null && (apt-get update -qq && \
	    apt-get install -y -qq chromium redis-server libjemalloc2) >/dev/null 2>&1; } || \
	  echo "note: chromium, redis-server or libjemalloc2 not installed; the browser and Redis" \
	    "tests will skip and training uses glibc's allocator"
	touch $(STAMP)

install: $(STAMP)

# The demo and the tests run on the CPU even where libtpu is installed (the [tpu] extra).
# `make demo EVAL_DATA=DIR` also scores the benchmark tasks whose files DIR holds.
EVAL_DATA ?=
demo: $(STAMP)
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(BIN)/python -m swahili100.demo --output demo_out \
	  $(if $(EVAL_DATA),--eval-data $(EVAL_DATA))

# Workers each take whole test modules (module fixtures are built once).
TEST_WORKERS ?= 2
test: $(STAMP)
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bench: $(STAMP)
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/data_pipeline.py

clean:
	rm -rf demo_out runs .pytest_cache

# Loads the demo's GGUF in llama.cpp: tokenization and F32 logits vs the HF export, Q8_0/Q4_0 drift;
# then the same for a random model with model.qk_norm (GGUF qwen3).
# `make check-gguf TEXTS=DIR` adds the first documents of DIR's last *.jsonl.gz shard to the texts.
TEXTS ?=
check-gguf: $(STAMP)
	test -d demo_out/export/gguf || $(MAKE) demo
	$(BIN)/pip install -q llama-cpp-python==0.3.16
	$(BIN)/python -m swahili100.export.check_gguf --gguf-dir demo_out/export/gguf \
	  --hf-dir demo_out/export/hf $(if $(TEXTS),--texts $(TEXTS))
	$(BIN)/python -m swahili100.export.check_gguf --qk-norm $(if $(TEXTS),--texts $(TEXTS))
