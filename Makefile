# anyshape: `make demo` and `make test` each create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST := $(PY) -m pytest -q -p no:cacheprovider

.PHONY: demo test check venv clean mutate

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps record which extras are installed, so a second `make test` installs nothing.
$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q -e ".[fast,demo]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q -e ".[test]"
	touch $@

venv: $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(PY) -m anyshape.demo

# The whole suite on TensorFlow, then the tests marked every_backend on JAX and PyTorch (what
# depends on the Keras backend: InceptionV3's and one member per family's parity with
# keras.applications, free size == fixed size and channels_first on those members, weight files
# loaded into the model, a staged training run with its resume, BatchNorm freezing and
# recalibration), each backend in its own pytest process (Keras picks its backend once per
# process). The TensorFlow run spreads the tests over two pytest-xdist workers: much of it is
# single-threaded model building and waiting on subprocesses, so two at a time fill the two cores.
# tests/conftest.py keeps each file's tests on one worker (their module fixtures are made once),
# except the per-network harness's, and starts the longest files first. The JAX and PyTorch runs
# go side by side for the same reason; their logs are printed whole, one after the other.
BACKEND_TESTS := $(shell grep -l '@pytest.mark.every_backend\|marks=pytest.mark.every_backend\|every_backend=' tests/test_*.py)
# On JAX, XLA compiles InceptionV3's train step for minutes: the training tests run on TensorFlow
# and PyTorch.
JAX_TESTS := $(filter-out tests/test_training.py,$(BACKEND_TESTS))
XDIST := -n 2 --dist loadgroup --no-loadscope-reorder

# Lint, format and types first (seconds): ruff on everything, mypy on src/.
check: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/ruff format --check src tests benchmarks tools
	$(VENV)/bin/mypy

test: check
	KERAS_BACKEND=tensorflow $(PYTEST) $(XDIST) tests
	@echo "KERAS_BACKEND=jax: $(JAX_TESTS) -m every_backend; KERAS_BACKEND=torch: $(BACKEND_TESTS) -m every_backend"
	@KERAS_BACKEND=jax $(PYTEST) $(JAX_TESTS) -m every_backend > $(VENV)/test-jax.log 2>&1 & jax=$$!; \
	KERAS_BACKEND=torch $(PYTEST) $(BACKEND_TESTS) -m every_backend > $(VENV)/test-torch.log 2>&1; torch_rc=$$?; \
	wait $$jax; jax_rc=$$?; \
	echo "== JAX backend (exit $$jax_rc)"; cat $(VENV)/test-jax.log; \
	echo "== PyTorch backend (exit $$torch_rc)"; cat $(VENV)/test-torch.log; \
	test $$jax_rc -eq 0 && test $$torch_rc -eq 0

# Mutation testing of one module against the tests that cover it (tools/mutate.py; not part of
# `make test` or CI): MAX mutants, a sample drawn with SEED (MAX=0: all of them), e.g.
#   make mutate MODULE=src/anyshape/engine/manifest.py TESTS="tests/test_engine_manifest.py"
MAX ?= 20
SEED ?= 0
mutate: $(VENV)/.test-installed
	@test -n "$(MODULE)" -a -n "$(TESTS)" || { echo 'usage: make mutate MODULE=src/anyshape/x.py TESTS="tests/test_x.py" [MAX=20 SEED=0]'; exit 2; }
	$(PY) tools/mutate.py $(MODULE) $(TESTS) --max $(MAX) --seed $(SEED)

clean:
	rm -rf $(VENV) build src/*.egg-info
