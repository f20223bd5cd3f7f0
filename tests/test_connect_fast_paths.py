"""The connect path's remembered verdicts give the same answers as checking each time.

Run 8 of bench/README.md made a connect cheaper by remembering pure
verdicts (origin policy, JWT header checks, the HMAC secret's checks) and by
not wrapping a close frame that is written at once in ``wait_for``, and by
breaking two reference cycles per connection that left every connect's
objects to the garbage collector. These tests pin that nothing a check used
to refuse is let through by a memo, and that the cycles stay broken.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import uvicorn
import websockets

from support import demo_settings_for, free_port, running
from wsgate.demo.app import create_app
from wsgate.errors import TokenError
from wsgate.principal import Principal
from wsgate.security.jwt import JwtConfig, TokenVerifier
from wsgate.security.origin import OriginPolicy
from wsgate.security.token_cache import private_copy
from wsgate.testing import AppClient
from wsgate.transports.deadline import uvicorn_http_protocol
from wsgate.transports.engineio.session import Session, _send_within
from wsgate.transports.ws_protocol import websocket_protocol

SECRET = "s" * 40


def _token(headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "alice", "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(body, SECRET, algorithm="HS256", headers=headers)


def test_origin_verdicts_are_remembered_per_origin_and_bounded() -> None:
    policy = OriginPolicy(["https://app.example.com"])
    for _ in range(2):  # the second round answers from the memo
        assert policy.is_allowed("https://app.example.com")
        assert not policy.is_allowed("https://evil.example.com")
        assert not policy.is_allowed("https://app.example.com/")
    for n in range(2_000):  # hostile origins cannot grow the memo without bound
        assert not policy.is_allowed(f"https://x{n}.example.net")
    assert len(policy._verdicts) <= 256
    assert policy.is_allowed("https://app.example.com")


def test_served_origin_verdict_depends_on_what_was_served() -> None:
    policy = OriginPolicy([])
    own = ("http://127.0.0.1:8000",)
    assert policy.is_allowed("http://127.0.0.1:8000", served=own)
    assert not policy.is_allowed("http://127.0.0.1:8000", served=("http://127.0.0.1:9000",))
    assert not policy.is_allowed("http://127.0.0.1:8000")


async def test_a_remembered_header_does_not_skip_the_signature() -> None:
    verifier = TokenVerifier(JwtConfig(secret=SECRET, cache_size=0))
    good = _token()
    assert (await verifier.verify(good)).sub == "alice"
    forged = good.rsplit(".", 1)[0] + ".AAAA"  # same header, wrong signature
    with pytest.raises(TokenError) as caught:
        await verifier.verify(forged)
    assert caught.value.reason == "bad_signature"


async def test_remembered_headers_are_bounded() -> None:
    """Headers are judged before the signature: anyone may send new ones, the memo stays small."""
    verifier = TokenVerifier(JwtConfig(secret=SECRET, cache_size=0))
    for n in range(2_000):
        forged = _token(headers={"n": n}).rsplit(".", 1)[0] + ".AAAA"
        with pytest.raises(TokenError):
            await verifier.verify(forged)
    assert len(verifier._headers) <= 256
    assert (await verifier.verify(_token())).sub == "alice"


async def test_refused_headers_are_not_remembered_and_use_is_part_of_the_key() -> None:
    verifier = TokenVerifier(JwtConfig(secret=SECRET, cache_size=0))
    for _ in range(2):
        with pytest.raises(TokenError) as caught:
            await verifier.verify(_token(headers={"typ": "refresh+jwt"}, token_use="refresh"))
        assert caught.value.reason == "wrong_token_use"
    access = _token(headers={"typ": "at+jwt"})
    await verifier.verify(access)
    with pytest.raises(TokenError):  # the header accepted for "access" is refused as refresh
        await verifier.verify(access, use="refresh")


async def test_another_secret_is_still_refused() -> None:
    verifier = TokenVerifier(JwtConfig(secret=SECRET, cache_size=0))
    now = int(time.time())
    other = jwt.encode({"sub": "a", "exp": now + 60}, "o" * 40, algorithm="HS256")
    for _ in range(2):
        with pytest.raises(TokenError) as caught:
            await verifier.verify(other)
        assert caught.value.reason == "bad_signature"


def test_private_copy_shares_no_mutable_claim() -> None:
    original = Principal(sub="a", claims={"roles": ["user"], "org": {"id": 1, "tags": ["x"]}})
    copied = private_copy(original)
    assert copied == original
    copied.claims["org"]["tags"].append("y")  # type: ignore[index]
    copied.claims["roles"].append("admin")  # type: ignore[index]
    assert original.claims == {"roles": ["user"], "org": {"id": 1, "tags": ["x"]}}


async def test_a_close_send_that_waits_is_still_bounded() -> None:
    finished: list[str] = []

    async def quick() -> None:
        finished.append("quick")

    async def stuck() -> None:
        await asyncio.sleep(60)
        finished.append("stuck")

    await _send_within(quick(), 1.0)
    with pytest.raises(TimeoutError):
        await _send_within(stuck(), 0.01)
    assert finished == ["quick"]


def _alive(cls: type) -> int:
    """Instances of ``cls`` the garbage collector tracks (garbage in a cycle included)."""
    return sum(1 for o in gc.get_objects() if type(o) is cls)


async def _until_gone(cls: type) -> int:
    """Let the server finish its side of the closes, then count what is left."""
    for _ in range(200):
        if not _alive(cls):
            break
        await asyncio.sleep(0.01)
    return _alive(cls)


async def test_a_closed_socketio_session_is_freed_without_the_collector(tmp_path: Path) -> None:
    app = create_app(demo_settings_for(free_port(), database=str(tmp_path / "demo.db")))
    async with AppClient(app) as client:
        gc.collect()
        gc.disable()  # what is left now is left in a reference cycle
        try:
            for _ in range(3):
                async with client.socketio(sub="alice") as sio:
                    assert (await sio.call("whoami"))["sub"] == "alice"
            assert await _until_gone(Session) == 0
        finally:
            gc.enable()


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] == "websocket.receive":
            pass


async def test_an_upgraded_http_protocol_is_freed_without_the_collector() -> None:
    protocol = uvicorn_http_protocol(5.0, "httptools")
    port = free_port()
    config = uvicorn.Config(
        _echo, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_level="warning"
    )
    async with running(uvicorn.Server(config)):
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                async with websockets.connect(f"ws://127.0.0.1:{port}/"):
                    pass
            assert await _until_gone(protocol) == 0
        finally:
            gc.enable()


async def test_the_open_packet_joins_the_handshake_response_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    protocol = websocket_protocol()
    if isinstance(protocol, str):
        # Below uvicorn 0.35 wsgate serve runs uvicorn's own protocol (test_ws_protocol.py
        # checks that choice): there is no response of wsgate's to join.
        pytest.skip(f"uvicorn {uvicorn.__version__} has no websockets-sansio protocol")
    writes: list[list[bytes]] = []
    flush = protocol._flush  # type: ignore[attr-defined]

    def spy(self: Any) -> None:
        if self._pending:
            writes.append(list(self._pending))
        flush(self)

    monkeypatch.setattr(protocol, "_flush", spy)
    port = free_port()
    app = create_app(demo_settings_for(port, database=str(tmp_path / "demo.db")))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=uvicorn_http_protocol(5.0, "httptools"),
        ws=protocol,
        ws_per_message_deflate=False,  # as wsgate serve and demo run it
        lifespan="off",
        log_level="warning",
    )
    async with running(uvicorn.Server(config)):
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        ) as ws:
            opened = await ws.recv()
        assert isinstance(opened, str) and opened.startswith("0{")
        first = writes[0]
        assert first[0].startswith(b"HTTP/1.1 101 ")
        assert len(first) == 2 and b'0{"sid":' in first[1]
