"""The demo model: a generated Llama-architecture model every path of cortex can run."""

from cortex.services.neuron.demo.generate import DEMO_SIZES, SIZES, default_name, generate

__all__ = ["DEMO_SIZES", "SIZES", "default_name", "generate"]
