"""Prompts for one model: OpenAI chat messages -> its chat template -> token ids.

``PromptBuilder`` is bound to a model directory (Hugging Face layout): it reads the
tokenizer, ``tokenizer_config.json`` (template, special tokens), the EOS ids of
``generation_config.json``/``config.json``, and probes the reasoning/tool markers. The
supervisor uses it for ``/tokenize`` (Anthropic ``count_tokens``) and context checks,
the worker for the prompt it generates from: the same code, the same count.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec

from cortex.common.errors import CortexError, validation_message
from cortex.common.openai import (
    ChatMessage,
    FilePart,
    ImagePart,
    InputAudioPart,
    RefusalPart,
    TextPart,
    Tool,
)
from cortex.services.neuron.pipeline.markers import THINK_CLOSE, THINK_OPEN, Markers
from cortex.services.neuron.pipeline.template import (
    load_chat_templates,
    pick_template,
    render_chat,
)

__all__ = [
    "ChatPrompt",
    "PromptBuilder",
    "fold_system_messages",
    "message_dicts",
    "render_chat",
    "tool_dicts",
]

_SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
_UNSUPPORTED_PARTS = {
    ImagePart: "images",
    InputAudioPart: "audio",
    FilePart: "files",
}


class ChatPrompt(msgspec.Struct):
    text: str
    ids: list[int]
    start_in_reasoning: bool = False  # the template opened <think> for the model


class PromptBuilder:
    def __init__(self, model_dir: str | Path, *, tokenizer: Any = None, name: str | None = None):
        self.model_dir = Path(model_dir)
        self.name = name or self.model_dir.name
        if tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer = tokenizer
        self.tokenizer_config = _read_json(self.model_dir / "tokenizer_config.json")
        self.templates = load_chat_templates(self.model_dir, self.tokenizer_config)
        # Unset tokens stay undefined (rendering as ""), as in HF, never "None".
        self.special_tokens = {
            key: text
            for key in _SPECIAL_TOKEN_KEYS
            if (text := _token_text(self.tokenizer_config.get(key))) is not None
        }
        self.markers = Markers.probe(tokenizer)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.templates)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @cached_property
    def eos_token_ids(self) -> list[int]:
        """Every id that ends a turn: generation_config.json, config.json, eos_token."""
        ids: list[object] = []  # as the files say; only the ints are kept
        for file in ("generation_config.json", "config.json"):
            value = _read_json(self.model_dir / file).get("eos_token_id")
            ids.extend(value if isinstance(value, list) else [value])
        eos_text = self.special_tokens.get("eos_token")
        if eos_text:
            ids.append(self.tokenizer.token_to_id(eos_text))
        return list(dict.fromkeys(i for i in ids if isinstance(i, int)))

    # ------------------------------------------------------------------ chat

    def render(
        self,
        messages: list[ChatMessage],
        *,
        tools: list[Tool] | None = None,
        add_generation_prompt: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """The prompt text for ``messages`` (and ``tools``) through the model's template."""
        if not messages:
            raise CortexError(
                400, "`messages` is empty: send at least one message.", param="messages"
            )
        template = pick_template(self.templates, with_tools=bool(tools))
        if template is None:
            raise CortexError(
                400,
                f"Model {self.name!r} has no chat template (no chat_template in "
                "tokenizer_config.json and no chat_template.jinja), so it cannot serve chat "
                "completions; send a formatted prompt to /v1/completions instead.",
                code="chat_template_missing",
            )
        dicts = message_dicts(messages)

        def rendered(dicts: list[dict[str, Any]]) -> str:
            return render_chat(
                template,
                dicts,
                tools=tool_dicts(tools) if tools else None,
                add_generation_prompt=add_generation_prompt,
                special_tokens=self.special_tokens,
                extra=extra,
                model=repr(self.name),
            )

        later = [m["content"] for m in dicts[1:] if m["role"] == "system" and m["content"]]
        if not later:
            return rendered(dicts)
        try:
            text = rendered(dicts)
        except CortexError:
            return rendered(fold_system_messages(dicts))
        if all(content in text for content in later):
            return text
        return rendered(fold_system_messages(dicts))

    def chat_prompt(
        self,
        messages: list[ChatMessage],
        *,
        tools: list[Tool] | None = None,
        add_generation_prompt: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> ChatPrompt:
        text = self.render(
            messages, tools=tools, add_generation_prompt=add_generation_prompt, extra=extra
        )
        return ChatPrompt(
            text=text,
            ids=self.encode(text),
            start_in_reasoning=add_generation_prompt and self.generation_opens_reasoning,
        )

    @cached_property
    def generation_opens_reasoning(self) -> bool:
        """Whether the template's generation prompt leaves a ``<think>`` open (R1-style)."""
        if not self.markers.reasoning or not self.templates:
            return False
        probe = [ChatMessage(role="user", content="Hello")]
        try:
            bare = self.render(probe, add_generation_prompt=False)
            full = self.render(probe, add_generation_prompt=True)
        except CortexError:
            return False
        suffix = full[len(bare) :] if full.startswith(bare) else full[-64:]
        return suffix.rfind(THINK_OPEN) > suffix.rfind(THINK_CLOSE)

    # ------------------------------------------------------------------ tokens

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``. Templated text carries its own BOS, hence no specials."""
        # encode_batch releases the GIL (encode holds it for the whole call, seconds for
        # a long prompt), so the worker's reader still applies a Cancel meanwhile.
        return self.tokenizer.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def completion_ids(self, prompt: str | list[int], *, param: str = "prompt") -> list[int]:
        """Ids for a legacy completion prompt: text gets the tokenizer's specials (BOS)."""
        if isinstance(prompt, str):
            return self.encode(prompt, add_special_tokens=True)
        vocab = self.vocab_size
        bad = next((i for i in prompt if not 0 <= i < vocab), None)
        if bad is not None:
            raise CortexError(
                400,
                f"`{param}` holds token id {bad}, outside this model's vocabulary "
                f"(0..{vocab - 1}).",
                param=param,
            )
        return list(prompt)

    def tokenize_messages(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        """Ids of OpenAI-shaped message dicts (``/tokenize``), exactly as chat would see them."""
        typed_messages = _convert(messages, list[ChatMessage], "messages")
        typed_tools = _convert(tools, list[Tool], "tools") if tools else None
        return self.chat_prompt(
            typed_messages, tools=typed_tools, add_generation_prompt=add_generation_prompt
        ).ids


# ---------------------------------------------------------------------- conversion


def message_dicts(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """OpenAI messages as the dicts HF templates expect.

    Content parts are flattened to text; ``developer`` becomes ``system``; assistant
    ``tool_calls`` carry ``arguments`` as a mapping where it parses (templates iterate
    over it or ``tojson`` it); ``tool`` messages keep ``tool_call_id`` (and ``name``).
    """
    return [_message_dict(index, message) for index, message in enumerate(messages)]


def fold_system_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with every later system message appended to the leading one."""
    head = messages[0] if messages and messages[0]["role"] == "system" else None
    rest = messages[1:] if head is not None else messages
    parts = [head["content"]] if head is not None and head["content"] else []
    parts += [m["content"] for m in rest if m["role"] == "system" and m["content"]]
    folded = {**(head or {"role": "system"}), "content": "\n\n".join(parts)}
    return [folded, *(m for m in rest if m["role"] != "system")]


def tool_dicts(tools: list[Tool]) -> list[dict[str, Any]]:
    # Spelled out: the struct omits its default ``type``, which templates read.
    return [{"type": "function", "function": msgspec.to_builtins(tool.function)} for tool in tools]


def _message_dict(index: int, message: ChatMessage) -> dict[str, Any]:
    role = {"developer": "system", "function": "tool"}.get(message.role, message.role)
    result: dict[str, Any] = {"role": role, "content": _content_text(index, message)}
    if message.name is not None:
        result["name"] = message.name
    if message.tool_calls:
        result["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.function.name,
                    "arguments": _parsed_arguments(call.function.arguments),
                },
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        result["tool_call_id"] = message.tool_call_id
    if message.reasoning_content:
        result["reasoning_content"] = message.reasoning_content
    return result


def _content_text(index: int, message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts: list[str] = []
    for part_index, part in enumerate(message.content):
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, RefusalPart):
            texts.append(part.refusal)
        else:
            what = _UNSUPPORTED_PARTS.get(type(part), "this content type")
            raise CortexError(
                400,
                f"This model does not accept {what}: messages[{index}].content[{part_index}] "
                "is not text. Send text parts only.",
                code="unsupported_content",
                param=f"messages[{index}].content[{part_index}]",
            )
    return "".join(texts)


def _parsed_arguments(arguments: str) -> Any:
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return parsed if isinstance(parsed, dict) else arguments


def _convert(value: Any, type_: Any, param: str) -> Any:
    try:
        return msgspec.convert(value, type=type_)
    except msgspec.ValidationError as exc:
        message = validation_message(exc).replace("field `", f"field `{param}")
        raise CortexError(400, message, code="invalid_request", param=param) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """A special token from tokenizer_config.json: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
