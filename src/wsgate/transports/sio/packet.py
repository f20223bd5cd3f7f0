"""Socket.IO v5 packets: the text encoding and binary attachments.

Written by hand for the same reason as the Engine.IO codec: the format is a
type digit, an optional attachment count (``2-``), an optional namespace
(``/admin,``), an optional ack id and JSON (socket.io-protocol README,
"Packet encoding"). Decoding is strict and bounded: a packet that does not
parse, names more attachments than allowed or has data of the wrong shape
for its type raises :class:`PacketError`, and its session is closed.

Encoding tries orjson on the data as it is: orjson refuses bytes, so a
packet without binary data costs no walk of its structure; only a refusal
leads to extracting attachments (and, for what orjson cannot write such as
integers beyond 64 bits, to the standard library).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Final

import orjson

from wsgate.core.port import loads_strict

__all__ = [
    "Packet",
    "PacketError",
    "PacketType",
    "decode",
    "dumps",
    "encode",
    "reconstruct",
]


class PacketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


class PacketError(ValueError):
    """Not a valid Socket.IO packet."""


MAX_ID_DIGITS: Final = 15
"""Ack ids are JavaScript numbers: longer digit runs are not ids."""

_TYPES: Final = {str(t.value): t for t in PacketType}
_BINARY: Final = (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)


@dataclass(slots=True)
class Packet:
    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None
    attachments: int = 0


@dataclass(frozen=True, slots=True)
class Header:
    """What precedes a packet's JSON: enough to answer an oversize packet without decoding it."""

    type: PacketType
    namespace: str
    id: int | None
    attachments: int
    body_start: int


def decode_header(text: str, max_attachments: int) -> Header:
    """The header of ``text`` (type, attachments, namespace, id); raises :class:`PacketError`."""
    kind = _TYPES.get(text[:1])
    if kind is None:
        raise PacketError("unknown packet type")
    pos = 1
    attachments = 0
    if kind in _BINARY:
        dash = text.find("-", 1, 12)
        digits = text[1:dash] if dash > 0 else ""
        if not digits.isdigit() or not digits.isascii():
            raise PacketError("bad attachment count")
        attachments = int(digits)
        if attachments > max_attachments:
            raise PacketError("too many attachments")
        pos = dash + 1
    namespace = "/"
    if text[pos : pos + 1] == "/":
        comma = text.find(",", pos)
        end = comma if comma >= 0 else len(text)
        namespace = text[pos:end]
        pos = end + 1 if comma >= 0 else end
    start = pos
    while pos < len(text) and pos - start <= MAX_ID_DIGITS and "0" <= text[pos] <= "9":
        pos += 1
    if pos - start > MAX_ID_DIGITS:
        raise PacketError("bad ack id")
    ack_id = int(text[start:pos]) if pos > start else None
    return Header(kind, namespace, ack_id, attachments, pos)


def decode(text: str, max_attachments: int) -> Packet:
    """One packet from an Engine.IO text message; raises :class:`PacketError`."""
    head = decode_header(text, max_attachments)
    body = text[head.body_start :]
    data: Any = None
    if body:
        try:
            data = loads_strict(body)
        except (ValueError, RecursionError):
            raise PacketError("bad JSON") from None
    kind = head.type
    if kind is PacketType.CONNECT:
        if data is not None and not isinstance(data, dict):
            raise PacketError("CONNECT data must be an object")
    elif kind is PacketType.DISCONNECT:
        if body:
            raise PacketError("DISCONNECT carries no data")
    elif kind is PacketType.EVENT or kind is PacketType.BINARY_EVENT:
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise PacketError("EVENT data must be an array starting with the event name")
    elif kind is PacketType.ACK or kind is PacketType.BINARY_ACK:
        if not isinstance(data, list) or head.id is None:
            raise PacketError("ACK needs an id and an array")
    else:
        raise PacketError("a client does not send CONNECT_ERROR")
    return Packet(kind, head.namespace, data, head.id, head.attachments)


def dumps(data: Any) -> str:
    """JSON text of ``data``; raises TypeError for what JSON cannot hold (bytes included)."""
    try:
        return orjson.dumps(data).decode()
    except TypeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def encode(kind: PacketType, namespace: str, data: Any, ack_id: int | None = None) -> list[Any]:
    """The Engine.IO frames of one packet: ``"4" + text``, then its binary attachments.

    ``kind`` is EVENT or ACK; it becomes BINARY_* when ``data`` holds bytes.
    Raises TypeError when ``data`` is not JSON (bytes aside).
    """
    prefix = "" if namespace == "/" else namespace + ","
    ident = "" if ack_id is None else str(ack_id)
    try:
        return ["4" + str(kind.value) + prefix + ident + orjson.dumps(data).decode()]
    except TypeError:
        pass
    buffers: list[bytes] = []
    stripped = _deconstruct(data, buffers)
    if not buffers:
        return ["4" + str(kind.value) + prefix + ident + dumps(data)]
    binary = PacketType.BINARY_EVENT if kind is PacketType.EVENT else PacketType.BINARY_ACK
    text = f"4{binary.value}{len(buffers)}-{prefix}{ident}{dumps(stripped)}"
    return [text, *buffers]


def _deconstruct(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        buffers.append(bytes(data))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(data, list | tuple):
        return [_deconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, buffers) for key, value in data.items()}
    return data


def reconstruct(data: Any, buffers: list[bytes]) -> Any:
    """``data`` with each ``{"_placeholder": true, "num": n}`` replaced by attachment ``n``."""
    if isinstance(data, list):
        return [reconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True and len(data) == 2:
            num = data.get("num")
            if type(num) is not int or not 0 <= num < len(buffers):
                raise PacketError("bad attachment placeholder")
            return buffers[num]
        return {key: reconstruct(value, buffers) for key, value in data.items()}
    return data
