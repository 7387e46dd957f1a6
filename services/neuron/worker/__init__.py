"""Model worker processes: one per loaded model, owning its engine.

``protocol`` is the message set on the pipe (torch-free, shared by both sides);
``process`` is the supervisor's handle on a worker; ``runtime`` (run by
``python -m cortex.services.neuron.worker``) is the worker itself.
"""
