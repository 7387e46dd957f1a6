from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cortex.services.neuron.demo import generate


@dataclass(frozen=True)
class DemoModels:
    root: Path  # a models directory holding all three

    @property
    def tiny(self) -> Path:
        return self.root / "demo-tiny"

    @property
    def small(self) -> Path:
        return self.root / "demo-small"

    @property
    def long(self) -> Path:
        return self.root / "demo-long"


def make_demo_models(root: Path) -> DemoModels:
    generate(root / "demo-tiny", "tiny")
    generate(root / "demo-small", "small")
    generate(root / "demo-long", "long")
    return DemoModels(root)
