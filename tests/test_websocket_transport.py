"""Rules only the plain WebSocket transport has: first-message auth, close codes, raw frames.

The transport-neutral security suites run over /ws through the ``transport``
fixture; this file holds what has no Socket.IO counterpart, the pure frame
codec (fuzzed), rooms shared with Socket.IO clients, and the FastAPI example.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from clients import Refused, connect, connect_socketio, connect_websocket, ws_url
from support import free_port, make_token, serve, settings_for
from wsgate import App, Context, Gateway, public, subscribe
from wsgate.demo.gateways import Admin, Chat
from wsgate.security.limits import utf8_size_over
from wsgate.transports.frames import (
    MAX_ID,
    FrameError,
    Request,
    auth_payload,
    decode_frame,
    encode,
)
from wsgate.transports.websocket import CLOSE_CODES, MAX_QUEUED_FRAMES, _Peer, close_code

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Lifecycle(Gateway, namespace="/"):
    """Counts hooks, and greets from ``on_connect`` to prove the ready frame comes first."""

    def __init__(self) -> None:
        self.disconnects: list[tuple[str, str]] = []
        self.released = asyncio.Event()

    async def on_connect(self, ctx: Context) -> None:
        await ctx.emit("welcome", {"sub": ctx.sub})

    async def on_disconnect(self, ctx: Context, reason: str) -> None:
        self.disconnects.append((ctx.id, reason))
        self.released.set()

    @public
    @subscribe("ping")
    async def ping(self, ctx: Context) -> str:
        return "pong"

    @subscribe("slow")
    async def slow(self, ctx: Context) -> str:
        await asyncio.sleep(0.3)
        return "slow"

    @subscribe("crash")
    async def crash(self, ctx: Context) -> None:
        raise RuntimeError("secret detail that must stay in the log")


@pytest.fixture
async def demo_url() -> AsyncIterator[str]:
    port = free_port()
    async with serve(App([Chat(), Admin()], settings_for(port, connect_timeout=0.5)), port) as url:
        yield url


@pytest.fixture
async def lifecycle() -> AsyncIterator[tuple[str, App, Lifecycle]]:
    port = free_port()
    gateway = Lifecycle()
    app = App([gateway], settings_for(port))
    async with serve(app, port) as url:
        yield url, app, gateway


@contextlib.asynccontextmanager
async def raw_ws(
    url: str, *, headers: dict[str, str] | None = None, namespace: str = "/"
) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(
        ws_url(url, namespace=namespace), additional_headers=headers or {}, open_timeout=5
    ) as ws:
        yield ws


async def recv_json(ws: ClientConnection, timeout: float = 3) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def closed_with(ws: ClientConnection, timeout: float = 3) -> tuple[int | None, str]:
    """Read until the server closes; the close code and reason."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason or ""


async def authed(ws: ClientConnection, token: str | None = None) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "auth", "token": token or make_token()}))
    ready = await recv_json(ws)
    assert ready["event"] == "ready", ready
    return dict(ready["data"])


# -- handshake ---------------------------------------------------------------------------


async def test_first_message_auth_gets_ready_with_sub_and_expiry(demo_url: str) -> None:
    token = make_token(sub="carol", ttl=120)
    async with raw_ws(demo_url) as ws:
        ready = await authed(ws, token)
        assert ready["sub"] == "carol"
        assert abs(ready["expires_at"] - (time.time() + 120)) < 5
        await ws.send(json.dumps({"id": 1, "event": "whoami"}))
        assert await recv_json(ws) == {"id": 1, "data": {"sub": "carol", "roles": []}}


@pytest.mark.parametrize("source", ["header", "cookie"])
async def test_header_and_cookie_tokens_need_no_first_message(demo_url: str, source: str) -> None:
    token = make_token(sub="dave")
    headers = (
        {"Authorization": f"Bearer {token}"}
        if source == "header"
        else {"Cookie": f"access_token={token}"}
    )
    async with raw_ws(demo_url, headers=headers) as ws:
        ready = await recv_json(ws)
        assert ready == {
            "event": "ready",
            "data": {"sub": "dave", "expires_at": ready["data"]["expires_at"]},
        }


async def test_no_auth_message_within_connect_timeout_closes_4408(demo_url: str) -> None:
    started = time.monotonic()
    async with raw_ws(demo_url) as ws:
        assert await closed_with(ws) == (4408, "timeout")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "first",
    [
        '{"id": 1, "event": "ping"}',
        '{"type": "auth"}',
        '{"type": "auth", "token": 42}',
        '{"type": "auth", "token": "not a jwt"}',
        '{"type": "hello"}',
        "not json",
        "[]",
    ],
)
async def test_anything_but_a_valid_auth_message_first_closes_4401(
    demo_url: str, first: str
) -> None:
    async with raw_ws(demo_url) as ws:
        await ws.send(first)
        assert await closed_with(ws) == (4401, "unauthorized")


async def test_binary_first_message_closes_4401(demo_url: str) -> None:
    async with raw_ws(demo_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": make_token()}).encode())
        assert await closed_with(ws) == (4401, "unauthorized")  # frames are text, not bytes


async def test_expired_and_revoked_reasons_are_told_apart(demo_url: str) -> None:
    async with raw_ws(demo_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": make_token(ttl=-60)}))
        assert await closed_with(ws) == (4401, "token_expired")


async def test_invalid_header_token_is_judged_and_not_replaced_by_auth_message(
    demo_url: str,
) -> None:
    headers = {"Authorization": "Bearer not-a-jwt"}
    async with raw_ws(demo_url, headers=headers) as ws:
        # Too late: the header was the first source present and was refused.
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps({"type": "auth", "token": make_token()}))
        assert await closed_with(ws) == (4401, "unauthorized")


async def test_oversize_auth_message_closes_1009(demo_url: str) -> None:
    async with raw_ws(demo_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "x" * 70_000}))
        assert (await closed_with(ws))[0] == 1009


async def test_disallowed_origin_is_refused_with_http_403_before_accept(demo_url: str) -> None:
    headers = {"Origin": "https://evil.example", "Authorization": f"Bearer {make_token()}"}
    with pytest.raises(InvalidStatus) as caught:
        async with raw_ws(demo_url, headers=headers):
            pass
    assert caught.value.response.status_code == 403


async def test_namespace_chosen_by_query_and_guarded_at_connect(demo_url: str) -> None:
    with pytest.raises(Refused) as caught:
        async with connect_websocket(demo_url, token=make_token(), namespace="/admin"):
            pass
    assert caught.value.code == "forbidden"
    with pytest.raises(Refused) as caught:
        async with connect_websocket(demo_url, token=make_token(), namespace="/nowhere"):
            pass
    assert caught.value.code == "forbidden"
    async with connect_websocket(
        demo_url, token=make_token(roles=["admin"]), namespace="/admin"
    ) as admin:
        assert await admin.call("whoami") == {"sub": "alice", "roles": ["admin"]}


async def test_ready_comes_before_what_on_connect_sent(
    lifecycle: tuple[str, App, Lifecycle],
) -> None:
    url, _, _ = lifecycle
    async with raw_ws(url) as ws:
        await authed(ws)
        assert await recv_json(ws) == {"event": "welcome", "data": {"sub": "alice"}}


# -- frames ------------------------------------------------------------------------------


async def test_requests_replies_and_pushes_follow_the_frame_protocol(demo_url: str) -> None:
    async with raw_ws(demo_url) as ws:
        await authed(ws)
        await ws.send(json.dumps({"id": 7, "event": "echo", "data": {"text": "héllo"}}))
        assert await recv_json(ws) == {"id": 7, "data": {"text": "héllo"}}
        await ws.send(json.dumps({"id": 8, "event": "echo", "data": {"text": ""}}))
        error = (await recv_json(ws))["error"]
        assert error["status"] == 400 and "text" in error["fields"]
        await ws.send(json.dumps({"id": 9, "event": "no-such-event"}))
        assert (await recv_json(ws)) == {
            "id": 9,
            "error": {"status": 404, "code": "not_found", "message": "Unknown event"},
        }
        # No id: success is silent, failure is pushed as `exception`.
        await ws.send(json.dumps({"event": "echo", "data": {"text": "quiet"}}))
        await ws.send(json.dumps({"event": "echo", "data": {}}))
        pushed = await recv_json(ws)
        assert pushed["event"] == "exception" and pushed["data"]["error"]["status"] == 400


@pytest.mark.parametrize(
    ("raw", "reply_id"),
    [
        ("not json at all", None),
        ("[1, 2, 3]", None),
        ('"just a string"', None),
        ('{"id": "7", "event": "ping"}', None),
        ('{"id": true, "event": "ping"}', None),
        ('{"id": -1, "event": "ping"}', None),
        ('{"id": 3, "event": 5}', 3),
        ('{"id": 4}', 4),
        ('{"id": 5, "event": "ping", "body": {}}', 5),
        ('{"id": 6, "event": ""}', 6),
        ("{" * 5000 + "}" * 5000, None),
    ],
)
async def test_malformed_frames_get_a_400_and_the_connection_lives_on(
    demo_url: str, raw: str, reply_id: int | None
) -> None:
    async with raw_ws(demo_url) as ws:
        await authed(ws)
        await ws.send(raw)
        frame = await recv_json(ws)
        if reply_id is None:
            assert frame["event"] == "exception"
            error = frame["data"]["error"]
        else:
            assert frame["id"] == reply_id
            error = frame["error"]
        assert error["status"] == 400 and error["code"] == "bad_request"
        await ws.send(json.dumps({"id": 1, "event": "ping"}))
        assert await recv_json(ws) == {"id": 1, "data": "pong"}


async def test_binary_frames_are_refused_as_data(demo_url: str) -> None:
    async with raw_ws(demo_url) as ws:
        await authed(ws)
        await ws.send(json.dumps({"id": 1, "event": "ping"}).encode())
        frame = await recv_json(ws)
        # Refused, and answered by the id it carries: the caller is not left waiting.
        assert frame["id"] == 1 and frame["error"]["status"] == 400
        await ws.send(b"\x00\xff")
        frame = await recv_json(ws)
        assert frame["event"] == "exception" and frame["data"]["error"]["status"] == 400
        await ws.send(json.dumps({"id": 2, "event": "ping"}))
        assert await recv_json(ws) == {"id": 2, "data": "pong"}


async def test_oversize_frame_closes_1009_and_other_clients_are_unaffected(demo_url: str) -> None:
    async with raw_ws(demo_url) as bystander, raw_ws(demo_url) as ws:
        await authed(bystander)
        await authed(ws)
        text = "é" * 40_000  # 40 000 code points, 80 000 bytes: over 65 536
        await ws.send(json.dumps({"id": 1, "event": "echo", "data": {"text": text}}))
        assert await closed_with(ws) == (1009, "payload_too_large")
        await bystander.send(json.dumps({"id": 1, "event": "ping"}))
        assert await recv_json(bystander) == {"id": 1, "data": "pong"}


async def test_handler_crash_is_a_generic_500_and_events_run_concurrently(
    lifecycle: tuple[str, App, Lifecycle],
) -> None:
    url, _, _ = lifecycle
    async with raw_ws(url) as ws:
        await authed(ws)
        await recv_json(ws)  # welcome
        await ws.send(json.dumps({"id": 1, "event": "slow"}))
        await ws.send(json.dumps({"id": 2, "event": "crash"}))
        await ws.send(json.dumps({"id": 3, "event": "ping"}))
        replies = [await recv_json(ws) for _ in range(3)]
        assert [reply["id"] for reply in replies] == [2, 3, 1]  # the slow one does not block
        assert replies[0]["error"] == {
            "status": 500,
            "code": "internal_error",
            "message": "Internal server error",
        }
        assert "secret detail" not in json.dumps(replies)


# -- lifecycle ---------------------------------------------------------------------------


async def test_client_close_releases_exactly_once(lifecycle: tuple[str, App, Lifecycle]) -> None:
    url, app, gateway = lifecycle
    async with connect_websocket(url, token=make_token()) as client:
        assert await client.call("ping") == "pong"
        assert len(app.runtime.fanout.connections) == 1
    await asyncio.wait_for(gateway.released.wait(), 3)
    await asyncio.sleep(0.1)  # room for a second (wrong) release to show up
    assert len(gateway.disconnects) == 1
    assert gateway.disconnects[0][1] == "client_disconnect"
    assert app.runtime.fanout.connections == {}
    assert not app.parts.websocket._peers  # no peer, namespace or room left behind


async def test_server_close_uses_the_mapped_code_and_releases_once(
    lifecycle: tuple[str, App, Lifecycle],
) -> None:
    url, app, gateway = lifecycle
    token = make_token()
    async with connect_websocket(url, token=token) as client:
        connection = next(iter(app.runtime.fanout.connections.values()))
        assert connection.principal.jti is not None
        await connection.transport.send(connection.id, "/", "auth:revoked", None)
        await app.server.disconnect(connection.id, "token_revoked")
        await app.server.disconnect(connection.id, "token_revoked")  # a second close is a no-op
        assert await client.next_event("auth:revoked") is None
        assert await client.wait_closed() == "4401"
        assert client.close_reason == "token_revoked"
    await asyncio.wait_for(gateway.released.wait(), 3)
    await asyncio.sleep(0.1)  # room for a second (wrong) release to show up
    assert [reason for _, reason in gateway.disconnects] == ["token_revoked"]


async def test_a_client_that_stops_reading_is_closed_not_buffered() -> None:
    """A full outbox means the client stopped reading: close it, never grow without bound."""
    sent: list[dict[str, Any]] = []
    stuck = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.send":
            await stuck.wait()  # a socket whose buffer never drains

    peer = _Peer("c1", "/", send)
    peer.start(encode({"event": "ready"}))
    await asyncio.sleep(0)
    for _ in range(MAX_QUEUED_FRAMES + 1):
        peer.push('{"event":"x"}')
    await asyncio.sleep(0.01)
    assert peer.closing and peer.close_reason == "slow_consumer"
    assert sent[-1] == {"type": "websocket.close", "code": 1008, "reason": "slow_consumer"}
    peer.push('{"event":"late"}')
    assert len(sent) == 2
    peer.stop()


def test_close_codes_follow_the_contract() -> None:
    assert {close_code(r) for r in ("unauthorized", "token_expired", "token_revoked")} == {4401}
    assert close_code("forbidden") == 4403
    assert close_code("timeout") == 4408
    assert close_code("payload_too_large") == 1009
    assert close_code("unavailable") == 1013
    assert close_code("server_shutdown") == 1001
    assert close_code("too_many_connections") == close_code("rate_limited") == 4429
    assert close_code("server_disconnect") == 1000
    assert all(1000 <= code < 5000 for code in CLOSE_CODES.values())


# -- rooms across transports -------------------------------------------------------------


async def test_socketio_and_websocket_clients_share_rooms_and_broadcasts(demo_url: str) -> None:
    async with (
        connect_socketio(demo_url, token=make_token(sub="sio")) as sio,
        connect_websocket(demo_url, token=make_token(sub="ws")) as ws,
        connect_websocket(demo_url, token=make_token(sub="outsider")) as outsider,
        connect_websocket(
            demo_url, token=make_token(sub="boss", roles=["admin"]), namespace="/admin"
        ) as admin,
    ):
        assert await sio.call("join", {"room": "lobby"}) == {"room": "lobby"}
        assert await ws.call("join", {"room": "lobby"}) == {"room": "lobby"}
        assert await ws.call("say", {"room": "lobby", "text": "from ws"}) == {"delivered": True}
        expected = {"room": "lobby", "from": "ws", "text": "from ws"}
        assert await sio.next_event("message") == expected
        assert await ws.next_event("message") == expected
        await sio.call("say", {"room": "lobby", "text": "from sio"})
        assert (await ws.next_event("message"))["from"] == "sio"
        assert (await sio.next_event("message"))["from"] == "sio"
        with pytest.raises(asyncio.TimeoutError):
            await outsider.next_event("message", timeout=0.2)
        assert await admin.call("admin:broadcast", {"text": "hi all"}) == {"delivered": True}
        for client in (sio, ws, outsider, admin):
            assert await client.next_event("announcement") == {"text": "hi all"}


# -- the frame codec, fuzzed ---------------------------------------------------------------

# orjson reads integers beyond 64 bits as floats, and refuses NaN and Infinity (not JSON).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), json_values.map(json.dumps)))
def test_decode_frame_never_raises(raw: str | bytes) -> None:
    result = decode_frame(raw)
    assert isinstance(result, Request | FrameError)
    if isinstance(result, Request):
        assert isinstance(result.event, str) and result.event
        assert result.id is None or (type(result.id) is int and 0 <= result.id <= MAX_ID)
    auth_payload(raw)


@settings(max_examples=300, deadline=None)
@given(
    frame_id=st.none() | st.integers(min_value=0, max_value=MAX_ID),
    event=st.text(min_size=1, max_size=50),
    data=json_values,
)
def test_well_formed_frames_decode_to_what_was_sent(
    frame_id: int | None, event: str, data: Any
) -> None:
    frame: dict[str, Any] = {"event": event, "data": data}
    if frame_id is not None:
        frame["id"] = frame_id
    assert decode_frame(json.dumps(frame)) == Request(frame_id, event, data)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=5), st.integers() | st.text())
def test_encode_always_yields_json(data: dict[str, Any], extra: Any) -> None:
    frame = {"event": "x", "data": data, "extra": extra}
    assert json.loads(encode(frame)) == json.loads(json.dumps(frame))


def test_encode_falls_back_for_what_orjson_refuses() -> None:
    assert json.loads(encode({"data": 2**70})) == {"data": 2**70}
    assert json.loads(encode({"data": "\ud800"})) == {"data": "\ud800"}


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=0, max_value=400))
def test_utf8_length_check_matches_the_encoded_size(text: str, limit: int) -> None:
    assert utf8_size_over(text, limit) == (len(text.encode("utf-8", "surrogatepass")) > limit)


# -- FastAPI integration --------------------------------------------------------------------


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first, as an import would: pydantic resolves the example's
    # postponed annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_fastapi_example_serves_both_transports_under_its_mount() -> None:
    example = load_example("fastapi_app")
    port = free_port()
    api = example.create_app(settings_for(port))
    realtime: App = api.state.realtime
    async with serve(api, port) as url:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/api/hello")).json() == {"hello": "world"}
            assert (await http.get(f"{url}/realtime/healthz")).status_code == 200
        mounted = f"{url}/realtime"
        async with (
            connect_socketio(
                url, token=make_token(sub="sio"), socketio_path="/realtime/socket.io"
            ) as sio,
            connect_websocket(mounted, token=make_token(sub="ws")) as ws,
        ):
            assert await ws.call("echo", {"text": "hi"}) == {"text": "hi"}
            assert await sio.call("echo", {"text": "hi"}) == {"text": "hi"}
            await sio.call("join", {"room": "r1"})
            await ws.call("join", {"room": "r1"})
            await ws.call("say", {"room": "r1", "text": "both ways"})
            assert (await sio.next_event("message"))["from"] == "ws"
            assert len(realtime.runtime.fanout.connections) == 2
        with pytest.raises(Refused) as caught:
            async with connect_websocket(
                mounted, token=make_token(), headers={"Origin": "https://evil.example"}
            ):
                pass
        assert caught.value.code == "forbidden"
        # The unmounted path is FastAPI's, not the gateway's.
        with pytest.raises(Refused):
            async with connect("websocket", url, token=make_token()):
                pass


async def test_sockets_waiting_for_auth_hold_handshake_slots() -> None:
    """Sockets that never authenticate cannot pile up past max_pending_handshakes."""
    port = free_port()
    app = App([Chat()], settings_for(port, max_pending_handshakes=2))
    async with serve(app, port) as url:
        ws_url = url.replace("http", "ws") + "/ws"
        silent = [await websockets.connect(ws_url) for _ in range(2)]
        try:
            await asyncio.sleep(0.1)
            async with websockets.connect(ws_url) as third:
                with pytest.raises(ConnectionClosed):  # closed as soon as it is accepted
                    await third.send(json.dumps({"type": "auth", "token": make_token()}))
                    await asyncio.wait_for(third.recv(), 3)
                assert third.close_code == 4429
        finally:
            await silent[0].close()
        await asyncio.sleep(0.1)
        async with websockets.connect(ws_url) as fourth:
            await fourth.send(json.dumps({"type": "auth", "token": make_token()}))
            ready = json.loads(await asyncio.wait_for(fourth.recv(), 3))
            assert ready["event"] == "ready"
        await silent[1].close()
