"""The scheduler's one-actor rule, kept by its layout: handlers are plain functions.

A handler that awaited could see the state change under it mid-decision (llama-swap
#946). So ``async def`` lives only in core.py (the loop) and effects.py (the slow work,
which reports back with a message); every other module of the package is synchronous.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cortex.services.gateway.scheduler as scheduler

ASYNC_ALLOWED = {"core.py", "effects.py"}


def test_only_the_loop_and_the_effects_are_async():
    folder = Path(scheduler.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert len(modules) > len(ASYNC_ALLOWED)
    found = [
        f"{path.name}:{node.lineno}"
        for path in modules
        if path.name not in ASYNC_ALLOWED
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith)
    ]
    assert not found, f"async code in a handler module: {found}"
