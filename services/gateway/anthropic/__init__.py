"""Anthropic Messages API <-> OpenAI chat translation: pure functions, no HTTP.

The gateway mounts these on ``POST /v1/messages`` and ``/v1/messages/count_tokens``:

- :func:`to_openai_request` turns a :class:`~cortex.common.anthropic.MessagesRequest`
  into the OpenAI request sent to a neuron;
- :func:`from_openai_response` turns the neuron's ``ChatCompletion`` into a ``Message``;
- :class:`StreamTranslator` turns the neuron's chunk stream into Anthropic SSE bytes;
- :func:`error_from_openai` re-tells an upstream error for Anthropic's envelope;
- :func:`to_tokenize_request` / :func:`count_tokens_response` serve count_tokens.
"""

from .count import count_tokens_response, to_openai_count, to_tokenize_request
from .errors import error_from_openai, status_for_openai_type
from .names import ToolNameMap
from .request import to_openai_messages, to_openai_request, to_openai_tools, tool_names
from .response import THINKING_SIGNATURE, from_openai_response, stop_reason_for
from .stream import StreamTranslator, encode_event, error_event

__all__ = [
    "THINKING_SIGNATURE",
    "StreamTranslator",
    "ToolNameMap",
    "count_tokens_response",
    "encode_event",
    "error_event",
    "error_from_openai",
    "from_openai_response",
    "status_for_openai_type",
    "stop_reason_for",
    "to_openai_count",
    "to_openai_messages",
    "to_openai_request",
    "to_openai_tools",
    "to_tokenize_request",
    "tool_names",
]
