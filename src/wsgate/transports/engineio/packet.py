"""Engine.IO v4 packets and HTTP long-polling payloads.

Written by hand: the whole format is a type digit in front of the data
(``4hello``), binary messages as their raw bytes on a websocket and as
``b`` + base64 in a polling payload, and payloads joined by the record
separator ``\\x1e`` (engine.io-protocol README, "Packet encoding"). A
library would bring a server along with the codec, which is what this
package replaces.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Final

__all__ = [
    "CLOSE",
    "NOOP",
    "PING",
    "SEPARATOR",
    "Packet",
    "PacketError",
    "PacketType",
    "decode",
    "decode_payload",
    "encode_payload",
]

SEPARATOR: Final = "\x1e"


class PacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class PacketError(ValueError):
    """Not an Engine.IO packet; the session that sent it is closed."""


CLOSE: Final = "1"
PING: Final = "2"
NOOP: Final = "6"

Packet = tuple[PacketType, str | bytes]
"""A decoded packet: its type and its data (bytes only for a binary MESSAGE)."""

_TYPES: Final = {str(t.value): t for t in PacketType}


def decode(frame: str | bytes) -> Packet:
    """One packet from a websocket frame (a binary frame is a binary MESSAGE)."""
    if isinstance(frame, bytes):
        return PacketType.MESSAGE, frame
    kind = _TYPES.get(frame[:1])
    if kind is None or kind is PacketType.OPEN:
        raise PacketError("unknown packet type")
    return kind, frame[1:]


def decode_payload(body: str) -> list[Packet]:
    """The packets of a polling POST body."""
    packets: list[Packet] = []
    for record in body.split(SEPARATOR):
        if record[:1] == "b":
            try:
                packets.append((PacketType.MESSAGE, base64.b64decode(record[1:], validate=True)))
            except (binascii.Error, ValueError):
                raise PacketError("bad base64 in a binary packet") from None
        else:
            packets.append(decode(record))
    return packets


def encode_payload(frames: list[str | bytes]) -> str:
    """A polling GET body from already encoded frames (text packets, or raw binary messages)."""
    if len(frames) == 1 and isinstance(frames[0], str):
        return frames[0]
    return SEPARATOR.join(
        frame if isinstance(frame, str) else "b" + base64.b64encode(frame).decode("ascii")
        for frame in frames
    )
