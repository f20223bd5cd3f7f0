"""pydantic's JSON Schema (draft 2020-12) as AsyncAPI 3.0's schema object (a draft-07 superset).

AsyncAPI 3.0 offers no 2020-12 schema format, and pydantic emits 2020-12.
The two differ, in what pydantic uses, in two places only: tuples
(``prefixItems`` instead of an ``items`` array) and pydantic's OpenAPI-style
``discriminator`` object, where AsyncAPI's is the property name alone.
Everything else pydantic emits (``$ref`` to components, ``anyOf``, ``const``,
numeric ``exclusiveMinimum``...) is valid draft-07 with the same meaning.
"""

from __future__ import annotations

from typing import Any

_NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
"""Keywords whose value maps names (not keywords) to schemas."""

_DATA = frozenset({"const", "enum", "default", "examples", "example"})
"""Keywords whose value is instance data, never rewritten."""


def to_draft7(schema: Any) -> Any:
    """A copy of ``schema`` with 2020-12-only keywords rewritten; other values as they are."""
    if isinstance(schema, list):
        return [to_draft7(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DATA:
            out[key] = value
        elif key in _NAME_MAPS and isinstance(value, dict):
            out[key] = {name: to_draft7(sub) for name, sub in value.items()}
        else:
            out[key] = to_draft7(value)
    if "prefixItems" in out:
        rest = out.pop("items", None)
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = False if rest is None else rest
    discriminator = out.get("discriminator")
    if isinstance(discriminator, dict):
        out["discriminator"] = discriminator.get("propertyName")
        if out["discriminator"] is None:
            del out["discriminator"]
    return out
