"""The ``/ws`` frame protocol as pure functions: text in, a request or an error out.

The wire rules live here, apart from the socket code, so that they can be
read in one place and tested (and fuzzed) without a server. Nothing here
raises on client input: whatever a client sends becomes a :class:`Request`,
a :class:`FrameError` or, for the first message, an ``auth`` object.

Client frames are ``{"id": n, "event": E, "data": D}`` (``id`` and ``data``
optional). Unknown fields are refused rather than ignored: a client that
misspells ``data`` as ``body`` learns it from a 400 instead of seeing its
handler called with nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from wsgate.core.port import loads_strict

__all__ = [
    "MAX_EVENT_LENGTH",
    "MAX_ID",
    "FrameError",
    "Request",
    "auth_payload",
    "decode_frame",
    "encode",
    "recover_id",
]

MAX_ID = 2**53 - 1
"""The largest id every JSON client holds exactly (JavaScript numbers are doubles)."""

MAX_EVENT_LENGTH = 256
"""Event names are identifiers, not payloads; longer ones are refused before any lookup."""

_FRAME_KEYS = frozenset({"id", "event", "data"})


@dataclass(frozen=True, slots=True)
class Request:
    """A well-formed client frame; ``id`` is None when the client wants no reply."""

    id: int | None
    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class FrameError:
    """A frame that cannot be dispatched; ``id`` is set when one could be recovered.

    ``message`` is written for the client and never repeats client input.
    """

    id: int | None
    message: str


def _valid_id(value: object) -> bool:
    # bool is an int subclass: ``true`` is not an id.
    return type(value) is int and 0 <= value <= MAX_ID


RECOVERY_SCAN_CHARS = 4096
"""How far into a broken frame its ``id`` is looked for (ids come first in every client seen)."""


def recover_id(raw: str | bytes) -> int | None:
    """The top-level ``"id"`` of a frame that is not valid JSON, if it can be read safely.

    A client that sent ``{"id": 7, "event": "x", "data": }`` waits for the
    reply to 7; an error without the id would leave that call to time out.
    The scan follows strings and nesting, so an ``"id"`` inside ``data`` or
    inside a string is never taken for the frame's; it reads at most
    :data:`RECOVERY_SCAN_CHARS` characters and gives up on anything unclear.
    """
    text = raw if isinstance(raw, str) else raw[:RECOVERY_SCAN_CHARS].decode("utf-8", "replace")
    text = text[:RECOVERY_SCAN_CHARS]
    depth = 0
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            end = _string_end(text, index)
            if end < 0:
                return None
            if depth == 1 and text[index + 1 : end] == "id":
                match = _ID_VALUE.match(text, end + 1)
                if match is not None:
                    frame_id = int(match.group(1))
                    return frame_id if frame_id <= MAX_ID else None
            index = end + 1
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        index += 1
    return None


_ID_VALUE = re.compile(r"\s*:\s*(0|[1-9][0-9]{0,15})\s*[,}]")


def _string_end(text: str, start: int) -> int:
    """Index of the quote that closes the string opened at ``start``, or -1."""
    index = start + 1
    while True:
        index = text.find('"', index)
        if index < 0:
            return -1
        backslashes = 0
        while text[index - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return index
        index += 1


def decode_frame(raw: str | bytes) -> Request | FrameError:
    """Decode one client frame; never raises, whatever ``raw`` holds."""
    try:
        obj = loads_strict(raw)
    except (ValueError, RecursionError):
        return FrameError(recover_id(raw), "Frame is not valid JSON")
    if not isinstance(obj, dict):
        return FrameError(None, "Frame must be a JSON object")
    frame_id = obj.get("id")
    if frame_id is not None and not _valid_id(frame_id):
        return FrameError(None, "Frame id must be an integer from 0 to 2**53-1")
    if not _FRAME_KEYS.issuperset(obj):
        return FrameError(frame_id, "Frame has fields other than id, event and data")
    event = obj.get("event")
    if not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_LENGTH:
        return FrameError(frame_id, "Frame event must be a non-empty string")
    return Request(frame_id, event, obj.get("data"))


def auth_payload(raw: str | bytes) -> dict[str, Any] | None:
    """The handshake ``auth`` object carried by a first message ``{"type": "auth", "token": T}``.

    Returns ``{"token": T}`` (T unchecked: the token rules judge it),
    ``{}`` for an auth message without a token, and None for anything that
    is not an auth message at all. Either of the last two ends in a refusal
    by the core, which logs and counts it like any other.
    """
    try:
        obj = loads_strict(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("type") != "auth":
        return None
    return {"token": obj["token"]} if "token" in obj else {}


def encode(frame: dict[str, Any]) -> str:
    """One server frame as JSON text.

    orjson is the fast path. It refuses integers beyond 64 bits and strings
    holding lone surrogates (both reachable from client input echoed back),
    so the standard library, which escapes both, is the fallback. Raises
    :class:`TypeError` or :class:`ValueError` only for data that is not JSON
    at all, which the core's ``to_wire`` conversion rules out.
    """
    try:
        return orjson.dumps(frame, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(frame, ensure_ascii=True, separators=(",", ":"))
