"""Sizing prompt chunks beside running streams, with figures measured on demo-small.

On the project's 2-core CPU (one torch thread) a decode step of 8 streams took 23.3 ms;
a prompt token riding in that step added 0.33 ms at the start of a prompt and 0.87 ms at
token 1,950 (``services/neuron/DESIGN.md``, continuous batching).
"""

from __future__ import annotations

from cortex.services.neuron.engines.chunking import (
    MIN_PREFILL_CHUNK,
    PREFILL_CHUNK,
    PREFILL_SHARE,
    Waiting,
    plan,
    prefill_budget,
)

DECODE_8 = 0.0233
EARLY = 0.00033  # s per prompt token at context 0
LATE = 0.00087  # ... at context 1,950


def test_the_budget_is_a_share_of_the_decode_step_more_when_more_prompts_wait():
    assert prefill_budget(DECODE_8, decoding=8, waiting=1) == PREFILL_SHARE * DECODE_8
    assert prefill_budget(DECODE_8, decoding=2, waiting=6) == 3 * PREFILL_SHARE * DECODE_8
    assert prefill_budget(DECODE_8, decoding=0, waiting=3) is None  # no stream to protect
    assert prefill_budget(None, decoding=4, waiting=1) == 0.0  # not measured yet


def test_a_long_prompt_gets_what_its_measured_cost_fits():
    budget = prefill_budget(DECODE_8, 8, 1)
    # Early in the prompt 35 tokens fit the 11.65 ms, late only 13.
    assert plan([Waiting(1500, EARLY, last=40)], budget) == [35]
    assert plan([Waiting(500, LATE, last=16)], budget) == [13]
    # With nothing to spend (the decode step not measured yet) the oldest prompt still
    # advances by the minimum, so it is admitted in a bounded number of steps.
    assert plan([Waiting(500, LATE, last=16)], prefill_budget(None, 8, 1)) == [MIN_PREFILL_CHUNK]
    # A chunk at most doubles its predecessor: one fast-looking step does not let the
    # next chunk jump to PREFILL_CHUNK tokens.
    assert plan([Waiting(1500, EARLY / 10, last=16)], budget) == [32]
    assert plan([Waiting(1500, None)], budget) == [MIN_PREFILL_CHUNK]  # cost not known yet


def test_the_short_rest_of_a_long_prompt_goes_by_its_cost():
    """49 tokens at context 1,950 cost ~43 ms: prefilled whole they would nearly triple
    the streams' gap; a fresh short prompt (context 0, ~16 ms) does start whole."""
    budget = prefill_budget(DECODE_8, 8, 1)
    assert plan([Waiting(49, LATE, last=16)], budget) == [13]
    assert plan([Waiting(49, EARLY)], budget) == [49]


def test_several_short_prompts_start_together_only_within_the_budget():
    fresh = [Waiting(52, EARLY) for _ in range(3)]
    # Beside 8 streams one 52-token prompt (17 ms) exceeds the 11.65 ms alone: it starts
    # (the first is never starved), the others wait a step each.
    assert plan(fresh, prefill_budget(DECODE_8, 8, 3)) == [52, 0, 0]
    # Beside one stream the burst is three times its number: 1.5 decode steps of 8
    # streams fit two of them.
    assert plan(fresh, prefill_budget(DECODE_8, 1, 3)) == [52, 52, 0]
    # With no stream decoding all start at once, and long prompts share PREFILL_CHUNK.
    long_ones = [Waiting(2000, None), Waiting(2000, None)]
    assert plan(fresh + long_ones, None) == [52, 52, 52, PREFILL_CHUNK, 0]


def test_a_second_long_prompt_gets_only_what_is_left():
    budget = prefill_budget(DECODE_8, 8, 2)
    # The first takes 20 tokens (6.6 ms, twice its last chunk); the 5 ms left fit 15 of
    # the second.
    assert plan([Waiting(900, EARLY, last=10), Waiting(900, EARLY, last=16)], budget) == [20, 15]
    # After 30 of the first (9.9 ms) the 1.75 ms left fit 5: fewer than the minimum, so
    # the second waits rather than pay for a sliver.
    assert plan([Waiting(900, EARLY, last=15), Waiting(900, EARLY, last=16)], budget) == [30, 0]
    assert plan([Waiting(900, LATE, last=8), Waiting(900, EARLY, last=16)], budget) == [13, 0]
