"""Whether exllamav2 can run with this torch, and if not, the one line that says the fix.

Checked in the worker before exllamav2 is imported. exllamav2 0.3.2 is on PyPI only as
a pure-Python wheel whose import compiles its CUDA extension (minutes, and only where
nvcc and the CUDA headers are); its prebuilt binary wheels stop at torch 2.9 / CUDA 12.8.
So a load needs the extension prebuilt for exactly this torch, as the binary wheel that
tests/gpu/build_exllamav2.sh makes (version ``0.3.2+cu130.torch2.11.0``), and never
compiles it: missing, or built for another torch or CUDA, is refused with the fix.
"""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

from cortex.services.neuron.engines.base import EngineUnavailable

EXTENSION = "exllamav2_ext"
BUILD_FIX = (
    "build it for this torch with tests/gpu/build_exllamav2.sh and pip install the wheel "
    "it writes to .whl/ (README: GPU hosts)"
)


def torch_build(torch: Any) -> str:
    cuda = torch.version.cuda
    return f"torch {torch.__version__}" + (f" / CUDA {cuda}" if cuda else " (CPU only)")


def built_for(version: str) -> tuple[str, str] | None:
    """(CUDA, torch) a binary wheel names in its version, ``0.3.2+cu130.torch2.11.0`` ->
    ("13.0", "2.11.0"); None for a version without that tag (PyPI's pure wheel)."""
    match = re.fullmatch(r"[^+]+\+cu(\d+)(\d)\.torch(\d+(?:\.\d+)*)", version)
    if match is None:
        return None
    return f"{match[1]}.{match[2]}", match[3]


def require_extension(torch: Any) -> None:
    """Raise ``EngineUnavailable`` naming the fix unless exllamav2 and an extension
    built for this torch are installed."""
    try:
        version = importlib.metadata.version("exllamav2")
    except importlib.metadata.PackageNotFoundError:
        raise EngineUnavailable(
            "backend exllamav2 is not installed in the worker's Python: pip install "
            f"'cortex-fleet[cuda]', then {BUILD_FIX}"
        ) from None
    tagged = built_for(version)
    here = (torch.version.cuda, torch.__version__.split("+")[0])
    if tagged is not None and tagged != here:
        raise EngineUnavailable(
            f"exllamav2 {version}'s CUDA extension was built for torch {tagged[1]} / "
            f"CUDA {tagged[0]}, and this worker has {torch_build(torch)}; "
            f"{BUILD_FIX}"
        )
    try:
        __import__(EXTENSION)
    except ModuleNotFoundError as exc:
        if exc.name != EXTENSION:
            raise EngineUnavailable(_stale(torch, exc)) from None
        raise EngineUnavailable(
            f"exllamav2 {version} is installed without its compiled CUDA extension "
            f"({EXTENSION}), and a load does not compile it (minutes, needs nvcc): "
            f"{BUILD_FIX}"
        ) from None
    except ImportError as exc:  # undefined symbol, libcudart.so.12 missing, ...
        raise EngineUnavailable(_stale(torch, exc)) from None


def _stale(torch: Any, exc: ImportError) -> str:
    detail = " ".join(str(exc).split())
    return (
        f"exllamav2's CUDA extension does not load with {torch_build(torch)} ({detail}): "
        f"it was built for another torch or CUDA; {BUILD_FIX}"
    )
