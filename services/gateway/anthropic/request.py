"""Anthropic Messages requests as OpenAI chat completion requests.

Choices where the two APIs differ (each is what a chat template needs to see the
conversation as the client meant it):

- ``system`` (a string or text blocks, ``cache_control`` ignored) becomes one system
  message, blocks joined by a blank line. Several text blocks in a turn are joined the
  same way. A ``system`` message inside ``messages`` (Anthropic's mid-conversation
  system beta) becomes a system message at the same place; text only, as Anthropic
  requires. (A neuron whose chat template takes only a leading system message folds
  the later ones into it: ``cortex.services.neuron.pipeline.prompt``.)
- Tool-search tools are left out and ``defer_loading`` tools are declared like any
  other: a local model has no server-side tool search, so it sees every tool at once.
- A user turn's ``tool_result`` blocks become ``tool`` messages (``tool_call_id`` =
  ``tool_use_id``), in their order, placed before the turn's other content, which
  follows as one user message: OpenAI requires tool messages to follow the assistant's
  tool calls directly, and Anthropic requires tool results to open the turn anyway.
  ``is_error`` prefixes the result with ``Error:`` (OpenAI has no flag for it).
- Assistant ``thinking`` becomes ``reasoning_content``; ``redacted_thinking`` is
  dropped (it is encrypted for Anthropic's models only). ``tool_use`` becomes
  ``tool_calls`` with the input as a JSON string.
- Images become ``image_url`` parts (base64 as a ``data:`` URL); text documents and
  search results become text. PDFs and Files API ids cannot reach a local model:
  refused with a 400 that says what to send instead.
- ``thinking`` needs no field: a model that thinks does so per its chat template, and
  its reasoning comes back as thinking blocks.
"""

from __future__ import annotations

import msgspec

from cortex.common import anthropic as a
from cortex.common import openai as o
from cortex.common.errors import CortexError

from .names import ToolNameMap

_JSON = msgspec.json.Encoder()


def tool_names(req: a.MessagesBase) -> ToolNameMap:
    """The name map for a request: its declared tools, then names used in its history."""
    names = ToolNameMap(tool.name for tool in client_tools(req))
    for message in req.messages:
        if isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, a.ToolUseBlock):
                    names.to_openai(block.name)
    return names


def to_openai_request(
    req: a.MessagesRequest, *, model: str | None = None
) -> o.ChatCompletionRequest:
    """The OpenAI chat request for an Anthropic Messages request.

    ``model`` replaces the request's model (the gateway passes the resolved id).
    Streams ask for usage (``stream_options.include_usage``): the Anthropic stream's
    ``message_delta`` reports it.
    """
    names = tool_names(req)
    tool_choice, parallel = _tool_choice(req, names)
    return o.ChatCompletionRequest(
        model=model or req.model,
        messages=to_openai_messages(req, names),
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        stop=list(req.stop_sequences) if req.stop_sequences else None,
        stream=req.stream,
        stream_options=o.StreamOptions(include_usage=True) if req.stream else None,
        tools=to_openai_tools(req, names),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=_response_format(req),
        user=req.metadata.user_id if req.metadata is not None else None,
    )


def client_tools(req: a.MessagesBase) -> list[a.Tool]:
    """The request's tools the model is shown: all but the tool-search tools."""
    return [tool for tool in req.tools or () if not tool.is_tool_search]


def to_openai_tools(req: a.MessagesBase, names: ToolNameMap) -> list[o.Tool] | None:
    tools = client_tools(req)
    if not tools:
        return None
    return [
        o.Tool(
            function=o.FunctionDefinition(
                name=names.to_openai(tool.name),
                description=tool.description,
                parameters=tool.input_schema,
                strict=tool.strict,
            )
        )
        for tool in tools
    ]


def to_openai_messages(req: a.MessagesBase, names: ToolNameMap) -> list[o.ChatMessage]:
    messages: list[o.ChatMessage] = []
    system = req.system_text()
    if system:
        messages.append(o.ChatMessage(role="system", content=system))
    for i, message in enumerate(req.messages):
        where = f"messages[{i}]"
        if message.role == "user":
            messages.extend(_user_turn(message.content, where))
        elif message.role == "system":
            messages.append(_system_turn(message.content, where))
        else:
            messages.append(_assistant_turn(message.content, where, names))
    return messages


# --------------------------------------------------------------------------- turns


def _user_turn(content: str | list[a.InputBlock], where: str) -> list[o.ChatMessage]:
    if isinstance(content, str):
        return [o.ChatMessage(role="user", content=content)]
    results: list[o.ChatMessage] = []
    parts: list[o.ContentPart] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        if isinstance(block, a.ToolResultBlock):
            results.append(_tool_result(block, at))
        elif isinstance(block, a.ToolUseBlock):
            raise CortexError(
                400,
                f"{at}: tool_use blocks belong in assistant turns; a user turn answers "
                "them with tool_result blocks.",
                code="invalid_request",
                param=at,
            )
        elif isinstance(block, a.ThinkingBlock | a.RedactedThinkingBlock):
            continue  # only meaningful in assistant turns; Anthropic ignores them here too
        else:
            parts.extend(_parts(block, at))
    if parts or not results:
        results.append(o.ChatMessage(role="user", content=_content(parts)))
    return results


def _system_turn(content: str | list[a.InputBlock], where: str) -> o.ChatMessage:
    if isinstance(content, str):
        return o.ChatMessage(role="system", content=content)
    texts = []
    for j, block in enumerate(content):
        if not isinstance(block, a.TextBlock):
            at = f"{where}.content[{j}]"
            kind = type(block).__struct_config__.tag
            raise CortexError(
                400,
                f"{at}: a system message holds text blocks only, not a {kind} block.",
                code="invalid_request",
                param=at,
            )
        texts.append(block.text)
    return o.ChatMessage(role="system", content=_join(texts))


def _assistant_turn(
    content: str | list[a.InputBlock], where: str, names: ToolNameMap
) -> o.ChatMessage:
    if isinstance(content, str):
        return o.ChatMessage(role="assistant", content=content)
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[o.ToolCall] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        if isinstance(block, a.TextBlock):
            texts.append(block.text)
        elif isinstance(block, a.ThinkingBlock):
            reasoning.append(block.thinking)
        elif isinstance(block, a.RedactedThinkingBlock):
            continue
        elif isinstance(block, a.ToolUseBlock):
            calls.append(
                o.ToolCall(
                    id=block.id,
                    function=o.FunctionCall(
                        name=names.to_openai(block.name),
                        arguments=_JSON.encode(block.input).decode(),
                    ),
                )
            )
        else:
            kind = type(block).__struct_config__.tag
            raise CortexError(
                400,
                f"{at}: an assistant turn cannot hold a {kind} block; send it in a user turn.",
                code="invalid_request",
                param=at,
            )
    text = _join(texts)
    return o.ChatMessage(
        role="assistant",
        content=text if text or not calls else None,
        tool_calls=calls or None,
        reasoning_content=_join(reasoning) or None,
    )


def _tool_result(block: a.ToolResultBlock, at: str) -> o.ChatMessage:
    if isinstance(block.content, str):
        parts: list[o.ContentPart] = [o.TextPart(block.content)] if block.content else []
    else:
        parts = []
        for k, inner in enumerate(block.content):
            parts.extend(_parts(inner, f"{at}.content[{k}]"))
    if block.is_error:
        first = parts[0] if parts else None
        if isinstance(first, o.TextPart):
            parts[0] = o.TextPart(f"Error: {first.text}")
        else:
            parts.insert(0, o.TextPart("Error"))
    return o.ChatMessage(role="tool", tool_call_id=block.tool_use_id, content=_content(parts))


# --------------------------------------------------------------------------- blocks


def _parts(block: a.InputBlock, at: str) -> list[o.ContentPart]:
    if isinstance(block, a.TextBlock):
        return [o.TextPart(block.text)]
    if isinstance(block, a.ImageBlock):
        return [o.ImagePart(o.ImageURL(url=_image_url(block.source, at)))]
    if isinstance(block, a.DocumentBlock):
        return [o.TextPart(_document_text(block, at))]
    if isinstance(block, a.SearchResultBlock):
        body = _join([inner.text for inner in block.content])
        return [o.TextPart(_join([block.title, block.source, body]))]
    kind = type(block).__struct_config__.tag
    raise CortexError(400, f"{at}: a {kind} block cannot appear here.", param=at)


def _image_url(source: a.ImageSource, at: str) -> str:
    if isinstance(source, a.Base64Source):
        return f"data:{source.media_type};base64,{source.data}"
    if isinstance(source, a.URLSource):
        return source.url
    raise CortexError(
        400,
        f"{at}.source: file_id sources need Anthropic's Files API, which cortex does not "
        "provide; send the image as base64 or a URL.",
        code="invalid_request",
        param=f"{at}.source",
    )


def _document_text(block: a.DocumentBlock, at: str) -> str:
    source = block.source
    if isinstance(source, a.PlainTextSource):
        body = source.data
    elif isinstance(source, a.ContentSource):
        if isinstance(source.content, str):
            body = source.content
        else:
            body = _join([b.text for b in source.content if isinstance(b, a.TextBlock)])
    else:
        kind = type(source).__struct_config__.tag
        raise CortexError(
            400,
            f"{at}.source: {kind} documents (PDF or Files API) cannot be read by a local "
            "model; send the document's text as a text source "
            '({"type": "text", "media_type": "text/plain", "data": ...}).',
            code="invalid_request",
            param=f"{at}.source",
        )
    return _join([block.title or "", block.context or "", body])


def _content(parts: list[o.ContentPart]) -> str | list[o.ContentPart]:
    """A plain string when the parts are all text (what every chat template reads)."""
    if all(isinstance(part, o.TextPart) for part in parts):
        return _join([part.text for part in parts])  # type: ignore[union-attr]
    return parts


def _join(texts: list[str]) -> str:
    return "\n\n".join(text for text in texts if text)


# --------------------------------------------------------------------------- options


def _tool_choice(
    req: a.MessagesBase, names: ToolNameMap
) -> tuple[o.ToolChoice | None, bool | None]:
    choice = req.tool_choice
    if choice is None:
        return None, None
    if not client_tools(req):
        if isinstance(choice, a.ToolChoiceAuto | a.ToolChoiceNone):
            return None, None  # nothing to choose from: the same as no tools
        raise CortexError(
            400,
            f"tool_choice {{'type': '{type(choice).__struct_config__.tag}'}} asks for a tool "
            "call, but the request declares no tools: add them to `tools`.",
            code="invalid_request",
            param="tool_choice",
        )
    parallel = False if getattr(choice, "disable_parallel_tool_use", False) else None
    if isinstance(choice, a.ToolChoiceAuto):
        return "auto", parallel
    if isinstance(choice, a.ToolChoiceAny):
        return "required", parallel
    if isinstance(choice, a.ToolChoiceNone):
        return "none", None
    declared = [tool.name for tool in client_tools(req)]
    if choice.name not in declared:
        raise CortexError(
            400,
            f"tool_choice.name {choice.name!r} is not one of the request's tools "
            f"({', '.join(repr(n) for n in declared) or 'none declared'}).",
            code="invalid_request",
            param="tool_choice.name",
        )
    named = o.NamedToolChoice(function=o.NamedFunction(name=names.to_openai(choice.name)))
    return named, parallel


def _response_format(req: a.MessagesBase) -> o.ResponseFormat | None:
    config = req.output_config
    if config is None or not config.format:
        return None
    fmt = config.format
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise CortexError(
            400,
            'output_config.format must be {"type": "json_schema", "schema": {...}}.',
            code="invalid_request",
            param="output_config.format",
        )
    return o.ResponseFormat(
        type="json_schema", json_schema={"name": "output", "schema": fmt["schema"]}
    )
