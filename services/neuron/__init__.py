"""cortex-neuron: the per-host inference daemon."""
