"""Checks of an AsyncAPI document beyond its JSON schema, and instance checks against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SPEC = Path("@asyncapi/specs/schemas/3.0.0.json")


def spec_validator(node_modules: Path) -> jsonschema.protocols.Validator:
    """A validator for the official AsyncAPI 3.0.0 schema (draft-07, bundled ``$id``s)."""
    schema = json.loads((node_modules / SPEC).read_text())
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft7Validator, cls  # the draft jsonschema must support
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(node_modules: Path, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in spec_validator(node_modules).iter_errors(document)
    ]


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The target of a local ``$ref`` (RFC 6901 pointer); KeyError when it dangles."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def dangling_refs(document: dict[str, Any]) -> list[str]:
    """Every ``$ref`` in the document that points at nothing (the JSON schema cannot say)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolve(document, ref)
                except (KeyError, TypeError):
                    found.append(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return found


def foreign_operation_messages(document: dict[str, Any]) -> list[str]:
    """Operation (and reply) messages that are not messages of the operation's channel.

    AsyncAPI 3.0 requires them to be a subset; the JSON schema cannot check it.
    """
    wrong = []
    for name, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        prefix = channel_ref + "/messages/"
        refs = [m["$ref"] for m in operation.get("messages", [])]
        reply = operation.get("reply")
        if reply:
            assert reply["channel"]["$ref"] == channel_ref
            refs += [m["$ref"] for m in reply["messages"]]
        wrong += [f"{name}: {ref}" for ref in refs if not ref.startswith(prefix)]
    return wrong


def instance_errors(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    """Errors of ``instance`` against ``schema``, a schema of ``document`` (its refs resolve)."""
    root = {**schema, "components": document["components"]}
    validator = jsonschema.Draft7Validator(root)
    return [e.message for e in validator.iter_errors(instance)]


def operation(document: dict[str, Any], channel: str, action: str, event: str) -> dict[str, Any]:
    op: dict[str, Any] = document["operations"][f"{channel}.{action}.{event}"]
    return op


def message_payload(document: dict[str, Any], ref: str) -> dict[str, Any]:
    payload: dict[str, Any] = resolve(document, ref)["payload"]
    return payload


def ack_schema(document: dict[str, Any], channel: str, event: str) -> dict[str, Any]:
    return message_payload(
        document, operation(document, channel, "receive", event)["reply"]["messages"][0]["$ref"]
    )


def push_schema(document: dict[str, Any], channel: str, event: str) -> dict[str, Any]:
    return message_payload(
        document, operation(document, channel, "send", event)["messages"][0]["$ref"]
    )


def body_schema(document: dict[str, Any], channel: str, event: str) -> dict[str, Any]:
    return message_payload(
        document, operation(document, channel, "receive", event)["messages"][0]["$ref"]
    )
