#!/usr/bin/env bash
# Pack NVIDIA cuEquivariance's triangle kernels (the 'foldatlas[cuda]' extra) for a GPU machine without network.
#
# The device machine (torch 2.11+cu130, Python 3.12) cannot reach PyPI, and only 64 MiB of working tree travel
# there: the four CUDA 13 wheels are 70.5 MiB, their unpacked files recompressed with xz 28 MiB. This script, run
# where PyPI is reachable, downloads the pinned wheels (plus platformdirs, which the multiplicative kernel imports
# and that image lacks), unpacks them into one site folder and writes .cueq/cueq_cu13.tar.xz (ignored by git).
#
# Then, on the device (carry: [".cueq"]):
#   mkdir -p /tmp/site && tar -xJf .cueq/cueq_cu13.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:src
#   python3 benchmarks/predict/bench_device.py --out $OUT/bench_device.json
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=0.13.0
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$work/wheels" "cuequivariance==$VERSION" "cuequivariance-torch==$VERSION" \
    "cuequivariance-ops-torch-cu13==$VERSION" "cuequivariance-ops-cu13==$VERSION" "platformdirs>=4,<5"
mkdir -p "$work/site" .cueq
for wheel in "$work"/wheels/*.whl; do
    "$PY" -m zipfile -e "$wheel" "$work/site"
done
find "$work/site" -name '__pycache__' -prune -exec rm -rf {} +
tar -C "$work/site" -cf - . | xz -9 -T2 > .cueq/cueq_cu13.tar.xz
grep -qxF '/.cueq/' .git/info/exclude 2>/dev/null || echo '/.cueq/' >> .git/info/exclude
ls -l .cueq/cueq_cu13.tar.xz
sha256sum "$work"/wheels/*.whl
