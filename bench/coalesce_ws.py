"""Experiment, not used by wsgate: uvicorn's websocket protocol, writes coalesced per loop turn.

Why it exists: profiled under ``wsgate demo``, 55% of a room fan-out's CPU is
one ``write()`` system call per recipient per message (bench/README.md). When
several broadcasts run in the same event-loop iteration (a burst of ``say``),
each recipient could get one ``write()`` for all of its frames instead of one
per frame. This subclass of uvicorn's websockets-sansio protocol buffers the
bytes of ``websocket.send`` and writes them once, from a ``call_soon`` at the
end of the loop turn. It measures how much that one change would give
(issue 9: "what would reach" the fan-out target); it is not hardened, and
wsgate does not ship it.

    cd bench && ../.venv/bin/uvicorn --factory demo_asgi:app \\
        --ws coalesce_ws:CoalescingWebSockets ...

Flow control is unchanged: when the transport asks to pause, ``send`` waits as
uvicorn's does (``writable``), after the pending bytes were written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class CoalescingWebSockets(WebSocketsSansIOProtocol):
    """``websocket.send`` appends to a per-connection buffer flushed once per loop turn."""

    _pending: list[bytes] | None = None

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "websocket.send"
            and self.handshake_complete
            and not self.close_sent
            and self.initial_response is None
            and not self.disconnected
            and self.writable.is_set()
        ):
            data = message.get("bytes")
            if data is not None:
                self.conn.send_binary(data)
            else:
                self.conn.send_text(message["text"].encode())
            out = self.conn.data_to_send()
            if self._pending is None:
                self._pending = out
                asyncio.get_running_loop().call_soon(self._flush)
            else:
                self._pending.extend(out)
            return
        self._flush()
        await super().send(message)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self.transport.is_closing():
            self.transport.write(b"".join(pending))
