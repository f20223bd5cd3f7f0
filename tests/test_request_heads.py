"""Oversized request heads get 431 and a closed socket at once, from every server wsgate starts.

The attacks of issue 11, against real servers on 127.0.0.1 with raw sockets:
a 10 MB header (which got 200 and held its memory), 1,000 headers, and a
header line over 8 KB on a WebSocket upgrade (which got no answer and stayed
open), each on a plain GET and on an upgrade. ``wsgate demo`` runs uvicorn
with httptools; the h11 server is the same App under ``uvicorn_http_protocol
(http="h11")``, what a machine without httptools gets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from support import SECRET, demo_settings_for, free_port, wsgate_process
from wsgate.demo.app import create_app
from wsgate.transports.deadline import uvicorn_http_protocol
from wsgate.transports.request_head import MAX_LINE_BYTES

pytestmark = pytest.mark.timeout(120)

UPGRADE = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)
TEN_MB = 10 * 1024 * 1024


@dataclass
class Answer:
    head: bytes
    closed: bool
    sent: int
    """Bytes of the request sent when the first byte of the answer arrived."""

    @property
    def status(self) -> int:
        line = self.head.split(b"\r\n", 1)[0]
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else 0


async def send_head(port: int, head: bytes, *, chunk: int = 64 * 1024) -> Answer:
    """Send ``head`` while reading: stop sending once the server answered and closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()
    sent = 0
    answered_at = -1

    async def read() -> bool:
        nonlocal answered_at
        while data := await reader.read(65536):
            if answered_at < 0:
                answered_at = sent
            received.extend(data)
            if b"\r\n\r\n" in received and b"101 Switching" in received:
                return False  # an upgrade that went through stays open
        return True

    reading = asyncio.create_task(read())
    try:
        for start in range(0, len(head), chunk):
            if reading.done():
                break
            writer.write(head[start : start + chunk])
            await writer.drain()
            sent += len(head[start : start + chunk])
            await asyncio.sleep(0)  # let the reader see an answer as soon as it comes
    except ConnectionError:
        pass
    try:
        closed = await asyncio.wait_for(reading, 10)
    except TimeoutError:
        closed = False
    finally:
        reading.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return Answer(bytes(received), closed, answered_at)


def get(path: str, extra: bytes = b"", *, upgrade: bool = False) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + (UPGRADE if upgrade else b"")
        + extra
        + b"\r\n"
    )


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    import socket
    import time

    deadline = time.monotonic() + 60  # generous: a loaded CI machine starts Python slowly
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited")
        time.sleep(0.05)
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def demo_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``wsgate demo`` in a subprocess (httptools, as installed by uvicorn[standard])."""
    folder = tmp_path_factory.mktemp("heads")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    env["WSGATE_JWT_SECRET"] = SECRET
    with (folder / "demo.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wsgate", "demo", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_port(port, proc)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # Nothing about refused heads in the log: a flood of them is not a flood of lines.
    assert "431" not in (folder / "demo.log").read_text()


@pytest.fixture(scope="module")
def h11_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The demo App under uvicorn's h11 protocol with wsgate's limits, in a thread of its own."""
    port = free_port()
    database = tmp_path_factory.mktemp("h11") / "demo.db"
    config = uvicorn.Config(
        create_app(demo_settings_for(port, database=database)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http=uvicorn_http_protocol(10.0, "h11"),
    )
    server = uvicorn.Server(config)
    warnings: list[logging.LogRecord] = []
    collector = logging.Handler(logging.WARNING)
    collector.emit = warnings.append  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(collector)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_port(port)
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
        logging.getLogger("uvicorn.error").removeHandler(collector)
    # uvicorn logs a warning per h11 protocol error; a refused head is not one.
    assert not [r for r in warnings if "Invalid HTTP request" in r.getMessage()]


@pytest.fixture(params=["httptools", "h11"])
def port(request: pytest.FixtureRequest) -> int:
    name = "demo_port" if request.param == "httptools" else "h11_port"
    return int(request.getfixturevalue(name))


ATTACKS = {
    "10MB header": lambda path, up: get(path, b"X-Big: " + b"a" * TEN_MB + b"\r\n", upgrade=up),
    "1000 headers": lambda path, up: get(
        path, b"".join(b"X-H%d: v\r\n" % i for i in range(1000)), upgrade=up
    ),
    "9KB header line": lambda path, up: get(path, b"X-Line: " + b"a" * 9000 + b"\r\n", upgrade=up),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("kind", ["get", "upgrade"])
async def test_an_oversized_head_gets_431_and_a_closed_socket(
    port: int, attack: str, kind: str
) -> None:
    path = "/healthz" if kind == "get" else "/ws"
    head = ATTACKS[attack](path, kind == "upgrade")
    answer = await send_head(port, head)
    assert answer.status == 431, answer.head[:200]
    assert b"connection: close" in answer.head.lower()
    assert answer.closed, "the socket must be closed after the 431"
    if len(head) > TEN_MB:
        # At once: answered while the header is still coming, not after its 10 MB
        # (socket buffers make the bytes sent before the answer arrives a poor
        # measure, so the client stops after 1 MB and waits).
        partial = await send_head(port, head[: 1024 * 1024])
        assert (partial.status, partial.closed) == (431, True)


async def test_a_request_line_over_8_kb_gets_414(port: int) -> None:
    answer = await send_head(port, get("/healthz?" + "q" * 9000))
    assert (answer.status, answer.closed) == (414, True)


async def test_heads_just_inside_the_limits_are_served(port: int) -> None:
    """The limits refuse attacks, not big cookies: 90 headers and an 8 KB line go through."""
    line = b"Cookie: c=" + b"a" * (MAX_LINE_BYTES - len(b"Cookie: c=")) + b"\r\n"
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(85))
    answer = await send_head(port, get("/healthz", line + many + b"Connection: close\r\n"))
    assert answer.status == 200, answer.head[:200]
    # And an upgrade with the same head is handed to the WebSocket layer, which answers it.
    upgrade = await send_head(port, get("/ws", line + many, upgrade=True))
    assert upgrade.status == 101, upgrade.head[:200]


async def test_a_keep_alive_connection_is_limited_on_every_request(port: int) -> None:
    """The budget starts again for each request: a small first request opens no door."""
    first = get("/healthz")
    second = get("/healthz", b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n")
    answer = await send_head(port, first + second)
    assert answer.head.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 431" in answer.head
    assert answer.closed


async def test_the_server_serves_after_the_attacks(port: int) -> None:
    answers = await asyncio.gather(
        *(send_head(port, ATTACKS["10MB header"]("/healthz", False)) for _ in range(5))
    )
    assert {a.status for a in answers} == {431}
    answer = await send_head(port, get("/healthz", b"Connection: close\r\n"))
    assert answer.status == 200


def test_settings_bound_the_head() -> None:
    """``max_header_bytes`` and ``max_headers`` reach the protocol class wsgate serves with."""
    from wsgate.transports.request_head import HeadLimits

    protocol = uvicorn_http_protocol(5.0, limits=HeadLimits(16384, 50))
    assert protocol.head_limits == HeadLimits(16384, 50)  # type: ignore[attr-defined]


def test_uvicorn_can_name_the_protocol_on_its_command_line() -> None:
    """``uvicorn app --http wsgate.serving:HttpProtocol`` gets the limits (docs/deployment.md)."""
    from wsgate.transports.request_head import DEFAULT_HEAD_LIMITS

    config = uvicorn.Config("wsgate.demo.app:create_app", http="wsgate.serving:HttpProtocol")
    protocol = uvicorn.importer.import_from_string(config.http)  # as Config.load() does
    assert protocol.head_limits == DEFAULT_HEAD_LIMITS
    assert protocol.connect_timeout == 10.0


async def test_wsgate_serve_takes_the_limits_from_the_settings(tmp_path: Path) -> None:
    """``wsgate serve`` with ``WSGATE_MAX_HEADER_BYTES``/``WSGATE_MAX_HEADERS`` set lower."""
    (tmp_path / "headsapp.py").write_text(
        "from wsgate import App, Context, Gateway, Settings, subscribe\n"
        "class Hello(Gateway):\n"
        "    @subscribe('hello')\n"
        "    async def hello(self, ctx: Context) -> str:\n"
        "        return 'hello'\n"
        "app = App([Hello()], Settings())\n"
    )
    env = {
        "WSGATE_JWT_SECRET": SECRET,
        "WSGATE_MAX_HEADER_BYTES": "12000",
        "WSGATE_MAX_HEADERS": "20",
    }
    async with wsgate_process("serve", "headsapp:app", env=env, cwd=str(tmp_path)) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        # Inside the defaults, over these settings.
        big = await send_head(
            port, get("/healthz", b"X-Big: " + b"a" * 7000 + b"\r\nX-B: " + b"b" * 7000 + b"\r\n")
        )
        assert (big.status, big.closed) == (431, True)
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(25))
        assert (await send_head(port, get("/ws", many, upgrade=True))).status == 431
        fine = await send_head(port, get("/healthz", b"Connection: close\r\n"))
        assert fine.status == 200
