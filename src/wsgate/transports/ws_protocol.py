"""The websocket protocol ``wsgate serve``/``demo`` give uvicorn: its own, writes coalesced.

Why: profiled under load, half of a room fan-out's CPU was one ``write()``
system call per recipient per message (bench/README.md, issue 9). When
several broadcasts run in the same event-loop turn (a burst of messages to a
room), every recipient can get all of its frames in one ``write()``. This
subclass of uvicorn's websockets-sansio protocol (uvicorn's own choice when
``websockets`` is installed) frames each ``websocket.send`` at once but keeps
the bytes in a per-connection list, written with one ``transport.write``
from a ``call_soon`` at the end of the turn. A broadcast hands every
recipient the same ``str``, so its frame is built once (:func:`_text_frame`)
instead of websockets encoding and framing it per recipient. Measured
(bench/README.md, runs 3-6): room fan-out from 0.4x to 1.7x NestJS's.

What does not change: frames go out in the order they were sent (any other
ASGI message writes what is pending first); flow control is uvicorn's (once
the transport asks to pause, ``send`` takes uvicorn's path and waits, and
the engine's bounded outbox takes over); bytes held between two flushes
are what one loop turn produced, which the transport would otherwise have
buffered itself. Mounted in someone else's ASGI server, nothing of this is
used: the App works through plain ASGI.

It relies on attributes of uvicorn's class that are not public API, so it
is used only where they are present (:func:`websocket_protocol`); otherwise
uvicorn picks its own protocol as before.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from typing import Any

__all__ = ["websocket_protocol"]

_NEEDED = (
    "handshake_complete",
    "close_sent",
    "initial_response",
    "writable",
    "conn",
    "disconnected",
    "loop",
    "transport",
)
"""Attributes of uvicorn's protocol that the subclass reads (set in its ``__init__``)."""


_last: tuple[str, bytes] = ("", b"\x81\x00")
"""The last text framed and its frame: a broadcast sends the same ``str`` object to every
recipient, so it is encoded and framed once, not once per recipient."""


def _text_frame(text: str) -> bytes:
    """An unmasked, unfragmented, uncompressed server text frame (RFC 6455 section 5.2)."""
    global _last
    last_text, last_frame = _last
    if text is last_text:
        return last_frame
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    frame = header + payload
    _last = (text, frame)
    return frame


class _Holding:
    """Stands in for the transport while uvicorn accepts: keeps what it writes."""

    __slots__ = ("data", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()


@functools.cache
def websocket_protocol() -> type[asyncio.Protocol] | str:
    """The coalescing protocol class, or ``"auto"`` where this uvicorn lacks what it needs."""
    try:
        from uvicorn.protocols.utils import ClientDisconnected
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
        from websockets.exceptions import InvalidState
        from websockets.protocol import State
    except ImportError:  # uvicorn before websockets-sansio (0.35)
        return "auto"
    probe = WebSocketsSansIOProtocol.__init__.__code__.co_names
    if not all(name in probe for name in _NEEDED):
        return "auto"

    class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
        """``websocket.send`` frames now and joins one ``write()`` per connection per turn."""

        _pending: list[bytes] | None = None

        async def send(self, message: Any) -> None:
            if (
                message["type"] == "websocket.send"
                and self.handshake_complete
                and not self.close_sent
                and self.initial_response is None
                and self.writable.is_set()
            ):
                if self.disconnected:
                    raise ClientDisconnected()
                conn = self.conn
                data = message.get("bytes")
                if (
                    data is None
                    and conn.state is State.OPEN
                    and not conn.extensions
                    and not conn.expect_continuation_frame
                ):
                    output = [_text_frame(message["text"])]
                else:
                    try:
                        if data is not None:
                            conn.send_binary(data)
                        else:
                            conn.send_text(message["text"].encode())
                    except InvalidState:
                        raise ClientDisconnected() from None
                    output = conn.data_to_send()
                if self._pending is None:
                    self._pending = output
                    self.loop.call_soon(self._flush)
                else:
                    self._pending.extend(output)
                return
            self._flush()
            if (
                message["type"] == "websocket.accept"
                and not self.handshake_complete
                and self.initial_response is None
                and self.writable.is_set()
            ):
                await self._accept(message)
                return
            await super().send(message)

        async def _accept(self, message: Any) -> None:
            """uvicorn's accept, with the 101 response held until the end of the turn.

            An Engine.IO server sends its open packet right after accepting,
            so the response and that first frame go out in one ``write()``
            instead of two (one system call less per connection, ~2% of a
            Socket.IO connect). uvicorn builds and sends the response as
            before; only its ``transport.write`` is taken into ``_pending``.
            Called only while the transport is writable, so uvicorn's ``send``
            does not wait and nothing else runs while the transport is held.
            """
            transport = self.transport
            self.transport = _Holding(transport)  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                held = self.transport
                self.transport = transport
            if isinstance(held, _Holding) and held.data:
                if self._pending is None:
                    self._pending = held.data
                    self.loop.call_soon(self._flush)
                else:  # not expected: _flush() ran just before
                    self._pending[:0] = held.data

        def _flush(self) -> None:
            pending, self._pending = self._pending, None
            if pending and not self.transport.is_closing():
                self.transport.write(b"".join(pending))

    return CoalescingWebSocketProtocol
