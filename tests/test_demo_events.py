"""The contract's event table, on every transport, against the demo gateways.

Written with :mod:`wsgate.testing` (the App in memory, as users test theirs);
the same gateways face real sockets in the transport and security tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from support import make_token, settings_for
from wsgate import App
from wsgate.demo.gateways import Admin, Chat
from wsgate.testing import AppClient, Refused


def demo_client(**overrides: Any) -> AppClient:
    return AppClient(App([Chat(), Admin()], settings_for(8000, **overrides)))


@pytest.fixture
async def url() -> AsyncIterator[AppClient]:
    async with demo_client() as client:
        yield client


def connect(
    transport: str, client: AppClient, *, token: str | None = None, namespace: str = "/"
) -> contextlib.AbstractAsyncContextManager[Any]:
    if transport == "socketio":
        return client.socketio(token=token, namespace=namespace)
    return client.websocket(token=token, namespace=namespace)


def status(reply: Any) -> int:
    assert isinstance(reply, dict) and "error" in reply, reply
    return int(reply["error"]["status"])


@pytest.mark.parametrize("body", [None, {}, "x", [1, 2], {"anything": True}])
async def test_ping_takes_any_body(transport: str, url: AppClient, body: Any) -> None:
    async with connect(transport, url, token=make_token()) as c:
        assert await c.call("ping", body) == "pong"


async def test_whoami(transport: str, url: AppClient) -> None:
    async with connect(transport, url, token=make_token(sub="zoe", roles=["b", "a"])) as c:
        assert await c.call("whoami") == {"sub": "zoe", "roles": ["a", "b"]}


async def test_echo_counts_code_points_not_bytes(transport: str, url: AppClient) -> None:
    async with connect(transport, url, token=make_token()) as c:
        emoji = "\U0001f600" * 1000  # 4 UTF-8 bytes and 2 UTF-16 units each, 1 code point
        assert await c.call("echo", {"text": emoji}) == {"text": emoji}
        assert status(await c.call("echo", {"text": emoji + "x"})) == 400
        assert status(await c.call("echo", {"text": ""})) == 400
        assert status(await c.call("echo", {"text": 5})) == 400
        assert status(await c.call("echo", {"text": "ok", "extra": 1})) == 400


@pytest.mark.parametrize(
    "room", ["", "x" * 65, "a b", "room\n", "café", "../etc", "a/b", None, 7, ["general"]]
)
async def test_join_refuses_bad_room_names(transport: str, url: AppClient, room: Any) -> None:
    async with connect(transport, url, token=make_token()) as c:
        reply = await c.call("join", {"room": room})
        assert status(reply) == 400 and "room" in reply["error"]["fields"]


async def test_say_requires_membership_and_reaches_members_only(
    transport: str, url: AppClient
) -> None:
    async with (
        connect(transport, url, token=make_token(sub="ann")) as ann,
        connect(transport, url, token=make_token(sub="ben")) as ben,
        connect(transport, url, token=make_token(sub="cat")) as cat,
    ):
        assert status(await ann.call("say", {"room": "den", "text": "hi"})) == 403
        await ann.call("join", {"room": "den"})
        await ben.call("join", {"room": "den"})
        assert await ann.call("say", {"room": "den", "text": "hi"}) == {"delivered": True}
        expected = {"room": "den", "from": "ann", "text": "hi"}
        assert await ben.next_event("message") == expected
        assert await ann.next_event("message") == expected
        with pytest.raises(asyncio.TimeoutError):
            await cat.next_event("message", timeout=0.3)


async def test_a_room_name_cannot_address_another_connections_private_room(url: AppClient) -> None:
    """Socket.IO puts each connection in a room named by its sid; joining that name gets nothing."""
    async with (
        connect("socketio", url, token=make_token(sub="victim")) as victim,
        connect("socketio", url, token=make_token(sub="spy")) as spy,
    ):
        victim_sid = victim.sid
        assert await spy.call("join", {"room": victim_sid}) == {"room": victim_sid}
        await victim.emit("crash-me-please")  # unknown event, no ack: a private `exception` push
        assert (await victim.next_event("exception"))["error"]["status"] == 404
        await spy.call("say", {"room": victim_sid, "text": "psst"})
        with pytest.raises(asyncio.TimeoutError):
            await spy.next_event("exception", timeout=0.3)
        with pytest.raises(asyncio.TimeoutError):
            await victim.next_event("message", timeout=0.3)


async def test_admin_broadcast(transport: str, url: AppClient) -> None:
    async with (
        connect(transport, url, token=make_token(sub="root", roles=["admin"])) as root,
        connect(
            transport, url, token=make_token(sub="root", roles=["admin"]), namespace="/admin"
        ) as admin_ns,
        connect(transport, url, token=make_token(sub="joe")) as joe,
    ):
        assert status(await joe.call("admin:broadcast", {"text": "hack"})) == 403
        assert await root.call("admin:broadcast", {"text": "news"}) == {"delivered": True}
        assert await joe.next_event("announcement") == {"text": "news"}
        assert await admin_ns.next_event("announcement") == {"text": "news"}
        assert await admin_ns.call("admin:broadcast", {"text": "again"}) == {"delivered": True}
        assert await joe.next_event("announcement") == {"text": "again"}


@pytest.mark.parametrize("roles", [["administrator"], ["Admin"], "admin", ["admin "], []])
async def test_admin_namespace_needs_exactly_the_admin_role(
    transport: str, url: AppClient, roles: Any
) -> None:
    with pytest.raises(Refused) as refused:
        async with connect(transport, url, token=make_token(roles=roles), namespace="/admin"):
            pass
    assert refused.value.code in {"forbidden", "unauthorized"}


async def test_rooms_per_connection_are_capped_and_leave_frees_one(transport: str) -> None:
    async with (
        demo_client(max_rooms_per_connection=3) as base,
        connect(transport, base, token=make_token()) as c,
    ):
        for name in ("a", "b", "c"):
            assert await c.call("join", {"room": name}) == {"room": name}
        assert await c.call("join", {"room": "a"}) == {"room": "a"}  # already in: no new room
        assert status(await c.call("join", {"room": "d"})) == 429
        assert await c.call("leave", {"room": "b"}) == {"room": "b"}
        assert await c.call("join", {"room": "d"}) == {"room": "d"}
        assert status(await c.call("say", {"room": "b", "text": "x"})) == 403  # left it
