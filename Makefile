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

# The whole suite on TensorFlow, then the tests of what depends on the Keras backend (the model,
# shapes, CLI, engine, weight files and training) on JAX and PyTorch, each backend in its own
# pytest process (Keras picks its backend once per process). The TensorFlow run spreads its test
# files over two pytest-xdist workers: much of it is single-threaded model building and waiting on
# subprocesses, so two files at a time fill the two cores. The JAX and PyTorch runs go side by side
# for the same reason; their logs are printed whole, one after the other. Tests marked
# one_backend (minutes each, nothing backend-specific in what they check) run on TensorFlow only.
# tests/test_family_<family>.py: each family's parity with keras.applications, on every backend.
BACKEND_TESTS := tests/test_inception_v3.py tests/test_shapes.py tests/test_cli.py tests/test_engine.py \
	tests/test_weights_channels.py tests/test_weights_keras_h5.py tests/test_weights_torch.py \
	tests/test_weights_convert.py tests/test_weights_registry.py tests/test_weights_download.py \
	tests/test_training.py $(wildcard tests/test_family_*.py)
XDIST := -n 2 --dist loadfile

# Lint, format and types first (seconds): ruff on everything, mypy on src/.
check: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

test: check
	KERAS_BACKEND=tensorflow $(PYTEST) $(XDIST) tests
	@echo "KERAS_BACKEND=jax and KERAS_BACKEND=torch: $(BACKEND_TESTS) -m 'not one_backend'"
	@KERAS_BACKEND=jax $(PYTEST) $(BACKEND_TESTS) -m "not one_backend" > $(VENV)/test-jax.log 2>&1 & jax=$$!; \
	KERAS_BACKEND=torch $(PYTEST) $(BACKEND_TESTS) -m "not one_backend" > $(VENV)/test-torch.log 2>&1; torch_rc=$$?; \
	wait $$jax; jax_rc=$$?; \
	echo "== JAX backend (exit $$jax_rc)"; cat $(VENV)/test-jax.log; \
	echo "== PyTorch backend (exit $$torch_rc)"; cat $(VENV)/test-torch.log; \
	test $$jax_rc -eq 0 && test $$torch_rc -eq 0

clean:
	rm -rf $(VENV) build src/*.egg-info
