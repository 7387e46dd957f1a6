"""The real Claude Code CLI (``@anthropic-ai/claude-code`` from npm), run as a user would.

    from support.claude_code import claude_code, run_claude

    binary = claude_code()                 # installs once into run/claude-code; None if npm cannot
    result = run_claude(binary, gateway.url, "say hi", home=tmp_path / "home", cwd=tmp_path)
    result.reply                           # its --output-format json answer

Only ``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_AUTH_TOKEN`` point it at cortex; ``HOME`` is
a folder of the caller's (its session files live there, so ``--continue`` finds the
previous turn), telemetry and other non-essential traffic are off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "@anthropic-ai/claude-code"
CACHE_DIR = Path(__file__).resolve().parents[2] / "run" / "claude-code"
INSTALL_TIMEOUT_S = 300


class NotInstallable(Exception):
    """npm could not install a package here (the reason is the message)."""


def claude_code(cache_dir: Path = CACHE_DIR) -> Path:
    """The ``claude`` binary, installed from npm into ``cache_dir`` on first use."""
    binary = cache_dir / "node_modules" / ".bin" / "claude"
    if not binary.exists():
        npm_install(cache_dir, PACKAGE)
    return binary


def npm_install(prefix: Path, *packages: str) -> Path:
    """``npm install PACKAGES`` into ``prefix`` (its node_modules), or NotInstallable."""
    npm = shutil.which("npm")
    if npm is None:
        raise NotInstallable("npm is not installed")
    prefix.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *packages],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise NotInstallable(f"npm install took over {INSTALL_TIMEOUT_S}s") from None
    if done.returncode != 0:
        raise NotInstallable(f"npm install {' '.join(packages)} failed: {done.stderr[-500:]}")
    return prefix / "node_modules"


def version(binary: Path) -> str:
    return subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=60
    ).stdout.strip()


@dataclass
class ClaudeRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def reply(self) -> dict[str, Any]:
        """The ``--output-format json`` result object."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(
                f"claude printed no JSON (exit {self.returncode}):\n{self.stdout[-2000:]}\n"
                f"--- stderr ---\n{self.stderr[-2000:]}"
            ) from None


def run_claude(
    binary: Path,
    base_url: str,
    prompt: str,
    *args: str,
    home: Path,
    cwd: Path,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> ClaudeRun:
    """``claude -p PROMPT --output-format json ARGS...`` against ``base_url``."""
    import time

    home.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": "x",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        **(env or {}),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [str(binary), "-p", prompt, "--output-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    return ClaudeRun(done.returncode, done.stdout, done.stderr, time.perf_counter() - started)
