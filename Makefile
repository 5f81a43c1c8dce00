# camheal: the two commands of the README's quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q
DEMO_ARGS ?=

.PHONY: demo test bench lint clean

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "camheal needs Python >= 3.10, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

# Runtime install: numpy, OpenCV, ONNX Runtime, dbus-fast (no PyTorch).
$(VENV)/.runtime: pyproject.toml | $(PY)
	$(PIP) -e .
	@touch $@

# Test/training install: dev tools plus the local CPU build of PyTorch (never CUDA wheels).
$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) -e '.[dev]' 'torch==2.13.0' 'kornia>=0.7'
	@touch $@

.PHONY: dbus-daemon
dbus-daemon:
	@.ci/ensure-dbus-daemon

demo: $(VENV)/.runtime dbus-daemon
	$(PY) -m camheald.demo $(DEMO_ARGS)

test: $(VENV)/.dev dbus-daemon
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

bench: $(VENV)/.dev dbus-daemon
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
