"""JSON Schema (the subset pydantic emits) -> TypeScript types.

Why by hand (docs/decisions/typescript-generation.md): the maintained
converters are npm packages (``json-schema-to-typescript``), and a Python CLI
must not need Node at run time; the Python ones are unmaintained or target
other outputs. What pydantic emits is a small, closed subset: ``type``
(one or a list), ``enum``/``const``, ``anyOf``/``oneOf``/``allOf``,
``$ref`` to a named schema, ``properties``/``required``/``additionalProperties``,
``items`` (a schema, or a tuple's list, draft-07 style) and annotations.
Anything outside it becomes ``unknown``: a type that is too wide, never one
that is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_SIMPLE = re.compile(r"^[A-Za-z0-9_$.\"']+(\[\])*$")

_PRIMITIVES = {
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "null": "null",
}

_DOC_KEYWORDS = (
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
)

RefNamer = Callable[[str], str]
"""Maps a ``$ref`` string to the TypeScript name of the type it points to."""


def type_name(schema_name: str) -> str:
    """A TypeScript identifier for a named schema (``pkg__Body-Input`` -> ``PkgBodyInput``)."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", schema_name) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Schema"
    return "_" + name if name[0].isdigit() else name


def property_key(name: str) -> str:
    """A property name as it may stand in a TypeScript type literal."""
    return name if _IDENT.match(name) else json.dumps(name)


def doc_comment(schema: Mapping[str, Any], indent: str = "") -> str:
    """A JSDoc block from ``description``/``title`` and the constraints TypeScript cannot say."""
    lines: list[str] = []
    description = schema.get("description")
    if isinstance(description, str) and description.strip():
        lines.extend(description.strip().splitlines())
    for keyword in _DOC_KEYWORDS:
        if keyword in schema:
            lines.append(f"@{keyword} {json.dumps(schema[keyword])}")
    if not lines:
        return ""
    body = "\n".join(f"{indent} * {line}".rstrip() for line in lines).replace("*/", "*\\/")
    return f"{indent}/**\n{body}\n{indent} */\n"


class Converter:
    """Converts schemas whose ``$ref``s name types through ``ref_name``."""

    def __init__(self, ref_name: RefNamer) -> None:
        self._ref_name = ref_name

    def convert(self, schema: Any, indent: str = "") -> str:
        """The TypeScript type of ``schema``; ``indent`` is the current line's indentation."""
        if schema is True or schema == {}:
            return "unknown"
        if schema is False:
            return "never"
        if not isinstance(schema, Mapping):
            return "unknown"
        if "$ref" in schema:
            return self._ref_name(str(schema["$ref"]))
        if "const" in schema:
            return _literal(schema["const"])
        if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
            return " | ".join(_literal(value) for value in schema["enum"])
        for keyword in ("anyOf", "oneOf"):
            if isinstance(schema.get(keyword), list) and schema[keyword]:
                return _union([self.convert(s, indent) for s in schema[keyword]])
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            parts = [_wrap(self.convert(s, indent)) for s in schema["allOf"]]
            return " & ".join(dict.fromkeys(parts))
        kind = schema.get("type")
        if isinstance(kind, list):
            return _union([self._typed(schema, str(k), indent) for k in kind])
        if isinstance(kind, str):
            return self._typed(schema, kind, indent)
        if "properties" in schema or "additionalProperties" in schema:
            return self._object(schema, indent)
        return "unknown"

    def _typed(self, schema: Mapping[str, Any], kind: str, indent: str) -> str:
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind == "array":
            return self._array(schema, indent)
        if kind == "object":
            return self._object(schema, indent)
        return "unknown"

    def _array(self, schema: Mapping[str, Any], indent: str) -> str:
        items = schema.get("items")
        tuple_items = schema.get("prefixItems", items if isinstance(items, list) else None)
        if isinstance(tuple_items, list):
            rest = schema.get("additionalItems") if isinstance(items, list) else items
            if rest is None and schema.get("maxItems") != len(tuple_items):
                rest = {}  # unconstrained beyond the listed items, as JSON Schema says
            members = [self.convert(s, indent) for s in tuple_items]
            if rest is not None and rest is not False:
                members.append("..." + _array_of(self.convert(rest, indent)))
            return "[" + ", ".join(members) + "]"
        return _array_of(self.convert(items if items is not None else {}, indent))

    def _object(self, schema: Mapping[str, Any], indent: str) -> str:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        extra = schema.get("additionalProperties", True if not properties else None)
        inner = indent + "  "
        lines = []
        for name, sub in properties.items():
            comment = doc_comment(sub, inner) if isinstance(sub, Mapping) else ""
            optional = "" if name in required else "?"
            lines.append(
                f"{comment}{inner}{property_key(name)}{optional}: {self.convert(sub, inner)};\n"
            )
        if extra is not None and extra is not False:
            value = self.convert(extra, inner)
            if properties:
                # An index signature must admit every property's type: say it as an intersection.
                body = "".join(lines)
                return f"{{\n{body}{indent}}} & {{ [key: string]: {value} }}"
            lines.append(f"{inner}[key: string]: {value};\n")
        if not lines:
            return "{ [key: string]: never }" if extra is False else "{ [key: string]: unknown }"
        return "{\n" + "".join(lines) + indent + "}"


def _literal(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | str):
        return json.dumps(value)
    return "unknown"


def _wrap(ts: str) -> str:
    """Parentheses around a union or intersection where precedence would change it."""
    return f"({ts})" if (" | " in ts or " & " in ts) and not ts.startswith("{") else ts


def _union(members: list[str]) -> str:
    unique = list(dict.fromkeys(members))
    if "unknown" in unique:
        return "unknown"
    return " | ".join(_wrap(m) if " & " in m else m for m in unique)


def _array_of(ts: str) -> str:
    return f"{ts}[]" if _SIMPLE.match(ts) else f"Array<{ts}>"
