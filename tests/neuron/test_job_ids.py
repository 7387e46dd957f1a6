"""A client's x-request-id never keys a worker job: a retry that reuses it while the
cancelled job it replaces still runs in the worker gets its own answer, whole."""

from __future__ import annotations

import os
import signal
import threading

import pytest

HELLO = [{"role": "user", "content": "Tell me a long story."}]


@pytest.fixture(scope="module")
def no_eos(demo_models) -> dict[str, int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(demo_models.tiny / "tokenizer.json"))
    return {str(tokenizer.token_to_id(t)): -100 for t in ("<|im_end|>", "<|endoftext|>")}


def test_a_retry_reusing_the_request_id_is_not_crossed_with_the_cancelled_job(neuron, no_eos):
    loaded = neuron.load("demo-tiny", id="tiny-ids", max_concurrency=2)
    worker = loaded["pid"]
    headers = {"x-request-id": "retry-me"}
    first = {
        "model": "tiny-ids",
        "messages": HELLO,
        "max_tokens": 1000,
        "stream": True,
        "logit_bias": no_eos,
    }
    retry = {"model": "tiny-ids", "messages": HELLO, "max_tokens": 6, "logit_bias": no_eos}
    answers: list = []
    try:
        with neuron.client(timeout=30) as client:
            with client.stream(
                "POST", "/v1/chat/completions", json=first, headers=headers
            ) as stream:
                assert stream.status_code == 200, stream.read()
                lines = stream.iter_lines()
                while '"content"' not in next(lines):
                    pass
                # The worker is frozen mid-generation: the supervisor cancels the first
                # job when the client leaves, but the worker still runs it (and has
                # output of it on the way) when the retry arrives with the same id.
                os.kill(worker, signal.SIGSTOP)
            neuron.wait_for(lambda: not neuron.loaded("tiny-ids").get("in_flight"), timeout=10)

            def send_retry() -> None:
                answers.append(client.post("/v1/chat/completions", json=retry, headers=headers))

            sender = threading.Thread(target=send_retry)
            sender.start()
            sender.join(0.5)  # the retry's frame is in the worker's pipe by now
            os.kill(worker, signal.SIGCONT)
            sender.join(30)
    finally:
        os.kill(worker, signal.SIGCONT)
        neuron.unload("tiny-ids")
    assert answers, "the retry got no answer"
    response = answers[0]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 6
