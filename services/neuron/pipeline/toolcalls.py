"""Parsing a ``<tool_call>`` body into a name and JSON arguments."""

from __future__ import annotations

import json
import uuid

_ARGUMENT_KEYS = ("arguments", "parameters")  # Llama-3-style templates say "parameters"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_call(body: str) -> tuple[str, str] | None:
    """``{"name": str, "arguments": object | JSON string}`` -> (name, arguments as JSON).

    None when the body is not such a document; the caller then keeps it as text.
    """
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    name = document.get("name")
    if not isinstance(name, str) or not name:
        return None
    arguments: object = next((document[key] for key in _ARGUMENT_KEYS if key in document), {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return name, dump_arguments(arguments)


def dump_arguments(arguments: dict) -> str:
    """Arguments as OpenAI sends them: compact JSON, non-ASCII kept as is."""
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
