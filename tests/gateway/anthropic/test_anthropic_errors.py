"""Upstream OpenAI errors as Anthropic errors, as the official SDK raises them."""

from __future__ import annotations

import anthropic
import pytest
from translation_support import sdk_client

from cortex.common.errors import CortexError, anthropic_error_body, openai_error_body
from cortex.services.gateway.anthropic import error_from_openai, status_for_openai_type


def sdk_call(status: int, body: bytes):
    client = sdk_client(status, body, stream=False)
    return client.messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )


@pytest.mark.parametrize(
    ("status", "sdk_error", "anthropic_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (413, anthropic.APIStatusError, "request_too_large"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (503, anthropic.APIStatusError, "overloaded_error"),
    ],
)
def test_status_and_message_survive_the_translation(status, sdk_error, anthropic_type):
    upstream = openai_error_body(
        CortexError(status, f"Model 'demo' says {status}: fix it.", code="some_code")
    )
    error = error_from_openai(status, upstream)
    assert (error.status, error.message, error.code) == (
        status,
        f"Model 'demo' says {status}: fix it.",
        "some_code",
    )
    with pytest.raises(sdk_error) as info:
        sdk_call(error.status, anthropic_error_body(error))
    assert info.value.status_code == status
    assert info.value.body["error"] == {
        "type": anthropic_type,
        "message": f"Model 'demo' says {status}: fix it.",
    }


def test_param_is_kept():
    upstream = openai_error_body(CortexError(400, "bad", param="messages[0].content"))
    assert error_from_openai(400, upstream).param == "messages[0].content"


def test_bodies_that_are_not_an_openai_envelope():
    assert error_from_openai(502, b"<html>Bad Gateway</html>").message == "<html>Bad Gateway</html>"
    assert error_from_openai(500, b'{"error": "plain string"}').message == "plain string"
    empty = error_from_openai(504, b"")
    assert empty.status == 504 and "504" in empty.message
    long = error_from_openai(500, b"x" * 5000)
    assert len(long.message) < 600


def test_stream_errors_take_their_status_from_the_type():
    error = error_from_openai(None, {"error": {"message": "gone", "type": "not_found_error"}})
    assert error.status == 404
    assert status_for_openai_type("service_unavailable") == 503
    assert status_for_openai_type("something_new") == 500


# What the neuron (and vLLM, and OpenAI) say, and Anthropic's words Claude Code matches.
OPENAI_OVERFLOW = (
    "This model's maximum context length is {limit} tokens. However, you requested "
    "{total} tokens ({prompt} in the prompt, {completion} for the completion). Please "
    "reduce the length of the messages or of the completion (max_tokens)."
)


@pytest.mark.parametrize(
    ("prompt", "completion", "limit", "anthropic_text"),
    [
        (
            46273,
            32000,
            65536,
            "input length and `max_tokens` exceed context limit: 46273 + 32000 > 65536, "
            "decrease input length or `max_tokens` and try again",
        ),
        (70000, 32000, 65536, "prompt is too long: 70000 tokens > 65536 maximum"),
    ],
)
def test_context_overflow_is_worded_as_anthropic_words_it(
    prompt, completion, limit, anthropic_text
):
    message = OPENAI_OVERFLOW.format(
        limit=limit, total=prompt + completion, prompt=prompt, completion=completion
    )
    body = openai_error_body(CortexError(400, message, code="context_length_exceeded"))
    error = error_from_openai(400, body)
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk_call(400, anthropic_error_body(error))
    assert caught.value.body["error"] == {
        "type": "invalid_request_error",
        "message": anthropic_text,
    }
    # The OpenAI dialect keeps OpenAI's words; other errors keep theirs in both.
    assert b"maximum context length is" in openai_error_body(error)
    other = CortexError(400, "maximum context length is 5 tokens, sorry", code="bad")
    assert b"sorry" in anthropic_error_body(other)
