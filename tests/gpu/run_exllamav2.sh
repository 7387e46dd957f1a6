#!/usr/bin/env bash
# exllamav2 on a real GPU, end to end, in one run (issue 6); prints a results table.
#
#   tests/gpu/run_exllamav2.sh [--out DIR]
#
# Needs an NVIDIA GPU, torch with CUDA, nvcc whose CUDA major version matches torch's
# (torch.version.cuda), g++ and ninja. Everything else cortex and exllamav2 need must be
# importable; on a host without network, fetch wheels elsewhere with fetch_wheels.sh and
# set WHEELS=DIR: they are installed into a temporary folder, nothing system-wide.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}

if [ -n "${WHEELS:-}" ]; then
    site=$(mktemp -d)
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$site" "$WHEELS"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# Without an installed cortex, map the checkout's folders into the cortex namespace.
if ! "$python" -c "import cortex.common" 2>/dev/null; then
    site=${site:-$(mktemp -d)}
    mkdir -p "$site/cortex"
    for folder in common services console; do ln -sfn "$repo/$folder" "$site/cortex/$folder"; done
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$python" "$here/exl2_check.py" "$@"
