from __future__ import annotations

import json
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


def with_context(source: Path, target: Path, positions: int) -> Path:
    """A copy of a demo model with ``positions`` positions (its weights are linked: a
    rotary model's weights do not depend on the context length)."""
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.name != "config.json" and not (target / file.name).exists():
            (target / file.name).symlink_to(file.resolve())
    config = json.loads((source / "config.json").read_text())
    config["max_position_embeddings"] = positions
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target
