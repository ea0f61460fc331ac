# anyshape: `make demo` and `make test` each create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST := $(PY) -m pytest -q -p no:cacheprovider

.PHONY: demo test check venv clean

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

# The whole suite on TensorFlow (the default backend), then the core model tests on JAX and
# PyTorch, each backend in its own pytest process (Keras picks its backend once per process).
# The JAX and PyTorch runs are mostly single-threaded graph building and compiling, so they run
# side by side on the two cores; their logs are printed whole, one after the other.
CORE_TESTS := tests/test_inception_v3.py tests/test_shapes.py tests/test_cli.py tests/test_engine.py tests/test_weights_channels.py

# Lint, format and types first (seconds): ruff on everything, mypy on src/.
check: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

test: check
	KERAS_BACKEND=tensorflow $(PYTEST) tests
	@echo "KERAS_BACKEND=jax and KERAS_BACKEND=torch: $(CORE_TESTS)"
	@KERAS_BACKEND=jax $(PYTEST) $(CORE_TESTS) > $(VENV)/test-jax.log 2>&1 & jax=$$!; \
	KERAS_BACKEND=torch $(PYTEST) $(CORE_TESTS) > $(VENV)/test-torch.log 2>&1; torch_rc=$$?; \
	wait $$jax; jax_rc=$$?; \
	echo "== JAX backend (exit $$jax_rc)"; cat $(VENV)/test-jax.log; \
	echo "== PyTorch backend (exit $$torch_rc)"; cat $(VENV)/test-torch.log; \
	test $$jax_rc -eq 0 && test $$torch_rc -eq 0

clean:
	rm -rf $(VENV) build src/*.egg-info
