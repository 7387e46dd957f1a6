"""What decoding one large batched SSE chunk costs, by its size.

    .venv/bin/python tests/benchmarks/bench_sse.py

The neuron coalesces the tokens of a step into one write, and a slow reader (the
gateway's Anthropic translation, the console) then receives many events in one network
chunk. A decoder that costs the same per event at every chunk size is linear; one whose
cost per event grows with the chunk is not. The chunk is the neuron's real projection
of text deltas; each size is fed whole, and in 16 KiB reads, best of 5. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import time

from cortex.common.sse import SSEDecoder
from cortex.services.neuron.pipeline.events import Finish, TextDelta
from cortex.services.neuron.pipeline.project import ChatStreamProjector


def batched_chunk(events: int) -> bytes:
    projector = ChatStreamProjector("demo-tiny", "chatcmpl-bench", 0)
    parts = [projector.start(prompt_tokens=12)]
    parts += [projector.feed(TextDelta(f" word{i}")) for i in range(events)]
    parts.append(projector.feed(Finish(reason="stop", prompt_tokens=12, completion_tokens=events)))
    return b"".join(parts)


def best_of(rounds: int, pieces: list[bytes], expected: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        decoder = SSEDecoder()
        started = time.perf_counter()
        got = sum(len(decoder.feed(piece)) for piece in pieces)
        best = min(best, time.perf_counter() - started)
        assert got == expected, (got, expected)
    return best


def main() -> None:
    for events in (1_000, 4_000, 16_000):
        chunk = batched_chunk(events)
        expected = events + 3  # role chunk, finish chunk, [DONE]
        whole = best_of(5, [chunk], expected)
        reads = [chunk[i : i + 16384] for i in range(0, len(chunk), 16384)]
        split = best_of(5, reads, expected)
        print(
            f"{events:>6} events, {len(chunk) / 1024:>7.0f} KiB: "
            f"one chunk {whole * 1000:>8.1f} ms ({whole / expected * 1e6:5.2f} us/event), "
            f"16 KiB reads {split * 1000:>8.1f} ms ({split / expected * 1e6:5.2f} us/event)"
        )


if __name__ == "__main__":
    main()
