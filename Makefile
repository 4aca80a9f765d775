# nvc-pipe developer commands. `make help` lists them.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SAMPLE  := samples/bunny_256x144.mp4
# pytest-xdist workers for `make test`: CI has 2 cores; a module runs on one worker (its fixtures built once)
TEST_WORKERS ?= 2

.PHONY: help install ffmpeg mkvtoolnix demo test test-fast lint fuzz bench-gpu train-intra rd-intra clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: $(VENV)/.installed ## create .venv and install nvc-pipe (editable) with the test and ray extras

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	# torch 2.13.0 is a local CPU wheel on our machines (seconds); elsewhere fall back to what pip resolves.
	$(BIN)/pip install -q torch==2.13.0 || $(BIN)/pip install -q torch
	# the ray extra: tests/test_distributed.py runs a local Ray (measured 1-4 min to install from the registry)
	$(BIN)/pip install -q -e '.[test,ray]'
	touch $@

ffmpeg: ## install Debian's ffmpeg/ffprobe when missing (the tests drive the real binaries)
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || \
	  ($(SUDO) apt-get install -y -q ffmpeg >/dev/null 2>&1 || \
	   ($(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q ffmpeg >/dev/null))

mkvtoolnix: ## install Debian's mkvtoolnix (mkvinfo, mkvmerge) when missing (the MKV tests drive them)
	@command -v mkvinfo >/dev/null && command -v mkvmerge >/dev/null || \
	  ($(SUDO) apt-get install -y -q mkvtoolnix >/dev/null 2>&1 || \
	   ($(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q mkvtoolnix >/dev/null))

demo: install ffmpeg ## encode + decode the sample clip with the default preset, print PSNR and bpp
	@mkdir -p out
	$(BIN)/nvc encode $(SAMPLE) -o out/demo.mkv -y
	$(BIN)/nvc decode out/demo.mkv -o out/demo.mp4 -y --ref $(SAMPLE)
	@$(BIN)/nvc info out/demo.mkv

test: install ffmpeg mkvtoolnix ## run the test suite (CPU, 2 pytest-xdist workers, a few minutes)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=20

test-fast: install ffmpeg mkvtoolnix ## the suite without tests marked slow
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope -m "not slow"

lint: install ## ruff (pyflakes + pycodestyle rules, see pyproject.toml)
	$(BIN)/pip install -q ruff && $(BIN)/ruff check nvc_pipe plugins tests benchmarks

fuzz: install ## mutate real streams and run them through the decoder (0 crashes/hangs expected)
	$(BIN)/python -m nvc_pipe.fuzz --cases 10000

bench-gpu: ## the GPU check, <= 8 min on one H200 (= python3 benchmarks/gpu_check.py; no make there: docs/perf.md)
	PYTHONPATH=$${PYTHONPATH}:$(CURDIR):$(CURDIR)/plugins $(PY) benchmarks/gpu_check.py

train-intra: install ## retrain the shipped Ballé weights (CPU, 4 chained runs, ~1.5 h idle; fetches Debian mate-backgrounds; docs/intra.md)
	nice -n 10 $(BIN)/nvc train-intra balle --steps 3000 --device cpu --out out/balle-run1
	nice -n 10 $(BIN)/nvc train-intra balle --steps 1000 --device cpu --init out/balle-run1 --out out/balle-run2
	nice -n 10 $(BIN)/nvc train-intra balle --steps 12000 --device cpu --init out/balle-run2 --out out/balle-run3
	nice -n 10 $(BIN)/nvc train-intra balle --steps 36000 --device cpu --init out/balle-run3 \
	  --out plugins/nvc_balle/weights

rd-intra: install ## held-out RD of the image codecs vs JPEG/WebP (docs/rd_intra.json, docs/intra_rd.png)
	$(BIN)/python -m nvc_pipe.intra.rd --codecs balle --out docs

clean: ## remove build outputs (keeps .venv)
	rm -rf out build dist *.egg-info .pytest_cache
