"""Which backends this host can run, and which one a load request gets.

Decided without importing any engine: the supervisor must never import torch,
transformers or exllamav2 (exllamav2's import compiles CUDA code and changes
process-wide torch settings).
"""

from __future__ import annotations

import importlib.util
from functools import cache

from cortex.common.errors import CortexError


@cache
def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class BackendChooser:
    def __init__(self, has_cuda: bool, default: str = "auto") -> None:
        self.has_cuda = has_cuda
        self.default = default

    @property
    def transformers_ok(self) -> bool:
        return installed("torch") and installed("transformers")

    @property
    def exllamav2_ok(self) -> bool:
        return self.has_cuda and installed("exllamav2") and installed("torch")

    def available(self) -> list[str]:
        names = []
        if self.transformers_ok:
            names.append("transformers")
        if self.exllamav2_ok:
            names.append("exllamav2")
        return names

    def backends_for(self, fmt: str) -> list[str]:
        """Backends here that can load a model of this format."""
        if fmt == "exl2":
            return ["exllamav2"] if self.exllamav2_ok else []
        return self.available()

    def choose(self, requested: str | None, fmt: str) -> str:
        """The backend for a load, or a 400 that says why none fits."""
        backend = requested or self.default
        if backend == "auto":
            backend = "exllamav2" if fmt == "exl2" else "transformers"
        if backend == "exllamav2":
            if not self.has_cuda:
                raise CortexError(
                    400,
                    "backend exllamav2 needs an NVIDIA GPU with CUDA, and this neuron has none; "
                    + (
                        "EXL2 models cannot run here."
                        if fmt == "exl2"
                        else "use backend 'transformers' (or 'auto') instead."
                    ),
                    code="backend_unavailable",
                    param="backend",
                )
            if not installed("exllamav2"):
                raise CortexError(
                    400,
                    "backend exllamav2 is not installed on this neuron "
                    "(pip install 'cortex-fleet[cuda]'), or use backend 'transformers'.",
                    code="backend_unavailable",
                    param="backend",
                )
            return backend
        if fmt == "exl2":
            raise CortexError(
                400,
                "this is an EXL2 (quantised) model: only backend 'exllamav2' can load it, "
                "on a host with an NVIDIA GPU.",
                code="backend_unavailable",
                param="backend",
            )
        if not self.transformers_ok:
            raise CortexError(
                400,
                "backend transformers needs torch and transformers "
                "(pip install 'cortex-fleet[neuron]').",
                code="backend_unavailable",
                param="backend",
            )
        return backend
