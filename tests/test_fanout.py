"""Broadcasts: encoded once, queued straight on each recipient.

These tests pin down what a Socket.IO ``emit`` guarantees: every member
gets every message once and in order, on websocket and long-polling Socket.IO
clients and on /ws alike; ``skip_self`` leaves out the sender only; other
namespaces and non-members get nothing; binary data still goes out as a
binary packet (and decodes as python-socketio's own codec reads it); and the
JSON encoder answers as the standard library does for what orjson refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from socketio import packet as sio_packet

from clients import connect, connect_socketio
from support import free_port, make_token, serve, settings_for
from wsgate import App, Context, Gateway, subscribe
from wsgate.demo.gateways import Admin, Chat
from wsgate.transports.sio.packet import PacketError, PacketType, decode, dumps, encode

MESSAGES = 20


class Say(BaseModel):
    room: str
    text: str
    skip_self: bool = False


class Rooms(Gateway, namespace="/"):
    @subscribe("join")
    async def join(self, ctx: Context, body: Say) -> bool:
        await ctx.join(body.room)
        return True

    @subscribe("say")
    async def say(self, ctx: Context, body: Say) -> bool:
        await ctx.emit_to_room(
            body.room, "message", {"text": body.text, "from": ctx.sub}, skip_self=body.skip_self
        )
        return True

    @subscribe("whisper")
    async def whisper(self, ctx: Context) -> bool:
        await ctx.emit("whispered", {"to": ctx.sub})
        return True


class Other(Gateway, namespace="/other"):
    @subscribe("join")
    async def join(self, ctx: Context, body: Say) -> bool:
        await ctx.join(body.room)
        return True


@pytest.fixture
async def app_url() -> AsyncIterator[tuple[App, str]]:
    port = free_port()
    app = App([Rooms(), Other()], settings_for(port, rate_limit=10_000))
    async with serve(app, port) as url:
        yield app, url


async def drain(client: Any, count: int) -> list[Any]:
    return [await client.next_event("message") for _ in range(count)]


async def nothing_more(client: Any, event: str = "message") -> bool:
    """True when no further ``event`` arrives (after a round trip proved the link is live)."""
    with pytest.raises(TimeoutError):
        await client.next_event(event, timeout=0.3)
    return True


async def test_room_broadcast_reaches_every_member_once_in_order_on_every_client_kind(
    app_url: tuple[App, str],
) -> None:
    _, url = app_url
    async with (
        connect("socketio", url, token=make_token("sender")) as sender,
        connect("socketio", url, token=make_token("ws-member")) as ws_member,
        connect_socketio(url, token=make_token("poll-member"), transports=("polling",)) as polling,
        connect("websocket", url, token=make_token("plain-member")) as plain,
        connect("socketio", url, token=make_token("outsider")) as outsider,
        connect("socketio", url, token=make_token("elsewhere"), namespace="/other") as elsewhere,
    ):
        for client in (sender, ws_member, polling, plain):
            assert await client.call("join", {"room": "r", "text": "-"}) is True
        assert await elsewhere.call("join", {"room": "r", "text": "-"}) is True

        for i in range(MESSAGES):
            await sender.send("say", {"room": "r", "text": f"m{i}", "skip_self": True})
        assert await sender.call("say", {"room": "r", "text": "last", "skip_self": False})

        expected = [{"text": f"m{i}", "from": "sender"} for i in range(MESSAGES)]
        expected.append({"text": "last", "from": "sender"})
        for member in (ws_member, polling, plain):
            assert await drain(member, MESSAGES + 1) == expected
            assert await nothing_more(member)
        # The sender was skipped while it asked to be, and only then.
        assert await sender.next_event("message") == {"text": "last", "from": "sender"}
        assert await nothing_more(sender)
        # Neither a non-member nor a member of the same room name on another
        # namespace hears anything.
        assert await nothing_more(outsider)
        assert await nothing_more(elsewhere)


async def test_a_private_emit_reaches_only_its_connection(app_url: tuple[App, str]) -> None:
    _, url = app_url
    async with (
        connect("socketio", url, token=make_token("a")) as a,
        connect_socketio(url, token=make_token("b"), transports=("polling",)) as b,
    ):
        assert await a.call("whisper") is True
        assert await b.call("whisper") is True
        assert await a.next_event("whispered") == {"to": "a"}
        assert await b.next_event("whispered") == {"to": "b"}
        assert await nothing_more(a, "whispered")
        assert await nothing_more(b, "whispered")


async def test_binary_data_still_goes_out_as_a_binary_packet(app_url: tuple[App, str]) -> None:
    app, url = app_url
    async with connect("socketio", url, token=make_token("a")) as client:
        assert await client.call("join", {"room": "r", "text": "-"}) is True
        await app.parts.socketio.broadcast(
            "/", "message", {"blob": b"\x00\x01\xff"}, room=None, skip=None
        )
        assert await client.next_event("message") == {"blob": b"\x00\x01\xff"}


# -- the packet class ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"text": "héllo ✓"},
        [1, 2.5, True, None, "x"],
        {"big": 2**70},  # orjson: beyond 64 bits
        {"lone": "\ud800"},  # orjson: a lone surrogate
        {1: "non-string key"},
        {"deep": [[[{"a": []}]]]},
    ],
)
def test_packet_json_is_the_same_json_value_as_the_standard_library(value: Any) -> None:
    encoded = dumps(value)
    assert json.loads(encoded) == json.loads(json.dumps(value, separators=(",", ":")))


def test_incoming_json_is_read_strictly_and_exactly() -> None:
    assert (
        decode('2["big",123456789012345678901234567890]', 4).data[1]
        == 123456789012345678901234567890
    )
    with pytest.raises(PacketError):
        decode('2["n",NaN]', 4)


json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=10,
)


@given(json_data)
def test_our_packets_decode_as_python_socketio_reads_them(data: Any) -> None:
    """Binary or not, python-socketio's own codec reads back exactly what was encoded."""
    frames = encode(PacketType.EVENT, "/chat", ["message", data], 7)
    assert frames[0][0] == "4"  # an Engine.IO MESSAGE
    theirs = sio_packet.Packet(encoded_packet=frames[0][1:])
    for attachment in frames[1:]:
        theirs.add_attachment(attachment)
    assert theirs.namespace == "/chat" and theirs.id == 7
    assert theirs.data == ["message", data]
    assert (theirs.packet_type == sio_packet.BINARY_EVENT) == (len(frames) > 1)


async def test_many_recipients_get_each_message_exactly_once(app_url: tuple[App, str]) -> None:
    _, url = app_url
    members = 30
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                connect("socketio", url, token=make_token(f"m{i}", jti=f"j{i}"))
            )
            for i in range(members)
        ]
        for client in clients:
            assert await client.call("join", {"room": "big", "text": "-"}) is True
        for i in range(5):
            assert await clients[0].call("say", {"room": "big", "text": str(i)}) is True
        results = await asyncio.gather(*(drain(client, 5) for client in clients))
        assert all([m["text"] for m in got] == ["0", "1", "2", "3", "4"] for got in results)


async def test_a_recipient_whose_queue_is_full_is_closed_not_buffered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client that stops reading must not make the server buffer every broadcast for it."""
    port = free_port()
    app = App([Chat(), Admin()], settings_for(port))
    async with serve(app, port) as url:
        async with (
            connect("socketio", url, token=make_token(sub="reader")) as reader,
            connect("socketio", url, token=make_token(sub="stalled")) as stalled,
        ):
            await reader.call("join", {"room": "r"})
            await stalled.call("join", {"room": "r"})
            # Pretend every queue is full: the broadcast must drop the recipient.
            # (A writer busy on a full socket, so that frames have to wait.)
            for session in app.parts.socketio.engine.sessions.values():
                monkeypatch.setattr(session, "max_queued", 0)
                monkeypatch.setattr(session, "_ws_idle", False)
            await reader.send("say", {"room": "r", "text": "hello"})  # its ack would never come
            await stalled.wait_closed(timeout=3)
            await reader.wait_closed(timeout=3)  # it was a recipient too
        for _ in range(50):
            if not app.runtime.fanout.connections:
                break
            await asyncio.sleep(0.05)
        assert app.runtime.fanout.connections == {}
