"""A client that sends faster than it reads its replies is slowed down, never cut off.

CI saw it: 2,000 malformed frames sent in a burst on ``/ws`` got 957
replies, then the server closed the connection as a slow consumer although
the client was reading. The server had fallen behind, so its reader found
the frames already buffered and answered them faster than the writer could
send. Each test here is such a client: a bare socket with a small receive
buffer that sends its whole burst in one write and reads nothing for a
while, against a real server. Every reply must arrive, on a connection that
still works, on ``/ws`` and on Socket.IO. A client that reads nothing at all
is still closed (bounded memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

import pytest

from rawws import masked_text_frame, open_raw_websocket, read_frame
from support import free_port, make_token, serve, settings_for
from wsgate import App
from wsgate.demo.gateways import Chat
from wsgate.transports import backpressure

pytestmark = pytest.mark.timeout(120)

TEXT = "x" * 1000
PAUSE = 1.0
"""Seconds the client reads nothing once its burst is out."""


async def _burst_then_read(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frames: list[str], answer: str
) -> list[str]:
    """Send ``frames`` in one write, read nothing for ``PAUSE`` s, then read every answer.

    Answers are the text frames starting with ``answer``; a close frame ends
    the reading early (the test then sees fewer answers than frames).
    """
    writer.write(b"".join(masked_text_frame(frame) for frame in frames))
    sending = asyncio.create_task(writer.drain())
    await asyncio.sleep(PAUSE)
    answers: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(answers) < len(frames):
                opcode, payload = await read_frame(reader)
                if opcode == 0x8:
                    break
                if payload.startswith(answer.encode()):
                    answers.append(payload.decode())
        await asyncio.wait_for(sending, 10)
    finally:
        sending.cancel()
    return answers


async def _open_ws(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await open_raw_websocket(
        port, "/ws", {"Authorization": f"Bearer {make_token('burst')}"}
    )
    _, ready = await asyncio.wait_for(read_frame(reader), 10)
    assert json.loads(ready)["event"] == "ready"
    return reader, writer


async def _ws_ping_works(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(masked_text_frame('{"id": 999999, "event": "ping"}'))
    _, pong = await asyncio.wait_for(read_frame(reader), 10)
    assert json.loads(pong) == {"id": 999999, "data": "pong"}


async def test_ws_garbage_burst_is_answered_in_full() -> None:
    """The CI failure: answers made by the reader itself (no handler in between)."""
    port = free_port()
    app = App([Chat()], settings_for(port, rate_limit=1_000_000))
    async with serve(app, port):
        reader, writer = await _open_ws(port)
        try:
            frames = [f'{{"id": {i}, "event": "ping", "data": ' for i in range(5000)]
            answers = await _burst_then_read(reader, writer, frames, '{"id"')
            assert len(answers) == len(frames)
            decoded = [json.loads(answer) for answer in answers]
            assert [answer["id"] for answer in decoded] == list(range(len(frames)))
            assert all(answer["error"]["code"] == "bad_request" for answer in decoded)
            await _ws_ping_works(reader, writer)
        finally:
            writer.transport.abort()


async def test_ws_echo_burst_past_the_socket_buffers_is_answered_in_full() -> None:
    """Answers from handlers, 6 MB of them: more than the kernel buffers take unread."""
    port = free_port()
    app = App([Chat()], settings_for(port, rate_limit=1_000_000))
    async with serve(app, port):
        reader, writer = await _open_ws(port)
        try:
            body = json.dumps({"text": TEXT})
            frames = [f'{{"id": {i}, "event": "echo", "data": {body}}}' for i in range(6000)]
            answers = await _burst_then_read(reader, writer, frames, '{"id"')
            assert len(answers) == len(frames)
            decoded = [json.loads(answer) for answer in answers]
            assert sorted(answer["id"] for answer in decoded) == list(range(len(frames)))
            assert all(answer["data"] == {"text": TEXT} for answer in decoded)
            await _ws_ping_works(reader, writer)
        finally:
            writer.transport.abort()


@pytest.mark.parametrize(
    ("event", "answers"),
    [
        (json.dumps(["echo", {"text": TEXT}]), "from handlers, 6 MB"),
        ('["no_such_event"]', "refused before any handler"),
    ],
)
async def test_socketio_burst_is_answered_in_full(event: str, answers: str) -> None:
    port = free_port()
    app = App([Chat()], settings_for(port, rate_limit=1_000_000))
    async with serve(app, port):
        reader, writer = await open_raw_websocket(port, "/socket.io/?EIO=4&transport=websocket")
        try:
            _, opened = await asyncio.wait_for(read_frame(reader), 10)
            assert opened.startswith(b"0")
            writer.write(masked_text_frame("40" + json.dumps({"token": make_token("burst")})))
            _, connected = await asyncio.wait_for(read_frame(reader), 10)
            assert connected.startswith(b"40")
            frames = [f"42{i}{event}" for i in range(6000)]
            acks = await _burst_then_read(reader, writer, frames, "43")
            assert len(acks) == len(frames), answers
            ids = sorted(int(re.match(r"43(\d+)", ack)[1]) for ack in acks)  # type: ignore[index]
            assert ids == list(range(len(frames)))
            writer.write(masked_text_frame('42999999["ping"]'))
            async with asyncio.timeout(10):
                while not (await read_frame(reader))[1].startswith(b"43999999"):
                    pass
        finally:
            writer.transport.abort()


async def test_ws_client_that_reads_nothing_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader's pause is bounded: after ``MAX_READ_PAUSE`` the server lets the client go."""
    monkeypatch.setattr(backpressure, "MAX_READ_PAUSE", 1.0)
    port = free_port()
    app = App([Chat()], settings_for(port, rate_limit=1_000_000))
    async with serve(app, port):
        _, writer = await open_raw_websocket(
            port, "/ws", {"Authorization": f"Bearer {make_token('mute')}"}
        )
        body = json.dumps({"text": TEXT})
        try:
            with contextlib.suppress(ConnectionError, TimeoutError):
                for i in range(20_000):  # ~20 MB of replies asked for, never read
                    frame = f'{{"id": {i}, "event": "echo", "data": {body}}}'
                    writer.write(masked_text_frame(frame))
                    await asyncio.wait_for(writer.drain(), 30)
                    if i % 100 == 0 and not app.runtime.fanout.connections:
                        break
            for _ in range(600):
                if not app.runtime.fanout.connections:
                    break
                await asyncio.sleep(0.05)
            assert not app.runtime.fanout.connections
        finally:
            writer.transport.abort()
