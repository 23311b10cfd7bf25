#!/usr/bin/env bash
# The GPU check (README "The GPU check"): on a CUDA machine with no network, install asyncrl onto the
# machine's own torch from the wheel folder carried beside the working tree, run the `gpu` tests, then
# benchmarks/gpu_check.py, which writes $OUT/gpu_check.json and prints a one-screen table, last.
#
#   make gpu-wheels                     # where there is a registry: fills .gpu-wheels/ (Python 3.12, x86-64)
#   OUT=/somewhere scripts/gpu_check.sh # on the GPU machine, from the repo root (OUT default: runs/gpu_check)
#   make gpu-check-dry                  # here, on CPUs: the same steps in a clean venv, no GPU
#
# GPU_CHECK_DRY=1: a dry run on CPUs. The venv is made clean and given the image's packages
# (scripts/gpu_image.txt) from the registry first; then the same no-index installs, the `gpu` tests are
# collected (they need CUDA to run), the device-independent trainer, engine and TOPLOC tests run under the
# image's versions instead, and the benchmark runs on a tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-runs/gpu_check}
wheels=${GPU_WHEELS:-.gpu-wheels}
python=${GPU_CHECK_PYTHON:-python3}
venv=${GPU_CHECK_VENV:-$(mktemp -d)/venv}
dry=${GPU_CHECK_DRY:-}
if [ ! -d "$wheels" ]; then
    echo "no $wheels/: run 'make gpu-wheels' where there is a registry and carry $wheels with the tree" >&2
    exit 2
fi
mkdir -p "$out"
step() { echo "== $(date +%T) $*"; }

if [ -n "$dry" ]; then
    step "a clean venv with the GPU image's packages, from the registry"
    "$python" -m venv --clear "$venv"
    "$venv/bin/pip" install --quiet --progress-bar off -r scripts/gpu_image.txt
else
    step "a venv over the image's packages (torch $("$python" -c 'import torch; print(torch.__version__)'))"
    "$python" -m venv --clear --system-site-packages "$venv"
fi
step "asyncrl and the missing packages from $wheels, no index"
offline=(--quiet --progress-bar off --no-index --find-links "$wheels")
"$venv/bin/pip" install "${offline[@]}" -r scripts/gpu_wheels.txt
"$venv/bin/pip" install "${offline[@]}" --no-deps .
rm -rf build src/asyncrl.egg-info
"$venv/bin/python" -c "import asyncrl.cli, torch; print('asyncrl from', asyncrl.__path__[0], '| cuda:', torch.cuda.is_available())"

status=0
pytest=("$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE --junitxml "$out/gpu_tests.xml")
if [ -n "$dry" ]; then
    step "the gpu tests, collected"
    "$venv/bin/python" -m pytest -p no:cacheprovider -q -m gpu --collect-only tests | tail -n 3
    step "device-independent tests under the image's versions"
    "${pytest[@]}" tests/unit/trainer tests/unit/inference/torch tests/unit/toploc tests/unit/test_devices.py \
        tests/unit/test_moe.py tests/integration/inference/test_engine_fidelity.py \
        tests/integration/inference/test_engine_moe.py -m "not slow" || status=$?
    bench=(--dry)
else
    step "the gpu tests"
    "${pytest[@]}" -m gpu tests || status=$?
    bench=()
fi
step "the benchmark"
"$venv/bin/python" benchmarks/gpu_check.py --out "$out" --tests "$out/gpu_tests.xml" "${bench[@]}" || status=$?
exit "$status"
