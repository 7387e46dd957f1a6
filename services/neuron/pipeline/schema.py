"""JSON Schema (the subset tool definitions use) -> a byte grammar of valid documents.

Supported: ``type`` (one or a list), ``object`` (``properties``, ``required``,
``additionalProperties``), ``string`` (``enum``, ``minLength``/``maxLength``),
``integer``/``number`` (``minimum``/``maximum``, exclusive forms), ``boolean``,
``null``, ``array`` (``items``, ``prefixItems``, ``minItems``/``maxItems``), ``enum``,
``const``, ``anyOf``/``oneOf`` (as alternatives), ``allOf`` (merged), local ``$ref``.
Other keywords (``pattern``, ``format``, ``uniqueItems``...) are ignored.

Generation is finite so that even a model with random weights ends: free strings,
arrays, free-form objects and numbers are capped (``Limits``). Objects list their
properties in schema order, required ones always, optional ones when the model picks
them; properties outside ``properties`` are not generated unless the schema has none.
Output is formatted like ``json.dumps``: ``{"a": 1, "b": [2, 3]}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from cortex.common.errors import CortexError
from cortex.services.neuron.pipeline.grammar import Alt, Lit, Node, Num, Seq, Str


@dataclass(frozen=True)
class Limits:
    string_chars: int = 128  # a free string without maxLength
    max_string_chars: int = 4096  # even with maxLength
    array_items: int = 8  # an array without maxItems
    object_keys: int = 8  # a free-form object
    int_digits: int = 6
    frac_digits: int = 4
    depth: int = 3  # nesting of schema-less ("any JSON") values


class SchemaError(CortexError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(400, message, code="invalid_schema", param=param)


def schema_grammar(schema: Any, *, limits: Limits | None = None, param: str = "schema") -> Node:
    """The grammar of JSON documents valid for ``schema``."""
    return _Compiler(schema, limits or Limits(), param).node(schema, ())


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _Compiler:
    def __init__(self, root: Any, limits: Limits, param: str) -> None:
        self.root = root
        self.limits = limits
        self.param = param
        self._any: dict[int, Node] = {}

    def node(self, schema: Any, refs: tuple[str, ...]) -> Node:
        if schema is True or schema == {} or schema is None:
            return self.any(self.limits.depth)
        if schema is False:
            raise SchemaError("The schema accepts no value (`false`).", self.param)
        if not isinstance(schema, dict):
            raise SchemaError(f"A schema must be an object; got {dump(schema)}.", self.param)
        if "$ref" in schema:
            return self.node(self.resolve(schema["$ref"], refs), (*refs, schema["$ref"]))
        if "allOf" in schema:
            return self.node(_merge(schema), refs)
        if "const" in schema:
            return Lit(dump(schema["const"]))
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError("`enum` must be a non-empty list.", self.param)
            return _alt([Lit(dump(value)) for value in values])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = schema[key]
                if not isinstance(options, list) or not options:
                    raise SchemaError(f"`{key}` must be a non-empty list.", self.param)
                return _alt([self.node(option, refs) for option in options])
        kind = schema.get("type")
        if isinstance(kind, list):
            return _alt([self.typed({**schema, "type": one}, one, refs) for one in kind])
        if kind is None:
            kind = _implied_type(schema)
        if kind is None:
            return self.any(self.limits.depth)
        return self.typed(schema, kind, refs)

    def typed(self, schema: dict, kind: str, refs: tuple[str, ...]) -> Node:
        if kind == "string":
            return self.string(schema)
        if kind in ("integer", "number"):
            return self.number(schema, integer=kind == "integer")
        if kind == "boolean":
            return Alt(Lit("true"), Lit("false"))
        if kind == "null":
            return Lit("null")
        if kind == "array":
            return self.array(schema, refs)
        if kind == "object":
            return self.object(schema, refs)
        raise SchemaError(f"Unknown JSON Schema type {kind!r}.", self.param)

    def string(self, schema: dict) -> Str:
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        high = max(self.limits.string_chars, low) if high is None else int(high)
        high = min(high, self.limits.max_string_chars)
        if high < low:
            raise SchemaError(f"`minLength` {low} exceeds `maxLength` {high}.", self.param)
        return Str(low, max(high, low))

    def number(self, schema: dict, *, integer: bool) -> Num:
        grid = 1 if integer else 10**self.limits.frac_digits
        low = _bound(schema, "minimum", "exclusiveMinimum", grid, upper=False)
        high = _bound(schema, "maximum", "exclusiveMaximum", grid, upper=True)
        if low is not None and high is not None and low > high:
            what = "integer" if integer else "number"
            raise SchemaError(f"No {what} satisfies the schema's bounds.", self.param)
        return Num(
            integer=integer,
            low=low,
            high=high,
            int_digits=self.limits.int_digits,
            frac_digits=self.limits.frac_digits,
        )

    def array(self, schema: dict, refs: tuple[str, ...]) -> Node:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            items = [self.node(item, refs) for item in prefix]
            return Seq(Lit("["), *_joined(items, ", "), Lit("]"))
        item = self.node(schema.get("items", True), refs)
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        high = self.limits.array_items if high is None else min(int(high), self.limits.array_items)
        if high < low:
            high = low
        return _repeat("[", item, "]", low, high)

    def object(self, schema: dict, refs: tuple[str, ...]) -> Node:
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required") or [] if isinstance(name, str)]
        extra = schema.get("additionalProperties", True)
        if not properties and not required:
            if extra is False:
                return Lit("{}")
            value = self.node(extra if isinstance(extra, dict) else True, refs)
            key = Str(1, 32)
            entry = Seq(key, Lit(": "), value)
            return _repeat("{", entry, "}", 0, self.limits.object_keys)
        fields = [
            (name, self.node(sub, refs), name in required) for name, sub in properties.items()
        ]
        fields += [
            (name, self.any(self.limits.depth), True) for name in required if name not in properties
        ]
        return _ordered_object(fields)

    def any(self, depth: int) -> Node:
        """Any JSON value, nested at most ``depth`` deep."""
        cached = self._any.get(depth)
        if cached is not None:
            return cached
        options: list[Node] = [
            Str(0, self.limits.string_chars),
            Num(
                integer=False,
                int_digits=self.limits.int_digits,
                frac_digits=self.limits.frac_digits,
            ),
            Lit("true"),
            Lit("false"),
            Lit("null"),
        ]
        if depth > 0:
            inner = self.any(depth - 1)
            options.append(_repeat("[", inner, "]", 0, self.limits.array_items))
            entry = Seq(Str(1, 32), Lit(": "), inner)
            options.append(_repeat("{", entry, "}", 0, self.limits.object_keys))
        node = self._any[depth] = Alt(*options)
        return node

    def resolve(self, ref: Any, refs: tuple[str, ...]) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(
                f'Only local `$ref`s ("#/...") are supported; got {ref!r}.', self.param
            )
        if ref in refs:
            raise SchemaError(f"Recursive schemas are not supported (`$ref` {ref!r}).", self.param)
        target: Any = self.root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise SchemaError(f"`$ref` {ref!r} points to nothing in the schema.", self.param)
            target = target[part]
        return target


def _implied_type(schema: dict) -> str | None:
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _merge(schema: dict) -> dict:
    """``allOf`` folded into one schema: properties and required lists united."""
    merged = {key: value for key, value in schema.items() if key != "allOf"}
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            continue
        part = _merge(part) if "allOf" in part else part
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _bound(
    schema: dict, inclusive: str, exclusive: str, grid: int, *, upper: bool
) -> Fraction | None:
    """The tightest bound on the grid of representable values (1/grid apart), or None."""
    candidates: list[Fraction] = []
    for key, strict in ((inclusive, False), (exclusive, True)):
        value = schema.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # draft-4 boolean exclusive flags are folded in below
        if not math.isfinite(value):
            continue
        strict = strict or (key == inclusive and schema.get(exclusive) is True)
        scaled = Fraction(value) * grid
        if upper:
            steps = math.floor(scaled)
            if strict and steps == scaled:
                steps -= 1
        else:
            steps = math.ceil(scaled)
            if strict and steps == scaled:
                steps += 1
        candidates.append(Fraction(steps, grid))
    if not candidates:
        return None
    return min(candidates) if upper else max(candidates)


def _alt(options: list[Node]) -> Node:
    return options[0] if len(options) == 1 else Alt(*options)


def _joined(items: list[Node], separator: str) -> list[Node]:
    out: list[Node] = []
    for index, item in enumerate(items):
        if index:
            out.append(Lit(separator))
        out.append(item)
    return out


def _repeat(opening: str, item: Node, closing: str, low: int, high: int) -> Node:
    """``opening item, item, ... closing`` with ``low``..``high`` items."""
    tail: Node = Lit(closing)
    # Built back to front: after k items, close (when k >= low) or add another.
    for count in range(high, 0, -1):
        more = Seq(Lit(", "), item, tail) if count < high else None
        if count >= low:
            tail = Alt(Lit(closing), more) if more is not None else Lit(closing)
        else:
            tail = more if more is not None else Lit(closing)
    if high == 0:  # then low == 0 too (callers keep low <= high)
        return Lit(opening + closing)
    first = Seq(item, tail)
    if low > 0:
        return Seq(Lit(opening), first)
    return Alt(Lit(opening + closing), Seq(Lit(opening), first))


def _ordered_object(fields: list[tuple[str, Node, bool]]) -> Node:
    """``{"a": ..., "b": ...}`` in schema order; optional fields may be left out."""
    size = len(fields)
    tails: dict[tuple[int, bool], Node] = {}

    def tail(start: int, first: bool) -> Node:
        key = (start, first)
        if key in tails:
            return tails[key]
        options: list[Node] = []
        next_required = next((i for i in range(start, size) if fields[i][2]), size)
        for index in range(start, min(next_required + 1, size)):
            name, value, _ = fields[index]
            separator = "" if first else ", "
            options.append(Seq(Lit(f"{separator}{dump(name)}: "), value, tail(index + 1, False)))
        if next_required == size:
            options.append(Lit("}"))
        tails[key] = node = _alt(options)
        return node

    return Seq(Lit("{"), tail(0, True))
