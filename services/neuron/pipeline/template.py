"""Chat templates: finding a model's template and rendering it as Hugging Face does.

The environment matches ``transformers``' chat-template rendering (sandboxed,
``trim_blocks``/``lstrip_blocks``, ``tojson`` without ASCII escaping, ``raise_exception``,
``strftime_now``, the ``{% generation %}`` tag, loop controls), so a template written
for HF renders the same here. Failures become a ``CortexError`` that names the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cortex.common.errors import CortexError

TEMPLATE_FILE = "chat_template.jinja"


class TemplateRaised(jinja2.TemplateError):
    """``raise_exception(message)`` called by a template: the request is not acceptable."""


def load_chat_templates(model_dir: Path, tokenizer_config: dict[str, Any]) -> dict[str, str]:
    """A model's chat templates by name ("default", "tool_use", ...); empty if it has none.

    ``chat_template.jinja`` (the newer HF layout) wins over ``tokenizer_config.json``'s
    ``chat_template``, which is a string or a list of ``{"name", "template"}``.
    """
    path = model_dir / TEMPLATE_FILE
    if path.is_file():
        return {"default": path.read_text(encoding="utf-8")}
    source = tokenizer_config.get("chat_template")
    if isinstance(source, str) and source.strip():
        return {"default": source}
    if isinstance(source, list):
        return {
            entry["name"]: entry["template"]
            for entry in source
            if isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("template"), str)
        }
    return {}


def pick_template(templates: dict[str, str], *, with_tools: bool) -> str | None:
    """HF's choice among named templates: "tool_use" when tools are given, else "default"."""
    if with_tools and "tool_use" in templates:
        return templates["tool_use"]
    if "default" in templates:
        return templates["default"]
    return next(iter(templates.values()), None)


def render_chat(
    template: str,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    special_tokens: Mapping[str, str | None] | None = None,
    extra: dict[str, Any] | None = None,
    model: str = "this model",
) -> str:
    """Render ``template`` over OpenAI-shaped message dicts, as ``apply_chat_template`` does."""
    compiled = compile_template(template, model)
    variables: dict[str, Any] = {**(special_tokens or {}), **(extra or {})}
    variables.update(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt)
    try:
        return compiled.render(**variables)
    except TemplateRaised as exc:
        raise CortexError(
            400,
            f"The chat template of {model} rejected the request: {exc.message}",
            code="chat_template_error",
            param="messages",
        ) from None
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CortexError(
            400,
            f"The chat template of {model} could not render these messages "
            f"({type(exc).__name__}: {exc}); check the roles and contents of `messages`.",
            code="chat_template_error",
            param="messages",
        ) from None


def compile_template(template: str, model: str = "this model") -> jinja2.Template:
    try:
        return _compile(template)
    except jinja2.TemplateSyntaxError as exc:
        raise CortexError(
            500,
            f"The chat template of {model} does not compile (line {exc.lineno}: {exc.message}); "
            "fix chat_template in the model's tokenizer_config.json or chat_template.jinja.",
            code="chat_template_error",
        ) from None


@lru_cache(maxsize=32)
def _compile(template: str) -> jinja2.Template:
    return _environment().from_string(template)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters; chat templates expect plain JSON.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> None:
    raise TemplateRaised(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}`` (HF marks assistant spans): renders the body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return caller()
