# One-command setup, demo and tests on a machine without ROS 2: ROS 2 comes from PyPI wheels.
#   make setup   create .venv with ROS 2 (pip wheels), torch, gsplat and this package (idempotent)
#   make demo    setup, then the embedded demo (synthetic bag -> real node -> runs/demo/)
#   make test    setup, then lint + the whole test suite
# Override the torch requirement with e.g. `make setup TORCH="torch==2.5.1"`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
# No GPU: the CPU build of torch 2.13.0 (on CI machines it lies on local disk); GPU: a CUDA torch from PyPI.
TORCH ?= $(if $(HAS_GPU),torch>=2.4$(comma)<3,torch==2.13.0)
comma := ,
ROS_WHEELS := ros-rclpy[fastrtps] ros-sensor-msgs ros-geometry-msgs ros-nav-msgs ros-std-msgs \
	ros-std-srvs ros-visualization-msgs ros-diagnostic-msgs
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test lint soak clean

setup: $(STAMP)

$(STAMP): setup.py setup.cfg requirements.txt package.xml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q $(ROS_WHEELS)
	$(PIP) install -q -r requirements.txt pytest pytest-timeout ruff colcon-common-extensions
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "setup complete: $(VENV)"

demo: setup
	$(VENV)/bin/ilrm demo

lint: setup
	$(VENV)/bin/ruff check ilrm_ros launch test

test: lint
	sh test/viewer/install_chromium.sh
	$(PY) -m pytest -q

soak: setup
	$(PY) -m pytest -q -s -m soak -o addopts="" --timeout=0

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
