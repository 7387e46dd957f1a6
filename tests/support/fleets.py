"""A small real fleet for e2e tests: demo-tiny loaded on several CPU neurons, one gateway.

    with tiny_everywhere(demo_models, root, {"a": {}, "b": {"max_concurrency": 4}}) as (
        gateway, neurons,
    ):
        ...

Each name gets its own copy of demo-tiny and a neuron with ``name`` and the given extra
``[neuron]`` settings; the gateway knows them all and has loaded demo-tiny on each.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.gateway import GatewayProcess, start_gateway
from support.neuron import NeuronProcess, start_neuron


@contextlib.contextmanager
def tiny_everywhere(
    demo_models, root: Path, settings: dict[str, dict[str, Any]]
) -> Iterator[tuple[GatewayProcess, dict[str, NeuronProcess]]]:
    with contextlib.ExitStack() as stack:
        neurons = {}
        for name, extra in settings.items():
            models = root / f"models-{name}"
            shutil.copytree(demo_models.tiny, models / "demo-tiny")
            neurons[name] = stack.enter_context(
                start_neuron(models, root / name, settings={"name": name, **extra})
            )
        gateway = stack.enter_context(
            start_gateway(root / "gateway", neurons={n: p.url for n, p in neurons.items()})
        )
        gateway.wait_neurons_up()
        for name in neurons:
            loaded = gateway.post("/fleet/models/demo-tiny/load", json={"neuron": name})
            assert loaded.status_code == 200, loaded.text
        yield gateway, neurons
