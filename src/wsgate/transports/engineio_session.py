"""Closing an Engine.IO session for real, whatever the client does.

``engineio.AsyncServer.disconnect`` queues a CLOSE packet and waits for the
client to collect it: a long-polling client that never polls again blocks that
wait forever, and a websocket stays open until the client answers (Engine.IO
closes the socket only once its writer runs out of packets). A client that
ignores the CLOSE packet would keep its connection. For the connect deadline
and for sessions the server ends (expired, revoked), wsgate needs the
connection gone, so it closes the session without waiting and wakes the
websocket writer so that it closes the socket.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("wsgate.socketio")


async def drop_session(eio: Any, eio_sid: str, reason: str) -> None:
    """Close Engine.IO session ``eio_sid`` now; its disconnect handlers run once."""
    socket = eio.sockets.get(eio_sid)
    if socket is None:
        return
    try:
        # Runs the disconnect handlers and queues CLOSE, without waiting for the client.
        await socket.close(wait=False, reason=reason)
    finally:
        eio.sockets.pop(eio_sid, None)
        # A None in the queue ends the websocket writer, which then closes the socket.
        socket.queue.put_nowait(None)


def release_pending_poll(eio: Any, eio_sid: str) -> None:
    """Answer a long-poll still waiting on a session that just closed.

    When a polling client closes its session, Engine.IO aborts it without
    queueing anything, so the client's outstanding GET hangs until the next
    ping interval (25 s) and keeps the HTTP connection busy. An end marker in
    the queue answers it at once (the websocket writer treats it the same way).
    """
    socket = eio.sockets.get(eio_sid)
    if socket is not None:
        socket.queue.put_nowait(None)
