"""The default ports, apart from the config schema so the console's script path can
name the gateway's without importing every config struct."""

GATEWAY_PORT = 31313
GATEWAY_METRICS_PORT = 31314
NEURON_PORT = 13131
