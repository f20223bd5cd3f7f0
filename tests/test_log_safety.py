"""Client text cannot forge a log line or hide one: attacks on ``wsgate demo``, read in its log.

Issue 11 found that a Socket.IO namespace, or ``/ws?namespace=`` with
``%0A``, was written raw into the text audit line (a complete fake
``connected ... sub=root namespace=/admin`` line came out, without a token),
and that an ANSI escape hid the real fields. Each test here sends one such
value through a real client path and then reads the server's own stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

from support import SECRET, free_port, make_token
from wsgate.security.logsafe import escape, field

pytestmark = pytest.mark.timeout(60)

FORGED = "2099-01-01 00:00:00 INFO wsgate.audit: connected sub=root namespace=/admin FORGED"
"""A whole fake audit line (no comma: a Socket.IO namespace ends at one)."""
ANSI = "\x1b[2K\r\x1b[1A"
"""Erase the line, return, go up: what a terminal would do to the real fields before it."""


@dataclass
class Demo:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_bytes().decode("utf-8", "replace")

    def wait_for(self, needle: str, timeout: float = 10.0) -> str:
        """The log once it holds ``needle`` (polled, bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never logged:\n{self.text()[-3000:]}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("logsafe")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    env["WSGATE_JWT_SECRET"] = SECRET
    log = folder / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wsgate", "demo", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            served = Demo(port, log)
            served.wait_for("serving http://", 60)
            served.wait_for("Uvicorn running", 60)
            yield served
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert_log_is_safe(log.read_bytes().decode("utf-8", "replace"))


def assert_log_is_safe(text: str) -> None:
    """Every line is a real record; no terminal control reached the log."""
    for line in text.splitlines():
        assert not line.startswith("2099-"), f"forged line: {line!r}"
    for char in ("\x1b", "\x9b", "\r", "\u009b"):
        assert char not in text, f"raw {char!r} in the log"


async def socketio_connect(demo: Demo, namespace: str, *, origin: str | None = None) -> str:
    """A raw Engine.IO websocket sending CONNECT to ``namespace``; the server's first answer."""
    url = f"ws://127.0.0.1:{demo.port}/socket.io/?EIO=4&transport=websocket"
    headers = {"Origin": origin} if origin else None
    async with websockets.connect(url, additional_headers=headers, open_timeout=5) as ws:
        opened = await asyncio.wait_for(ws.recv(), 5)
        assert str(opened).startswith("0")
        auth = json.dumps({"token": make_token("mallory")})
        await ws.send(f"40{namespace},{auth}")
        return str(await asyncio.wait_for(ws.recv(), 5))


async def test_a_socketio_namespace_cannot_forge_an_audit_line(demo: Demo) -> None:
    namespace = "/x\n" + FORGED
    answer = await socketio_connect(demo, namespace)
    assert answer.startswith("44")  # CONNECT_ERROR: no such namespace
    text = demo.wait_for(field(namespace))
    assert_log_is_safe(text)


async def test_an_ansi_escape_in_a_namespace_is_shown_not_run(demo: Demo) -> None:
    namespace = "/" + ANSI + "admin"
    await socketio_connect(demo, namespace)
    text = demo.wait_for(field(namespace))
    assert "\\u001b[2K" in text
    assert_log_is_safe(text)


async def test_a_ws_namespace_with_encoded_newlines_cannot_forge_a_line(demo: Demo) -> None:
    namespace = "/y\n" + FORGED + ANSI
    query = urllib.parse.urlencode({"namespace": namespace})
    headers = {"Authorization": f"Bearer {make_token('mallory')}"}
    url = f"ws://127.0.0.1:{demo.port}/ws?{query}"
    async with websockets.connect(url, additional_headers=headers, open_timeout=5) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4403
    text = demo.wait_for(field(namespace))
    assert_log_is_safe(text)


async def test_an_origin_with_control_bytes_is_escaped(demo: Demo) -> None:
    """HTTP allows bytes 0x80-0xFF in a header; 0x9B is the 8-bit form of the ANSI escape."""
    reader, writer = await asyncio.open_connection("127.0.0.1", demo.port)
    writer.write(
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Origin: http://evil.example\x9b2J\x9b1A\r\nConnection: close\r\n\r\n"
    )
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 403")
    text = demo.wait_for(field("http://evil.example\x9b2J\x9b1A"))
    assert_log_is_safe(text)


async def test_a_request_path_cannot_forge_an_access_log_line(demo: Demo) -> None:
    """The path as uvicorn's access log writes it (percent-encoded since uvicorn 0.3x), safe."""
    path = "/nothing%0A" + urllib.parse.quote(FORGED) + "%1B%5B2J"
    reader, writer = await asyncio.open_connection("127.0.0.1", demo.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 404")
    text = demo.wait_for("/nothing%0A2099-01-01")
    assert_log_is_safe(text)


def test_field_quotes_what_could_end_a_field_or_a_line() -> None:
    assert field("/chat") == "/chat"
    assert field("a b") == '"a b"'
    assert field("x=y") == '"x=y"'
    assert field('say "hi"') == '"say \\"hi\\""'
    assert field("") == '""'
    for bad in ("\n", "\r", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u202e"):
        rendered = field("a" + bad + "b")
        assert bad not in rendered and rendered.startswith('"'), rendered
    assert escape("a\nb\x1b[0m\u202e") == "a\\x0ab\\x1b[0m\\u202e"
