"""The turn a Responses request starts: its items (with ids, as ``input_items`` lists
them), its tools, and the conversation it continues (``previous_response_id``)."""

from __future__ import annotations

from cortex.common import responses as r
from cortex.common.errors import CortexError

from .request import parse_items, parse_tools
from .response import Turn, new_id
from .store import ResponseStore

_PREFIX = {
    r.Message: "msg",
    r.FunctionCall: "fc",
    r.FunctionCallOutput: "fco",
    r.Reasoning: "rs",
}


async def start_turn(store: ResponseStore, req: r.ResponsesRequest) -> Turn:
    """The Turn for ``req``; 400 for what cortex cannot do, 404 for an unknown
    ``previous_response_id``."""
    if req.background:
        raise CortexError(
            400,
            "background responses are not supported by cortex: send the request without "
            "`background` (stream it with `stream: true` for long answers).",
            code="invalid_request",
            param="background",
        )
    for field, instead in (
        ("conversation", "continue with previous_response_id"),
        ("prompt", "send the prompt's text as instructions and input"),
    ):
        if getattr(req, field) is not None:
            raise CortexError(
                400,
                f"`{field}` needs OpenAI's hosted {field}s, which cortex does not keep: {instead}.",
                code="invalid_request",
                param=field,
            )
    context: list[r.InputItem] = []
    if req.previous_response_id:
        previous = await store.aget(req.previous_response_id)
        if previous is None:
            raise CortexError(
                404,
                f"Previous response with id '{req.previous_response_id}' not found: it was "
                "never stored (store: false), was deleted, or expired (gateway.responses_* "
                "retention).",
                code="previous_response_not_found",
                param="previous_response_id",
            )
        context = [*previous.context, *previous.response.output]
    return new_turn(req, context)


def new_turn(req: r.ResponsesRequest, before: list[r.InputItem] | None = None) -> Turn:
    """The Turn for ``req`` after the conversation ``before`` (none by default)."""
    items = [listed(item) for item in parse_items(req.input)]
    context = [*(before or ()), *items]
    return Turn(req, parse_tools(req.tools), input_items=items, context=context)


def listed(item: r.InputItem) -> r.InputItem:
    """``item`` as stored and listed: with an id, and a message's text as parts."""
    if isinstance(item, r.ItemReference):
        return item
    if not isinstance(item.id, str):
        item.id = new_id(_PREFIX[type(item)])
    if isinstance(item, r.Message):
        if isinstance(item.content, str):
            part = r.OutputText if item.role == "assistant" else r.InputText
            item.content = [part(text=item.content)]
        if not isinstance(item.status, str):
            item.status = "completed"
    return item
