"""A real worker process driven frame by frame, as the supervisor drives it: a Cancel
takes effect while another request is still being prepared."""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio

from cortex.services.neuron.worker import protocol as p
from cortex.services.neuron.worker.process import WorkerProcess

# Rendering and tokenising this prompt takes the worker a second or more.
HUGE = "the quick brown fox jumps over the lazy dog. " * 60_000


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def worker(demo_models):
    process = await WorkerProcess.spawn(prewarm=False)
    await process.load(
        p.Load(
            model_id="demo-tiny",
            path=str(demo_models.tiny),
            backend="transformers",
            devices=["cpu"],
            max_concurrency=2,
            cpu_threads=1,
        ),
        lambda progress: None,
    )
    yield process
    await process.stop(grace=5)


def chat(content: str, max_tokens: int) -> bytes:
    return json.dumps(
        {
            "model": "demo-tiny",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "logit_bias": {"0": -100, "2": -100},  # no end token: it keeps going
        }
    ).encode()


async def next_of(queue: asyncio.Queue, kind: type) -> p.FromWorker:
    while True:
        message = await asyncio.wait_for(queue.get(), 60)
        if isinstance(message, kind):
            return message


async def test_a_cancel_is_not_held_behind_another_requests_preparation(worker):
    running = worker.open("job-running")
    worker.send(p.Generate(rid="job-running", endpoint="chat", body=chat("Hello", 1000)))
    await next_of(running, p.Output)

    order: list[str] = []
    huge = worker.open("job-huge")
    worker.send(p.Generate(rid="job-huge", endpoint="chat", body=chat(HUGE, 4)))
    worker.send(p.Cancel(rid="job-running"))

    async def done_running() -> None:
        done = await next_of(running, p.Done)
        assert done.reason == "cancelled"
        order.append("cancelled")

    async def answered_huge() -> None:
        await next_of(huge, p.Accepted | p.Rejected)
        order.append("huge answered")

    await asyncio.gather(done_running(), answered_huge())
    assert order == ["cancelled", "huge answered"]


async def test_a_request_cancelled_before_it_is_prepared_never_runs(worker):
    ahead = worker.open("job-ahead")
    worker.send(p.Generate(rid="job-ahead", endpoint="chat", body=chat(HUGE, 4)))
    withdrawn = worker.open("job-withdrawn")
    worker.send(p.Generate(rid="job-withdrawn", endpoint="chat", body=chat("Hello", 3)))
    worker.send(p.Cancel(rid="job-withdrawn"))
    after = worker.open("job-after")
    worker.send(p.Generate(rid="job-after", endpoint="chat", body=chat("Hello", 3)))
    await next_of(ahead, p.Rejected)  # longer than the context
    done = await next_of(after, p.Done)
    assert done.reason == "length"
    assert withdrawn.empty(), f"the withdrawn job was accepted or run: {withdrawn.get_nowait()}"
