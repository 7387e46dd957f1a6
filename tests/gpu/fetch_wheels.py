"""Download the wheels run_exllamav2.sh needs on a GPU host without network.

    python tests/gpu/fetch_wheels.py [DIR]      (default .whl, ignored by git)

For Python 3.12 on x86-64 Linux: cortex's core dependencies and exllamav2 0.3.2 with
everything they require, walking the requirement tree but stopping at packages the
host's image already has (image-packages.txt), so torch and numpy are never fetched and
the image's versions stay in charge. exllamav2 0.3.2 comes as PyPI's pure wheel (its
sources); tests/gpu/build_exllamav2.sh turns it into the binary wheel beside it, which
run_exllamav2.sh then installs instead.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
ROOTS = [
    "litestar",
    "uvicorn",
    "httpx",
    "msgspec",
    "textual",
    "rich",
    "prometheus-client",
    "apscheduler<4",
    "jinja2",
    "nvidia-ml-py",
    "psutil",
    "exllamav2==0.3.2",
]
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
TARGET = {
    **default_environment(),
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
}


def image_packages() -> set[str]:
    lines = (HERE / "image-packages.txt").read_text().splitlines()
    return {canonicalize_name(line) for line in lines if line and not line.startswith("#")}


def download(requirement: str, into: Path) -> Path:
    before = set(into.iterdir())
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(into),
            requirement,
        ],
        check=True,
    )
    new = set(into.iterdir()) - before
    return next(iter(new)) if new else _existing(into, requirement)


def _existing(into: Path, requirement: str) -> Path:
    name = canonicalize_name(Requirement(requirement).name)
    return next(p for p in into.glob("*.whl") if canonicalize_name(p.name.split("-")[0]) == name)


def requirements_of(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    found = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker is None or requirement.marker.evaluate({**TARGET, "extra": ""}):
                found.append(requirement)
    return found


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else HERE.parents[1] / ".whl")
    out.mkdir(parents=True, exist_ok=True)
    have = image_packages()
    seen: set[str] = set()
    queue = [Requirement(r) for r in ROOTS]
    with tempfile.TemporaryDirectory() as scratch:
        while queue:
            requirement = queue.pop()
            name = canonicalize_name(requirement.name)
            if name in seen or name in have:
                continue
            seen.add(name)
            spec = f"{requirement.name}{requirement.specifier}"
            wheel = download(spec, Path(scratch))
            (out / wheel.name).write_bytes(wheel.read_bytes())
            queue += requirements_of(wheel)
            print(wheel.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
