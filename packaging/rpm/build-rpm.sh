#!/usr/bin/env bash
# Build cortex-fleet and cortex-fleet-neuron RPMs from this checkout.
#
#   packaging/rpm/build-rpm.sh [OUT_DIR]
#
# Needs rpmbuild (Fedora/RHEL: rpm-build; Debian/Ubuntu: rpm), a Python 3.11+ with venv
# for the target layout (PYTHON, default /usr/bin/python3.11), and pip access to the
# dependencies once, to fill the wheelhouse. TORCH_SPEC picks the torch build that the
# neuron package bundles (default torch==2.13.0; for CUDA hosts use a CUDA build, e.g.
# TORCH_SPEC=torch==2.13.0 PIP_INDEX_URL=https://download.pytorch.org/whl/cu130).
# RPM_PAYLOAD sets the payload compression (default w3.zstdio; w1.zstdio is faster).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(mkdir -p "${1:-$root/dist/rpm}" && cd "${1:-$root/dist/rpm}" && pwd)
python=${PYTHON:-/usr/bin/python3.11}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
work=${RPM_WORKDIR:-$(mktemp -d)}

command -v rpmbuild >/dev/null || { echo "rpmbuild not found: install rpm-build (or rpm on Debian)" >&2; exit 1; }
"$python" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' ||
    { echo "$python must be Python 3.11+ with the venv module (set PYTHON)" >&2; exit 1; }
version=$("$python" -c 'import tomllib; print(tomllib.load(open("'"$root"'/pyproject.toml", "rb"))["project"]["version"])')

mkdir -p "$work"/{SOURCES,SPECS,BUILD,RPMS,SRPMS,wheelhouse}
# The source tarball: tracked files plus untracked ones git does not ignore.
(cd "$root" && git ls-files -z --cached --others --exclude-standard) |
    tar -C "$root" --null -T - --transform "s#^#cortex-fleet-$version/#" -czf "$work/SOURCES/cortex-fleet-$version.tar.gz"

# The wheelhouse: this project's wheel and every dependency's, for an offline %install.
pip="$python -m pip --disable-pip-version-check"
$pip wheel --quiet --wheel-dir "$work/wheelhouse" "$torch_spec" "$root[neuron]" setuptools wheel

rpmbuild -bb "$here/cortex-fleet.spec" \
    --define "_topdir $work" \
    --define "version $version" \
    --define "wheelhouse $work/wheelhouse" \
    --define "python $python" \
    ${RPM_PAYLOAD:+--define "_binary_payload $RPM_PAYLOAD"} \
    --quiet
find "$work/RPMS" -name '*.rpm' -exec cp {} "$out/" \;
ls -1 "$out"/*.rpm
[ -n "${RPM_WORKDIR:-}" ] || rm -rf "$work"
