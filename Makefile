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

# Stamps record which extras are installed, so a second `make test` installs nothing. pip does not
# byte-compile what it installs (--no-compile): TensorFlow, PyTorch, JAX and the rest are tens of
# thousands of modules, of which a run imports a few; Python compiles those on first import
# (`pip install -e ".[test]"` into a new venv, pip's cache warm, Zen 4: 150 s of CPU -> 56 s), and
# writes their bytecode to __pycache__ for the next process. So make's commands run without
# PYTHONDONTWRITEBYTECODE: where the environment sets it (this project's machines do), nothing is
# ever written and every process compiles TensorFlow's, Keras' and PyTorch's modules again: the two
# xdist workers, the JAX and PyTorch runs, each CLI subprocess a test starts, each Ray worker
# (`import keras, anyshape.cli`: 14.5 s of CPU with it set, 5.7 s once the bytecode is written;
# `pytest --collect-only tests`: 33 s -> 11 s).
unexport PYTHONDONTWRITEBYTECODE
$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q --no-compile -e ".[fast,demo]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q --no-compile -e ".[test]"
	touch $@

venv: $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(PY) -m anyshape.demo

# The whole suite on TensorFlow, and the tests marked every_backend on JAX and PyTorch (what
# depends on the Keras backend: InceptionV3's and one member per family's parity with
# keras.applications, free size == fixed size and channels_first on those members, weight files
# loaded into the model, a staged training run with its resume, BatchNorm freezing and
# recalibration), each backend in its own pytest process (Keras picks its backend once per
# process). The TensorFlow run spreads the tests over two pytest-xdist workers: much of it is
# single-threaded model building and waiting on subprocesses, so two at a time fill the two cores;
# tests/conftest.py gives each worker one thread per framework (TensorFlow, ONNX Runtime,
# OpenVINO, OpenMP) instead of one per core, keeps each file's tests on one worker (their module
# fixtures are made once), except the per-network harness's, and starts the longest files first
# (tests/durations.json). The JAX and PyTorch runs start at the same time as the TensorFlow run,
# JAX at the same priority (its work is done beside TensorFlow's instead of alone on one core
# after it: a run where it waited at a lower priority ended 184 s after TensorFlow), PyTorch at a
# lower one (nice): it takes the cores the TensorFlow workers leave idle (compiling, waiting on a
# subprocess); their logs are printed whole after it. XLA compiles the JAX run's programs
# without LLVM's expensive optimisations: the tests run each shape once or twice, so compiling is
# their cost, not running (the JAX parity test of DenseNet121: CPU time -20 %). `make test` ends
# with each stage's wall time. To refresh
# tests/durations.json from a run: `ANYSHAPE_WRITE_DURATIONS=1 make test`.
BACKEND_TESTS := $(shell grep -l '@pytest.mark.every_backend\|marks=pytest.mark.every_backend\|every_backend=' tests/test_*.py)
# The training tests marked every_backend train the tiny registered network (tests/tiny_net.py),
# which XLA compiles in seconds: JAX runs them too.
JAX_TESTS := $(BACKEND_TESTS)
XDIST := -n 2 --dist loadgroup --no-loadscope-reorder
NICE := nice -n 10
# The PyTorch run's OpenMP pool: one thread. Two (one per core) only spun beside the two TensorFlow
# workers: three of its every_backend tests took 21.3 s of CPU with two threads, 16.2 s with one,
# and less wall time too, on an otherwise idle Zen 4 (JAX: no difference, XLA compiles on one thread).
TORCH_THREADS := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
JAX_XLA_FLAGS := --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true

# Lint, format and types (seconds): ruff on everything, mypy on src/. `make test` runs them beside
# the tests.
check: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/ruff format --check src tests benchmarks tools
	$(VENV)/bin/mypy

# One shell, so that each stage's start and end are known: install (the venv and the test extra,
# nothing when already installed), then the three backends (JAX and PyTorch beside TensorFlow) and
# the checks (ruff, mypy: about 25 s on one core, which waited alone before the tests; now beside
# them, their log printed after), and the table of wall times.
test:
	@set -u; now() { date +%s; }; t0=$$(now); \
	$(MAKE) --no-print-directory $(VENV)/.test-installed || exit $$?; t1=$$(now); t2=$$t1; \
	( $(MAKE) --no-print-directory check > $(VENV)/test-check.log 2>&1; echo "$$? $$(now)" > $(VENV)/test-check.end ) & checks=$$!; \
	echo "KERAS_BACKEND=tensorflow: tests ($(XDIST)); beside it: KERAS_BACKEND=jax XLA_FLAGS=\"$(JAX_XLA_FLAGS)\": $(JAX_TESTS) -m every_backend; at $(NICE): KERAS_BACKEND=torch $(TORCH_THREADS): $(BACKEND_TESTS) -m every_backend"; \
	( KERAS_BACKEND=jax XLA_FLAGS="$(JAX_XLA_FLAGS)" $(PYTEST) --durations=10 $(JAX_TESTS) -m every_backend > $(VENV)/test-jax.log 2>&1; \
	  echo "$$? $$(now)" > $(VENV)/test-jax.end ) & jax=$$!; \
	( KERAS_BACKEND=torch $(TORCH_THREADS) $(NICE) $(PYTEST) --durations=10 $(BACKEND_TESTS) -m every_backend > $(VENV)/test-torch.log 2>&1; \
	  echo "$$? $$(now)" > $(VENV)/test-torch.end ) & torch=$$!; \
	KERAS_BACKEND=tensorflow $(PYTEST) $(XDIST) --durations=25 tests; tf_rc=$$?; t3=$$(now); \
	wait $$checks $$jax $$torch; \
	read check_rc check_end < $(VENV)/test-check.end; \
	read jax_rc jax_end < $(VENV)/test-jax.end; read torch_rc torch_end < $(VENV)/test-torch.end; \
	echo "== checks: ruff, mypy (exit $$check_rc)"; cat $(VENV)/test-check.log; \
	echo "== JAX backend (exit $$jax_rc)"; cat $(VENV)/test-jax.log; \
	echo "== PyTorch backend (exit $$torch_rc)"; cat $(VENV)/test-torch.log; \
	t4=$$(now); rm -f $(VENV)/test-check.end $(VENV)/test-jax.end $(VENV)/test-torch.end; \
	echo "== wall time per stage, $$(nproc) cores, $$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"; \
	printf '%-30s %6s s\n' "install" $$((t1 - t0)) "tensorflow (exit $$tf_rc)" $$((t3 - t2)) \
		"checks (exit $$check_rc, beside)" $$((check_end - t2)) "jax (exit $$jax_rc, beside)" $$((jax_end - t2)) \
		"torch (exit $$torch_rc, beside)" $$((torch_end - t2)) "total" $$((t4 - t0)); \
	test $$check_rc -eq 0 && test $$tf_rc -eq 0 && test $$jax_rc -eq 0 && test $$torch_rc -eq 0

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
