"""The neuron's token pipeline: prompt rendering, sampling, constrained decoding,
incremental decoding of token ids into events, and their projection onto OpenAI output.

Engine-agnostic: engines produce token ids (and timings); everything here turns
requests into prompts and ids into what clients see. No module imports torch at
import time (``sampling.Sampler`` and ``constrain.ConstrainedSampler`` import it when
constructed), so the supervisor process can use all of it.
"""
