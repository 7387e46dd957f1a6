"""The cortex daemons: gateway and neuron."""
