"""What an App serves, as plain data with JSON schemas: the input of every generator.

Read from :attr:`wsgate.App.namespaces` (what the registry computed at
start-up: each handler's body ``TypeAdapter``, return annotation, roles and
``public`` flag, and the pushes each gateway declares); nothing here looks at a
handler's signature again. Bodies are described as pydantic validates them
(``mode="validation"``), acks and pushes as they are serialized
(``mode="serialization"``), all in one pass so that a model used in several
places is one named schema, referenced everywhere.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import PydanticUserError, TypeAdapter

from wsgate.core.refresh import REFRESH_EVENT
from wsgate.core.registry import NOT_ANNOTATED, NamespaceSpec
from wsgate.schema.builtins import (
    BUILTIN_EVENT_DOCS,
    BUILTIN_PUSH_DOCS,
    REF,
    REFRESH_ACK,
    REFRESH_BODY,
    Schema,
    builtin_schemas,
    ref,
)
from wsgate.schema.draft7 import to_draft7

Mode = Literal["validation", "serialization"]


@dataclass(frozen=True, slots=True)
class EventDoc:
    """A client -> server event: its body (``None``: takes none) and its ack."""

    event: str
    body: Schema | None
    ack: Schema
    """``{}`` when the handler's return type is not annotated (the ack is undocumented)."""
    public: bool
    roles: tuple[str, ...]
    guards: int
    description: str | None
    builtin: bool = False


@dataclass(frozen=True, slots=True)
class PushDoc:
    """A server -> client event and its payload (``None``: no payload)."""

    event: str
    payload: Schema | None
    description: str | None
    builtin: bool = False


@dataclass(frozen=True, slots=True)
class NamespaceDoc:
    namespace: str
    description: str | None
    connect_roles: tuple[str, ...]
    connect_guards: int
    events: tuple[EventDoc, ...]
    pushes: tuple[PushDoc, ...]


@dataclass(frozen=True, slots=True)
class ApiDoc:
    """Every namespace, and the named schemas their events refer to (``#/components/schemas/``)."""

    namespaces: tuple[NamespaceDoc, ...]
    schemas: dict[str, Schema]


def describe(namespaces: Mapping[str, NamespaceSpec]) -> ApiDoc:
    """The API of an App (``app.namespaces``), sorted by namespace and event name."""
    wanted: list[tuple[tuple[str, ...], Mode, Any]] = []
    for ns, spec in namespaces.items():
        for event, handler in spec.handlers.items():
            if handler.body is not None:
                wanted.append((("body", ns, event), "validation", handler.body))
            if handler.returns is not NOT_ANNOTATED:
                wanted.append((("ack", ns, event), "serialization", handler.returns))
        for event, push in spec.pushes.items():
            if push.payload is not None:
                wanted.append((("push", ns, event), "serialization", push.payload))
    found, schemas = _schemas(wanted)

    docs = []
    for ns in sorted(namespaces):
        spec = namespaces[ns]
        events = [
            EventDoc(
                event=event,
                body=found.get(("body", ns, event)) if handler.body is not None else None,
                ack=found.get(("ack", ns, event), {}),
                public=handler.public,
                roles=() if handler.public else handler.roles,
                guards=len(handler.guards),
                description=_doc(handler.call),
            )
            for event, handler in spec.handlers.items()
        ]
        events.append(
            EventDoc(
                event=REFRESH_EVENT,
                body=ref(REFRESH_BODY),
                ack=ref(REFRESH_ACK),
                public=False,
                roles=(),
                guards=0,
                description=BUILTIN_EVENT_DOCS[REFRESH_EVENT],
                builtin=True,
            )
        )
        pushes = [
            PushDoc(
                event=event,
                payload=found.get(("push", ns, event)) if push.payload is not None else None,
                description=push.description,
            )
            for event, push in spec.pushes.items()
        ]
        pushes.extend(
            PushDoc(event=event, payload=ref(schema), description=text, builtin=True)
            for event, (schema, text) in BUILTIN_PUSH_DOCS.items()
        )
        docs.append(
            NamespaceDoc(
                namespace=ns,
                description=_doc(type(spec.gateway)),
                connect_roles=spec.connect_roles,
                connect_guards=len(spec.connect_guards),
                events=tuple(sorted(events, key=lambda e: e.event)),
                pushes=tuple(sorted(pushes, key=lambda p: p.event)),
            )
        )
    return ApiDoc(namespaces=tuple(docs), schemas={**schemas, **builtin_schemas()})


def _schemas(
    wanted: Iterable[tuple[tuple[str, ...], Mode, Any]],
) -> tuple[dict[tuple[str, ...], Schema], dict[str, Schema]]:
    """JSON schemas of ``wanted`` types in one pydantic pass, and their named definitions.

    A type pydantic cannot describe is a start-up error naming the event, not
    a silently incomplete document.
    """
    inputs = []
    for key, mode, annotation in wanted:
        try:
            adapter = annotation if isinstance(annotation, TypeAdapter) else TypeAdapter(annotation)
            adapter.json_schema(mode=mode)
        except (PydanticUserError, TypeError) as exc:
            kind, namespace, event = key
            raise TypeError(
                f"cannot describe the {kind} of {event!r} on {namespace!r}: {exc}"
            ) from None
        inputs.append((key, mode, adapter))
    if not inputs:
        return {}, {}
    by_key, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF + "{model}")
    schemas = {name: to_draft7(schema) for name, schema in definitions.get("$defs", {}).items()}
    reserved = set(builtin_schemas())
    clash = reserved & set(schemas)
    if clash:
        raise TypeError(f"model names {sorted(clash)} are reserved by wsgate's own schemas")
    return {key: to_draft7(schema) for (key, _), schema in by_key.items()}, schemas


_BLANK_LINE = re.compile(r"\n\s*\n")


def _doc(target: Any) -> str | None:
    """The first paragraph of ``target``'s own docstring (not one inherited from a base)."""
    text = getattr(target, "__doc__", None)
    if not text:
        return None
    first = _BLANK_LINE.split(inspect.cleandoc(text), maxsplit=1)[0]
    return " ".join(first.split()) or None
