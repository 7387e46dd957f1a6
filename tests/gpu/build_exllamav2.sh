#!/usr/bin/env bash
# Build a binary exllamav2 0.3.2 wheel (package + compiled exllamav2_ext) against the
# torch that $PYTHON imports, with no GPU needed (issue 14).
#
#   tests/gpu/build_exllamav2.sh [SOURCE_WHEEL] [OUT_DIR]
#
# SOURCE_WHEEL: PyPI's exllamav2-0.3.2-py3-none-any.whl (default: the one in .whl/, else
#   pip download fetches it). OUT_DIR: where the built wheel goes (default .whl/).
# Environment: PYTHON (default python3), TORCH_CUDA_ARCH_LIST (default 9.0, the H200),
#   MAX_JOBS (default: all cores), CUDA_HOME (default: see cuda_home below).
# The patches in tests/gpu/exllamav2-patches/ are applied to the unpacked source first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
out=${2:-$repo/.whl}
mkdir -p "$out"
out=$(cd "$out" && pwd)

source_wheel=${1:-}
if [ -z "$source_wheel" ]; then
    source_wheel=$(ls "$repo"/.whl/exllamav2-0.3.2-py3-none-any.whl 2>/dev/null || true)
fi
if [ -z "$source_wheel" ]; then
    "$python" -m pip download -q --no-deps -d "$out" exllamav2==0.3.2
    source_wheel=$out/exllamav2-0.3.2-py3-none-any.whl
fi

# CUDA: $CUDA_HOME, else the nvidia-cuda-nvcc wheel's tree beside torch (site-packages/
# nvidia/cu13, exactly torch's CUDA), else /usr/local/cuda. The wheel's tree lacks the
# unversioned libcudart.so the link step asks for: it gets one through a shim folder.
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cuda_home() {
    local tree=$site/nvidia/cu13
    if [ -x "$tree/bin/nvcc" ]; then
        local shim=${TMPDIR:-/tmp}/exllamav2-cuda-home
        rm -rf "$shim" && mkdir -p "$shim/lib"
        ln -s "$tree/bin" "$tree/include" "$tree/nvvm" "$shim/"
        for lib in "$tree"/lib/*; do ln -s "$lib" "$shim/lib/"; done
        ln -sf "$tree/lib/libcudart.so.13" "$shim/lib/libcudart.so"
        echo "$shim"
    elif [ -x /usr/local/cuda/bin/nvcc ]; then
        echo /usr/local/cuda
    else
        echo "no nvcc: pip install nvidia-cuda-nvcc matching torch's CUDA, or set CUDA_HOME" >&2
        exit 1
    fi
}
export CUDA_HOME=${CUDA_HOME:-$(cuda_home)}
export PATH=$CUDA_HOME/bin:$PATH
# Headers for the host compiler (g++ builds the .cpp files; nvcc finds its own):
# torch's headers include cusparse.h, cublas_v2.h, cusolverDn.h, which the nvidia-*
# wheels torch depends on have and a bare nvcc install does not; and CUDA 13 moved
# CCCL (<nv/target>, included by cuda_fp16.h) into include/cccl, which nvcc adds by
# itself but torch 2.11's cpp_extension does not pass to g++.
headers=$(ls -d "$CUDA_HOME"/include/cccl "$site"/nvidia/*/include "$site"/nvidia/*/*/include 2>/dev/null | paste -sd: || true)
export CPATH=$headers${CPATH:+:$CPATH}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && "$python" -m zipfile -e "$source_wheel" .)
for patch in "$here"/exllamav2-patches/*.patch; do
    [ -e "$patch" ] || continue
    echo "applying $(basename "$patch")"
    patch -d "$work" -p1 --forward --quiet <"$patch"
done
cp "$here/exllamav2_setup.py" "$work/setup.py"

"$python" - <<'EOF'
import torch, subprocess, os
nvcc = subprocess.run([os.environ["CUDA_HOME"] + "/bin/nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); {nvcc}; arch {os.environ['TORCH_CUDA_ARCH_LIST']}; MAX_JOBS {os.environ['MAX_JOBS']}")
EOF
start=$(date +%s)
"$python" -m pip wheel -v --no-build-isolation --no-deps -w "$out" "$work"
seconds=$(($(date +%s) - start))
built=$(ls -t "$out"/exllamav2-0.3.2+*.whl | head -1)
echo "built $(basename "$built"): $(du -m "$built" | cut -f1) MiB in ${seconds} s"
