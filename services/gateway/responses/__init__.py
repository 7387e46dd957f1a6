"""OpenAI Responses API <-> OpenAI chat translation, and the stored responses.

The gateway mounts these on ``POST /v1/responses`` and ``/v1/responses/{id}``:

- :func:`start_turn` reads a request's items and tools and the conversation it
  continues (``previous_response_id``, from the :class:`ResponseStore`);
- :func:`to_chat_request` turns it into the chat request sent to a neuron;
- :func:`from_chat_completion` turns the neuron's completion into a ``Response``;
- :class:`ResponseStream` turns the neuron's chunk stream into Responses SSE bytes;
- :class:`ResponseStore` keeps responses in SQLite.
"""

from .request import Functions, parse_items, parse_tools, to_chat_messages, to_chat_request
from .response import Turn, from_chat_completion, new_id, usage_for
from .store import ResponseStore
from .stream import ResponseStream
from .turn import listed, new_turn, start_turn

__all__ = [
    "Functions",
    "ResponseStore",
    "ResponseStream",
    "Turn",
    "from_chat_completion",
    "listed",
    "new_id",
    "new_turn",
    "parse_items",
    "parse_tools",
    "start_turn",
    "to_chat_messages",
    "to_chat_request",
    "usage_for",
]
