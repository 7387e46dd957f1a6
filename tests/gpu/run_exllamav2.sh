#!/usr/bin/env bash
# exllamav2 on a real GPU, end to end, in one run (issue 14); prints a results table and
# a block ready to paste into BENCHMARKS.md.
#
#   tests/gpu/run_exllamav2.sh [--out DIR] [--budget-s SECONDS] [--dry-run]
#
# Needs an NVIDIA GPU and torch with CUDA. Python packages cortex and exllamav2 need that
# the host lacks come as wheels in WHEELS (default: the repo's .whl/, filled by
# fetch_wheels.py and build_exllamav2.sh on a machine with network), installed into a
# temporary folder, nothing system-wide. With the binary exllamav2 wheel there
# (exllamav2-0.3.2+cuXYZ.torchA.B.C-*.whl, from build_exllamav2.sh) nothing is compiled;
# without it the run builds the extension first (nvcc matching torch's CUDA, g++, ninja).
# --dry-run checks the measurements on a CPU host (demo-tiny, transformers backend).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
wheels=${WHEELS:-$repo/.whl}

site=$(mktemp -d)
if ls "$wheels"/*.whl >/dev/null 2>&1; then
    install=("$wheels"/*.whl)
    if ls "$wheels"/exllamav2-0.3.2+*.whl >/dev/null 2>&1; then
        # The binary wheel replaces PyPI's pure one (two versions of one package stop pip).
        install=()
        for wheel in "$wheels"/*.whl; do
            [[ $(basename "$wheel") == exllamav2-0.3.2-py3-none-any.whl ]] || install+=("$wheel")
        done
    fi
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$site" "${install[@]}"
fi
# Without an installed cortex, map the checkout's folders into the cortex namespace.
if ! PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" "$python" -c "import cortex.common" 2>/dev/null; then
    mkdir -p "$site/cortex"
    for folder in common services console; do ln -sfn "$repo/$folder" "$site/cortex/$folder"; done
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$python" "$here/exl2_check.py" "$@"
