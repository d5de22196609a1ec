# raysys: two commands on a fresh machine.
#   make demo   venv + install + Fashion-MNIST + shards + ResNet-20 on 2 Ray Train workers
#   make test   venv + install + data packages + the test suite (slow tests: make test-slow)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_DIR ?= /usr/share/datasets/fashion-mnist
SHARDS := data/shards/fashion-mnist
PYTEST_FLAGS ?=

# $(call apt-install,PACKAGE,PRESENT-TEST,IF-PRESENT): apt-get install PACKAGE as root unless PRESENT-TEST
# holds (then run IF-PRESENT); not root: say so and go on.
apt-install = if $(2); then $(3); \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -q $(1) || (apt-get update -q && apt-get install -y -q $(1))) >/dev/null; \
	else echo "not root: skipping apt-get install $(1)"; fi

.PHONY: demo test test-slow test-all install data-packages jpeg-headers stir-glyphs gpu-check gpu-check-bare clean help

help:
	@echo "make demo | make test | make test-slow | make gpu-check | make clean"

$(STAMP): requirements.txt pyproject.toml raysys/data/_jpeg_window.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@$(MAKE) --no-print-directory jpeg-headers
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@$(PY) -c "import raysys.data.jpeg_window as w; print('partial JPEG decoding:', 'built' if w.available() else 'not built (no libjpeg headers): JPEGs are decoded whole')"
	$(VENV)/bin/raysys --version
	touch $(STAMP)

install: $(STAMP) stir-glyphs

# STIR emoji's Font Awesome Free 5.15.3 (npm tarball, sha512-pinned, cached in ~/.cache/raysys/fontawesome or
# $RAYSYS_CACHE_DIR/fontawesome; docs/stir.md). Offline: a warning, and emoji needs --glyphs fontawesome6.
stir-glyphs: $(STAMP)
	@$(PY) -m raysys stir fetch-glyphs >/dev/null || echo "warning: Font Awesome 5.15.3 not fetched; STIR emoji needs it (or --glyphs fontawesome6)"

# libjpeg-turbo's headers, for raysys/data/_jpeg_window.c (decoding only a crop's window). Needs root;
# without them the build skips the helper and JPEGs are decoded whole (the same pixels, more CPU).
jpeg-headers:
	@$(call apt-install,libjpeg62-turbo-dev,[ -f /usr/include/jpeglib.h ],:)

# Debian's Fashion-MNIST package (real IDX files, offline). Needs root; skipped otherwise.
data-packages:
	@$(call apt-install,dataset-fashion-mnist,[ -d "$(FASHION_DIR)" ],echo "Fashion-MNIST found in $(FASHION_DIR)")

test: install data-packages
	$(PY) -m pytest -m "not slow" $(PYTEST_FLAGS)

test-slow: install data-packages
	$(PY) -m pytest -m slow $(PYTEST_FLAGS)

test-all: install data-packages
	$(PY) -m pytest $(PYTEST_FLAGS)

demo: install data-packages
	$(PY) -m pipelines.demo --fashion-dir "$(FASHION_DIR)" --shards $(SHARDS)

# One GPU node: does raysys work here, and how fast (docs/BENCHMARKS.md#gpu-check). Writes gpu-check/gpu-check.{json,md}.
GPU_CHECK_OUT ?= gpu-check
gpu-check: install
	$(PY) -m raysys bench gpu --set out=$(GPU_CHECK_OUT)

# The torch-only tier, on any python with torch + torchvision (no venv, no Ray).
gpu-check-bare:
	$${GPU_PYTHON:-python3} raysys/bench/gpu.py --tier bare --out $(GPU_CHECK_OUT)

clean:
	rm -rf $(VENV) runs mlflow.db mlartifacts data/shards .pytest_cache
