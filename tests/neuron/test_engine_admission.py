"""A long prompt admitted beside running sequences, in the real engine on demo-tiny.

Asserted by counts, not wall times: each step is one forward (the prompt's chunk rides
in the decode step), every running sequence gains a token every step, the chunks follow
the sizing rules, and the greedy tokens agree with the same prompt run alone.
"""

from __future__ import annotations

import itertools

import pytest

from cortex.services.neuron.engines.base import EngineOptions, Sequence
from cortex.services.neuron.engines.chunking import GROWTH, MIN_PREFILL_CHUNK
from cortex.services.neuron.engines.transformers_engine import TransformersEngine
from cortex.services.neuron.pipeline.sampling import SamplingParams
from cortex.services.neuron.worker.runtime import make_sampler

GREEDY = SamplingParams(temperature=0)
STREAMS = 4
LONG = 900


def _engine(path, batching: str = "continuous") -> TransformersEngine:
    options = EngineOptions(
        path=str(path), devices=["cpu"], cpu_threads=1, max_concurrency=8, batching=batching
    )
    engine = TransformersEngine(options, make_sampler)
    engine.load(lambda done, total: None)
    return engine


def _prompt(length: int, salt: int) -> list[int]:
    return [3 + (i * 7919 + salt) % 180 for i in range(length)]


@pytest.fixture(scope="module")
def tiny(demo_models):
    return demo_models.tiny


def test_a_long_prompt_rides_in_the_decode_steps(tiny):
    engine = _engine(tiny)
    for i in range(STREAMS):
        engine.add(Sequence(f"s{i}", _prompt(40, i), 10_000, GREEDY))
    for _ in range(4):
        engine.step()  # the streams' prompts, then decode steps: their cost is measured
    engine.add(Sequence("long", _prompt(LONG, 99), 8, GREEDY))
    long_run = engine._running["long"]
    chunks, generated = [], []
    while long_run.next_input is None:
        forwards, before = engine.forwards, long_run.prefilled
        outputs = {out.seq_id: out for out in engine.step()}
        assert engine.forwards == forwards + 1  # one forward for the streams and the chunk
        assert all(len(outputs[f"s{i}"].token_ids) == 1 for i in range(STREAMS))
        chunks.append(long_run.prefilled - before)
        generated += outputs["long"].token_ids  # its first token comes with its last chunk
    while "long" in engine._running:
        generated += next(o.token_ids for o in engine.step() if o.seq_id == "long")
    assert sum(chunks) == LONG
    assert chunks[0] == MIN_PREFILL_CHUNK  # its cost is not known before its first chunk
    assert all(size >= MIN_PREFILL_CHUNK for size in chunks[:-1])
    assert all(b <= GROWTH * a for a, b in itertools.pairwise(chunks))
    assert len(chunks) < LONG / MIN_PREFILL_CHUNK  # it grew past the minimum where it fit

    alone = _engine(tiny, batching="round_robin")
    alone.add(Sequence("long", _prompt(LONG, 99), 8, GREEDY))
    tokens = []
    while alone._running:
        tokens += next(o.token_ids for o in alone.step())
    assert generated == tokens
