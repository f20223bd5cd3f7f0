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

import asyncio
import logging
import types
from typing import Any

from engineio.exceptions import QueueEmpty

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


async def _poll(self: Any) -> list[Any]:
    """``engineio.AsyncSocket.poll`` without a timer per call.

    The writer of every websocket calls ``poll`` once per packet it sends;
    engineio wraps each wait in ``asyncio.wait_for`` (a new task on Python
    3.11, and a timer either way), so a room broadcast cost one task and one
    timer per recipient (a tenth to a fifth of the fan-out benchmark's server
    time). The timeout only ever served to end the writer of a dead client,
    and that is already done: the Engine.IO service task closes clients that
    stop answering pings, and every close wakes this wait through
    :func:`release_pending_poll` (and Engine.IO's own end marker). Same
    packets, same order; cancellation still ends the writer as QueueEmpty.
    """
    queue = self.queue
    try:
        first = queue.get_nowait() if not queue.empty() else await queue.get()
    except asyncio.CancelledError:
        raise QueueEmpty() from None
    queue.task_done()
    if first is None:
        return []
    packets = [first]
    while not queue.empty():
        pkt = queue.get_nowait()
        queue.task_done()
        if pkt is None:
            queue.put_nowait(None)
            break
        packets.append(pkt)
    return packets


def install_fast_poll(socket: Any) -> None:
    """Give one Engine.IO socket the timer-free :func:`_poll`; other servers keep theirs."""
    socket.poll = types.MethodType(_poll, socket)
