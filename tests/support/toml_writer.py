"""Enough TOML writing for the config files tests hand to real daemons."""

from __future__ import annotations

from typing import Any


def toml_text(tables: dict[str, Any]) -> str:
    """cortex.toml, models.toml or neuron.toml text: scalars, lists, tables, arrays of tables."""
    lines: list[str] = []
    top = {k: v for k, v in tables.items() if not isinstance(v, dict | list) or _scalar_list(v)}
    for key, value in top.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for name, value in tables.items():
        if name in top:
            continue
        if isinstance(value, dict):
            lines.append(f"\n[{_key(name)}]")
            for key, item in value.items():
                lines.append(f"{_key(key)} = {_value(item)}")
        else:
            for row in value:
                lines.append(f"\n[[{_key(name)}]]")
                for key, item in row.items():
                    lines.append(f"{_key(key)} = {_value(item)}")
    return "\n".join(lines) + "\n"


def _scalar_list(value: Any) -> bool:
    return isinstance(value, list) and not any(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _value(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")
