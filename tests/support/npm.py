"""Real command-line clients from npm (Codex CLI), installed once into a cache folder.

    from support.npm import npm_binary

    codex = npm_binary("@openai/codex", "0.171.0", "codex")   # Path, or pytest.skip

Packages go to ``<repo>/.cache/npm/<package>@<version>`` (git-ignored), so a second
test session reuses them. Where npm is missing or cannot install (no registry), the
test is skipped with npm's reason: the only case the brief allows a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "npm"
INSTALL_TIMEOUT_S = 300


def npm_binary(package: str, version: str, binary: str) -> Path:
    prefix = CACHE / f"{package.replace('/', '__')}@{version}"
    path = prefix / "node_modules" / ".bin" / binary
    if path.exists():
        return path
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed, so {package} cannot be installed")
    prefix.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                f"{package}@{version}",
            ],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm install {package}@{version} took over {INSTALL_TIMEOUT_S}s")
    if done.returncode != 0 or not path.exists():
        pytest.skip(f"npm could not install {package}@{version}: {done.stderr.strip()[-500:]}")
    return path
