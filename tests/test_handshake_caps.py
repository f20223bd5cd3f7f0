"""One address cannot hold every pending handshake: 1,000 idle ``/ws`` sockets on ``wsgate demo``.

Issue 11 found one pool of pending handshakes for everyone: 1,000 idle
``/ws`` sockets that never sent their auth message made every valid connect
fail (``too_many_connections`` / 4429), for as long as the attacker re-opened
them. The demo runs with its defaults (1,000 pending handshakes in total, 100
per address) and a long connect timeout, so that the idle sockets stay for
the whole test; the valid users come from other loopback addresses
(127.0.0.2, ...), which Linux routes to the same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from clients import ws_url
from support import SECRET, make_token, wsgate_process

pytestmark = pytest.mark.timeout(180)

ENV = {"WSGATE_JWT_SECRET": SECRET}
PER_ADDRESS = 100  # the default max_pending_handshakes_per_address


@contextlib.asynccontextmanager
async def idle_sockets(
    url: str, count: int, *, local: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> AsyncIterator[list[ClientConnection]]:
    """``count`` /ws sockets from ``local`` that never authenticate (50 opened at a time)."""
    sockets: list[ClientConnection] = []

    async def one() -> None:
        with contextlib.suppress(OSError, websockets.InvalidStatus, TimeoutError):
            sockets.append(
                await websockets.connect(
                    ws_url(url),
                    local_addr=(local, 0),
                    additional_headers=headers,
                    open_timeout=20,
                    close_timeout=1,
                )
            )

    try:
        for start in range(0, count, 50):
            await asyncio.gather(*(one() for _ in range(min(50, count - start))))
        await settle(sockets)
        yield sockets
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def settle(sockets: list[ClientConnection], timeout: float = 20.0) -> None:
    """Wait (bounded) until the refusals (accept, then close 4429) have reached the clients."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = -1
    while loop.time() < deadline:
        await asyncio.sleep(0.5)
        now = held(sockets)
        if now == last and now <= PER_ADDRESS:
            return
        last = now


def held(sockets: list[ClientConnection]) -> int:
    return sum(ws.state is State.OPEN for ws in sockets)


def refused_4429(sockets: list[ClientConnection]) -> int:
    return sum(ws.close_code == 4429 for ws in sockets)


async def valid_connect(url: str, transport: str, local: str, **kwargs: object) -> None:
    """A real user connects and is answered, from ``local``."""
    if transport == "websocket":
        async with websockets.connect(
            ws_url(url),
            local_addr=(local, 0),
            additional_headers={"Authorization": f"Bearer {make_token('real')}", **kwargs},
            open_timeout=10,
        ) as ws:
            assert '"ready"' in str(await asyncio.wait_for(ws.recv(), 10))
        return
    # Socket.IO spoken raw (python-socketio cannot choose its source address).
    url_eio = ws_url(url, "/socket.io/") + "?EIO=4&transport=websocket"
    async with websockets.connect(url_eio, local_addr=(local, 0), open_timeout=10) as ws:
        opened = str(await asyncio.wait_for(ws.recv(), 10))
        assert opened.startswith("0{")
        await ws.send("40" + json.dumps({"token": make_token("real")}))
        answer = str(await asyncio.wait_for(ws.recv(), 10))
        assert answer.startswith("40{"), answer


async def test_a_thousand_idle_sockets_from_one_address_lock_nobody_out(tmp_path: Path) -> None:
    args = ("demo", "--database", str(tmp_path / "d.db"), "--connect-timeout", "90")
    async with (
        wsgate_process(*args, env=ENV) as (url, _),
        idle_sockets(url, 1000) as attackers,
    ):
        # The address holds its share and no more; the rest were refused at once.
        assert held(attackers) == PER_ADDRESS
        assert refused_4429(attackers) == len(attackers) - PER_ADDRESS
        for local in ("127.0.0.2", "127.0.0.3"):
            await valid_connect(url, "websocket", local)
        await valid_connect(url, "socketio", "127.0.0.2")
        # Re-opening at the attacker's pace changes nothing: still refused, others served.
        async with idle_sockets(url, 50) as again:
            assert held(again) == 0
        await valid_connect(url, "websocket", "127.0.0.4")


async def test_behind_a_trusted_proxy_the_forwarded_address_counts(tmp_path: Path) -> None:
    """Through the proxy (127.0.0.1), each forwarded client has its own share; others are not
    believed: a forged X-Forwarded-For from an untrusted address still counts as that address."""
    args = (
        "demo",
        "--database",
        str(tmp_path / "d.db"),
        "--connect-timeout",
        "90",
        "--trusted-proxies",
        "127.0.0.1",
    )
    async with wsgate_process(*args, env=ENV) as (url, _):
        forwarded = {"X-Forwarded-For": "198.51.100.7"}
        async with idle_sockets(url, PER_ADDRESS + 20, headers=forwarded) as attackers:
            assert held(attackers) == PER_ADDRESS
            # Another client behind the same proxy is not locked out.
            await valid_connect(url, "websocket", "127.0.0.1", **{"X-Forwarded-For": "203.0.113.9"})
            # An untrusted peer cannot spend someone else's share by naming them...
            async with idle_sockets(url, 5, local="127.0.0.5", headers=forwarded) as spoofers:
                assert held(spoofers) == 5
            # ...nor escape its own by naming fresh addresses each time.
            spoofed = [{"X-Forwarded-For": f"192.0.2.{i}"} for i in range(PER_ADDRESS + 10)]
            sockets: list[ClientConnection] = []
            try:
                for start in range(0, len(spoofed), 50):
                    batch = spoofed[start : start + 50]
                    sockets += await asyncio.gather(
                        *(
                            websockets.connect(
                                ws_url(url),
                                local_addr=("127.0.0.6", 0),
                                additional_headers=h,
                                open_timeout=20,
                                close_timeout=1,
                            )
                            for h in batch
                        )
                    )
                await settle(sockets)
                assert held(sockets) == PER_ADDRESS
            finally:
                await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
