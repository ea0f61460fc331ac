# anyshape: `make demo` and `make test` each create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST := $(PY) -m pytest -q -p no:cacheprovider

.PHONY: demo test test-tensorflow test-jax test-torch venv clean

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
CORE_TESTS := tests/test_inception_v3.py tests/test_shapes.py

test: $(VENV)/.test-installed
	KERAS_BACKEND=tensorflow $(PYTEST) tests
	KERAS_BACKEND=jax $(PYTEST) $(CORE_TESTS)
	KERAS_BACKEND=torch $(PYTEST) $(CORE_TESTS)

clean:
	rm -rf $(VENV) build src/*.egg-info
