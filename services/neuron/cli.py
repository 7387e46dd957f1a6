"""``cortex-neuron``: run the daemon, or write the demo model.

cortex-neuron [--config neuron.toml] [--listen HOST:PORT] [--models-dir DIR]
cortex-neuron demo-model [--out DIR] [--size tiny|small]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from cortex.common.config import ConfigError, NeuronConfig, load_config


def demo_model_main(argv: list[str]) -> int:
    from cortex.services.neuron.demo import SIZES, default_name, generate

    parser = argparse.ArgumentParser(
        prog="cortex-neuron demo-model",
        description="Write a small Llama-architecture demo model (seeded random weights) "
        "in the Hugging Face layout.",
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: <models dir>/demo-<size>, models dir from neuron.toml)",
    )
    parser.add_argument("--config", type=Path, help="neuron.toml, for the default models dir")
    parser.add_argument(
        "--device",
        default="cpu",
        help="where to draw the random weights (cuda is faster for 1b/8b)",
    )
    args = parser.parse_args(argv)
    out = args.out
    if out is None:
        config = load_config(args.config, NeuronConfig)
        out = config.neuron.resolved_models_dir() / default_name(args.size)
    path = generate(out, args.size, device=args.device)
    print(f"wrote demo model ({args.size}) to {path}")
    return 0


# The modules of the ``neuron`` extra (pyproject.toml), by the distribution that holds them.
NEURON_EXTRA = {
    "torch": "torch",
    "tokenizers": "tokenizers",
    "transformers": "transformers",
    "safetensors": "safetensors",
    "nvidia-ml-py": "pynvml",
    "psutil": "psutil",
    "numpy": "numpy",
}
INSTALL_HINT = "pip install torch, then pip install 'cortex-fleet[neuron]'"


def missing_extra() -> list[str]:
    """The distributions of the neuron extra that are not installed."""
    return [
        dist for dist, module in NEURON_EXTRA.items() if importlib.util.find_spec(module) is None
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    missing = missing_extra()
    if missing:
        print(
            f"cortex-neuron: the neuron's dependencies are not installed "
            f"(missing: {', '.join(missing)}); install them: {INSTALL_HINT} "
            "(torch first, so your CPU or CUDA build of it is kept)",
            file=sys.stderr,
        )
        return 2
    try:
        if argv[:1] == ["demo-model"]:
            return demo_model_main(argv[1:])
        from cortex.services.neuron.serve import serve_main

        return serve_main(argv)
    except ConfigError as exc:
        print(f"cortex-neuron: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
