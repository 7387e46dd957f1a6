"""Responses requests as OpenAI chat completion requests.

Choices where the two APIs differ (each is what a chat template needs to see the
conversation as the client meant it):

- ``instructions``, then ``system`` and ``developer`` messages, become system messages;
  consecutive ones are joined into one (a blank line apart), since many chat templates
  accept a single system message and few know the ``developer`` role. Text parts of a
  message are concatenated.
- Items of one assistant turn (``reasoning``, an assistant ``message``, its
  ``function_call`` items) become one assistant message: reasoning (its summary, or its
  ``content`` text) as ``reasoning_content``, which the template renders as ``<think>``,
  text as ``content``, calls as ``tool_calls``. ``encrypted_content`` is ignored (a local
  model has nothing to decrypt). A ``function_call_output`` becomes a ``tool`` message.
- ``input_image`` becomes an ``image_url`` part; the neuron refuses it with a 400 where
  the model cannot take images. ``file_id`` images, ``input_file`` and
  ``item_reference`` need OpenAI's Files API or its item store: refused with a 400 that
  says what to send instead.
- ``namespace`` tools are flattened into their functions, named ``<namespace>__<name>``
  for the model; a call of one comes back with ``name`` and ``namespace`` apart.
- Built-in tools the fleet cannot run (``web_search``, ``file_search``,
  ``computer_use_preview``, ``code_interpreter``, ``image_generation``, ``mcp``,
  ``local_shell``, ``custom``, ...) are dropped: the model never sees them. A
  ``tool_choice`` that forces one of them, or that asks for a call (``required``) when
  only built-in tools were given, is refused with a 400 naming them.
- ``text.format`` ``json_object`` / ``json_schema`` becomes ``response_format``
  (constrained decoding on the neuron); ``reasoning.effort`` becomes
  ``reasoning_effort``; ``max_output_tokens`` becomes ``max_tokens``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cortex.common import openai as o
from cortex.common import responses as r
from cortex.common.errors import CortexError, invalid_body
from cortex.services.gateway.anthropic.names import ToolNameMap

NAMESPACE_SEPARATOR = "__"
_MISSING = re.compile(r"Object missing required field `([^`]+)`")

_ITEM_TYPES = {
    "message": r.Message,
    "function_call": r.FunctionCall,
    "function_call_output": r.FunctionCallOutput,
    "reasoning": r.Reasoning,
    "item_reference": r.ItemReference,
}


def parse_items(raw: str | list[dict[str, Any]], where: str = "input") -> list[r.InputItem]:
    """The input items of a request: a string is one user message; a message object
    without ``type`` is a message (OpenAI accepts both)."""
    if isinstance(raw, str):
        return [r.Message(role="user", content=raw)]
    items: list[r.InputItem] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        kind = item.get("type", "message" if "role" in item else None)
        type_ = _ITEM_TYPES.get(kind) if isinstance(kind, str) else None
        if type_ is None:
            raise CortexError(
                400,
                f"{at}.type {kind!r} is not an input item cortex can take: send "
                f"{', '.join(_ITEM_TYPES)} items.",
                code="invalid_request",
                param=f"{at}.type",
            )
        if "type" not in item:
            item = {**item, "type": kind}
        items.append(_convert(item, type_, at))
    return items


# --------------------------------------------------------------------------- tools


@dataclass
class Functions:
    """The function tools the model sees, their names both ways, and what was dropped."""

    tools: list[o.Tool] = field(default_factory=list)
    builtins: list[str] = field(default_factory=list)  # types of the tools dropped
    names: ToolNameMap = field(default_factory=ToolNameMap)
    _namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)

    def upstream(self, name: str, namespace: str | None = None) -> str:
        """The model's name for a client function (registering it both ways)."""
        if namespace:
            joined = f"{namespace}{NAMESPACE_SEPARATOR}{name}"
            self._namespaced[joined] = (namespace, name)
            return self.names.to_openai(joined)
        return self.names.to_openai(name)

    def client(self, upstream: str) -> tuple[str, str | None]:
        """``(name, namespace)`` of a function the model called."""
        joined = self.names.to_anthropic(upstream)
        namespace, name = self._namespaced.get(joined, (None, joined))
        return name, namespace

    @property
    def declared(self) -> list[str]:
        return [self.client(tool.function.name)[0] for tool in self.tools]


def parse_tools(raw: list[dict[str, Any]] | None) -> Functions:
    functions = Functions()
    for i, tool in enumerate(raw or ()):
        _add_tool(functions, tool, f"tools[{i}]", namespace=None)
    return functions


def _add_tool(functions: Functions, tool: dict[str, Any], at: str, namespace: str | None) -> None:
    kind = tool.get("type")
    if kind == "function":
        spec = _convert(tool, r.FunctionTool, at)
        functions.tools.append(
            o.Tool(
                function=o.FunctionDefinition(
                    name=functions.upstream(spec.name, namespace),
                    description=spec.description,
                    parameters=spec.parameters,
                    strict=spec.strict,
                )
            )
        )
    elif kind == "namespace" and namespace is None:
        group = _convert(tool, r.NamespaceTool, at)
        for j, inner in enumerate(group.tools):
            _add_tool(functions, inner, f"{at}.tools[{j}]", namespace=group.name)
    elif isinstance(kind, str):
        functions.builtins.append(kind)
    else:
        raise CortexError(
            400, f"{at}.type is missing: a tool needs a `type`.", code="invalid_request", param=at
        )


def _convert(value: dict[str, Any], type_: type, at: str) -> Any:
    """``value`` as ``type_``; a 400 naming the field (a missing one included)."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        error = invalid_body(exc, at)
        missing = _MISSING.match(str(exc))
        if missing:
            error.param = f"{error.param}.{missing.group(1)}"
        raise error from None


# --------------------------------------------------------------------------- request


def to_chat_request(
    req: r.ResponsesRequest,
    items: list[r.InputItem],
    functions: Functions,
    *,
    model: str,
    inherited: int = 0,
) -> o.ChatCompletionRequest:
    """The chat request for a Responses request whose whole conversation is ``items``:
    the first ``inherited`` from ``previous_response_id`` (its context and output), then
    this request's input."""
    tools, tool_choice = _tools_and_choice(req, functions)
    return o.ChatCompletionRequest(
        model=model,
        messages=to_chat_messages(req.instructions, items, functions, inherited),
        max_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stream=req.stream,
        stream_options=o.StreamOptions(include_usage=True) if req.stream else None,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=req.parallel_tool_calls if tools else None,
        response_format=_response_format(req.text),
        reasoning_effort=req.reasoning.effort if req.reasoning is not None else None,
        user=req.user,
    )


def to_chat_messages(
    instructions: str | None,
    items: Iterable[r.InputItem],
    functions: Functions,
    inherited: int = 0,
) -> list[o.ChatMessage]:
    builder = _Messages(functions)
    if instructions:
        builder.system(instructions)
    for i, item in enumerate(items):
        at = f"input[{i - inherited}]" if i >= inherited else "previous_response_id"
        builder.add(item, at)
    return builder.finish()


class _Messages:
    def __init__(self, functions: Functions) -> None:
        self.functions = functions
        self.messages: list[o.ChatMessage] = []
        self.assistant: o.ChatMessage | None = None

    def add(self, item: r.InputItem, at: str) -> None:
        if isinstance(item, r.Message):
            if item.role == "assistant":
                self._assistant_text(_text(item.content, at), at)
            elif item.role in ("system", "developer"):
                self.system(_text(item.content, at))
            else:
                self._flush()
                self.messages.append(o.ChatMessage(role="user", content=_user_content(item, at)))
        elif isinstance(item, r.FunctionCall):
            turn = self._turn(lambda m: False)
            call = o.ToolCall(
                id=item.call_id,
                function=o.FunctionCall(
                    name=self.functions.upstream(item.name, item.namespace or None),
                    arguments=item.arguments,
                ),
            )
            turn.tool_calls = [*(turn.tool_calls or ()), call]
        elif isinstance(item, r.FunctionCallOutput):
            self._flush()
            output = item.output if isinstance(item.output, str) else _parts(item.output, at)
            if isinstance(output, list) and all(isinstance(p, o.TextPart) for p in output):
                output = "".join(p.text for p in output)  # type: ignore[union-attr]
            self.messages.append(
                o.ChatMessage(role="tool", tool_call_id=item.call_id, content=output)
            )
        elif isinstance(item, r.Reasoning):
            texts = [s.text for s in item.summary] or [c.text for c in item.content or ()]
            text = "\n\n".join(t for t in texts if t)
            if text:
                # Reasoning opens a turn: after text or calls it belongs to the next one.
                turn = self._turn(lambda m: bool(m.content or m.tool_calls))
                turn.reasoning_content = _joined(turn.reasoning_content, text)
        else:
            raise CortexError(
                400,
                f"{at}: item_reference needs OpenAI's item store, which cortex does not "
                "keep; send the item itself, or continue with previous_response_id.",
                code="invalid_request",
                param=at,
            )

    def system(self, text: str) -> None:
        self._flush()
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == "system":
            last.content = _joined(last.content, text)  # type: ignore[arg-type]
        else:
            self.messages.append(o.ChatMessage(role="system", content=text))

    def finish(self) -> list[o.ChatMessage]:
        self._flush()
        return self.messages

    def _assistant_text(self, text: str, at: str) -> None:
        turn = self._turn(lambda m: bool(m.tool_calls))  # text after calls: a new turn
        turn.content = (turn.content or "") + text  # type: ignore[operator]

    def _turn(self, starts_new) -> o.ChatMessage:
        if self.assistant is not None and starts_new(self.assistant):
            self._flush()
        if self.assistant is None:
            self.assistant = o.ChatMessage(role="assistant")
        return self.assistant

    def _flush(self) -> None:
        if self.assistant is not None:
            self.messages.append(self.assistant)
            self.assistant = None


def _joined(first: str | None, second: str) -> str:
    return f"{first}\n\n{second}" if first else second


def _text(content: str | list[r.ContentPart], at: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if isinstance(part, r.InputText | r.OutputText):
            texts.append(part.text)
        elif isinstance(part, r.Refusal):
            texts.append(part.refusal)
        else:
            kind = type(part).__struct_config__.tag
            raise CortexError(
                400,
                f"{at}.content[{j}]: a {kind} part can only appear in a user message.",
                code="invalid_request",
                param=f"{at}.content[{j}]",
            )
    return "".join(texts)


def _user_content(item: r.Message, at: str) -> str | list[o.ContentPart]:
    if isinstance(item.content, str):
        return item.content
    parts = _parts(item.content, f"{at}.content")
    if all(isinstance(part, o.TextPart) for part in parts):
        return "".join(part.text for part in parts)  # type: ignore[union-attr]
    return parts


def _parts(content: list[r.ContentPart], at: str) -> list[o.ContentPart]:
    parts: list[o.ContentPart] = []
    for j, part in enumerate(content):
        where = f"{at}[{j}]"
        if isinstance(part, r.InputText | r.OutputText):
            parts.append(o.TextPart(part.text))
        elif isinstance(part, r.Refusal):
            parts.append(o.TextPart(part.refusal))
        elif isinstance(part, r.InputImage) and part.image_url:
            detail = part.detail if part.detail != "auto" else None
            parts.append(o.ImagePart(o.ImageURL(url=part.image_url, detail=detail)))
        elif isinstance(part, r.InputImage):
            raise CortexError(
                400,
                f"{where}: an image by file_id needs OpenAI's Files API, which cortex does "
                "not provide; send `image_url` (an http(s) or data: URL).",
                code="invalid_request",
                param=f"{where}.file_id",
            )
        else:
            raise CortexError(
                400,
                f"{where}: input_file parts cannot be read by a local model; send the "
                "file's text as an input_text part.",
                code="invalid_request",
                param=where,
            )
    return parts


# --------------------------------------------------------------------------- options


def _tools_and_choice(
    req: r.ResponsesRequest, functions: Functions
) -> tuple[list[o.Tool] | None, o.ToolChoice | None]:
    tools = functions.tools
    choice = req.tool_choice
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function":
            return tools or None, _named(choice, functions)
        if kind == "allowed_tools":
            return _allowed(choice, functions)
        raise CortexError(
            400,
            f"tool_choice forces the built-in tool {kind!r}, which the fleet cannot run "
            "(built-in tools are dropped); choose a function tool, 'auto' or 'none'.",
            code="invalid_request",
            param="tool_choice",
        )
    if choice in (None, "auto"):
        return (tools, "auto") if tools else (None, None)
    if choice == "none":
        return (tools, "none") if tools else (None, None)
    if choice == "required":
        if not tools:
            raise _nothing_to_call(functions)
        return tools, "required"
    raise CortexError(
        400,
        f"tool_choice {choice!r} is not one of 'auto', 'none', 'required' or "
        '{"type": "function", "name": ...}.',
        code="invalid_request",
        param="tool_choice",
    )


def _nothing_to_call(functions: Functions) -> CortexError:
    if functions.builtins:
        dropped = ", ".join(sorted(set(functions.builtins)))
        reason = f"the request's only tools are built-in ({dropped}), which the fleet cannot run"
    else:
        reason = "the request declares no function tools"
    return CortexError(
        400,
        f"tool_choice asks for a tool call, but {reason}: add function tools to `tools`.",
        code="invalid_request",
        param="tool_choice",
    )


def _named(choice: dict[str, Any], functions: Functions) -> o.NamedToolChoice:
    name, namespace = choice.get("name"), choice.get("namespace")
    for tool in functions.tools:
        client_name, client_namespace = functions.client(tool.function.name)
        if client_name == name and (not namespace or client_namespace == namespace):
            return o.NamedToolChoice(function=o.NamedFunction(name=tool.function.name))
    declared = ", ".join(repr(n) for n in functions.declared) or "none declared"
    raise CortexError(
        400,
        f"tool_choice.name {name!r} is not one of the request's functions ({declared}).",
        code="invalid_request",
        param="tool_choice.name",
    )


def _allowed(
    choice: dict[str, Any], functions: Functions
) -> tuple[list[o.Tool] | None, o.ToolChoice | None]:
    mode = choice.get("mode", "auto")
    allowed = {t.get("name") for t in choice.get("tools") or () if isinstance(t, dict)}
    tools = [t for t in functions.tools if functions.client(t.function.name)[0] in allowed]
    if mode == "required":
        if not tools:
            raise _nothing_to_call(functions)
        return tools, "required"
    if mode != "auto":
        raise CortexError(
            400,
            f"tool_choice.mode {mode!r} is not 'auto' or 'required'.",
            code="invalid_request",
            param="tool_choice.mode",
        )
    return (tools, "auto") if tools else (None, None)


def _response_format(text: r.TextConfig | None) -> o.ResponseFormat | None:
    if text is None or text.format.type == "text":
        return None
    fmt = text.format
    if fmt.type == "json_object":
        return o.ResponseFormat(type="json_object")
    if fmt.schema is None:
        raise CortexError(
            400,
            "text.format of type json_schema needs a `schema`.",
            code="invalid_request",
            param="text.format.schema",
        )
    spec: dict[str, Any] = {"name": fmt.name or "output", "schema": fmt.schema}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return o.ResponseFormat(type="json_schema", json_schema=spec)
