"""How many prompt tokens one step of continuous batching prefills beside running streams.

A prompt chunk rides in the decode step's forward (:mod:`.kv` packs both into one row),
so it pays no forward of its own: it adds about its tokens times a per-token cost, and
that cost grows with the context the chunk attends over (on demo-small, one CPU thread,
about 0.4 ms a token at the start of a prompt and 0.75 ms at token 2,000). The engine
measures it per prompt, from the prompt's previous chunk (that step's time minus a decode
step's), so the next chunk, a few tokens further on, is sized by a figure from nearly
the same context, on the same machine under the same load.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFILL_CHUNK = 512  # most prompt tokens in one step
SHORT_PROMPT = 64  # a prompt (or the rest of one) this short is prefilled whole
# Fewest a step gives the oldest long prompt, however much they cost, so it is admitted
# in a bounded number of steps (riding in the decode forward, a chunk has no fixed cost
# to amortise: fewer tokens only slow the admission); also a prompt's first chunk,
# before its cost is measured.
MIN_PREFILL_CHUNK = 8
# The prompt tokens of a step beside running streams cost about this share of a decode
# step, so the streams' inter-token gaps grow by about as much while a prompt is admitted.
PREFILL_SHARE = 0.5
GROWTH = 2  # a prompt's chunk is at most this many times its previous one


@dataclass
class Waiting:
    """A prompt still being prefilled, as the sizing sees it."""

    rest: int  # prompt tokens still to compute
    token_s: float | None  # measured seconds per token beside a decode step; None: not yet
    last: int = 0  # its previous chunk's tokens (0: none yet)


def prefill_budget(decode_s: float | None, decoding: int, waiting: int) -> float | None:
    """Seconds of prefill for a step beside ``decoding`` streams; None: nothing to protect.

    PREFILL_SHARE of a decode step, times how many more prompts wait than streams run:
    one long prompt slows eight streams by about half, while a burst of new requests
    beside a few streams is not starved of its first tokens.
    """
    if not decoding or decode_s is None:
        return None if not decoding else 0.0
    return PREFILL_SHARE * max(1.0, waiting / decoding) * decode_s


def plan(waiting: list[Waiting], budget_s: float | None) -> list[int]:
    """Tokens to prefill this step for each waiting prompt, oldest first (0: it waits).

    With no budget (no stream decodes) long prompts share PREFILL_CHUNK tokens and short
    ones start whole. Otherwise each prompt gets the tokens its measured cost fits in
    what is left of ``budget_s``; the first prompt served in a step always advances (a
    short one whole, a long one by at least MIN_PREFILL_CHUNK) so none starves, and a
    short one after it starts only if it fits. The short rest of a long prompt is not a
    short prompt: it attends over the whole prompt before it, so it goes by its cost.
    """
    sizes = []
    if budget_s is None:
        tokens = PREFILL_CHUNK
        for prompt in waiting:
            size = prompt.rest if prompt.rest <= SHORT_PROMPT else min(tokens, prompt.rest)
            tokens -= size if prompt.rest > SHORT_PROMPT else 0
            sizes.append(size)
        return sizes
    left = budget_s
    served = False
    for prompt in waiting:
        most = min(PREFILL_CHUNK, GROWTH * prompt.last) if prompt.last else PREFILL_CHUNK
        if prompt.token_s is None:
            fits = MIN_PREFILL_CHUNK if left > 0 or not served else 0
        else:
            fits = int(max(left, 0.0) / max(prompt.token_s, 1e-9))
        fits = min(fits, most)
        if prompt.rest <= SHORT_PROMPT and not prompt.last:
            size = prompt.rest if prompt.rest <= fits or not served else 0
        elif not served:
            size = min(prompt.rest, max(fits, MIN_PREFILL_CHUNK))
        else:
            size = min(prompt.rest, fits) if fits >= MIN_PREFILL_CHUNK else 0
        if size:
            served = True
            left = 0.0 if prompt.token_s is None else left - size * prompt.token_s
        sizes.append(size)
    return sizes
