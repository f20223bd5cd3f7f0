"""Live sessions on a real server: expiry, in-band refresh and revocation, on every transport.

Times are checked against the contract's bound (the client is cut within 1 s
of the event) with a small allowance for the test's own scheduling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clients import Refused, connect
from support import free_port, make_token, serve, settings_for
from wsgate import App, ConfigurationError, Context, Gateway, subscribe
from wsgate.core.revocation_follower import RevocationFollower
from wsgate.demo.gateways import Admin, Chat
from wsgate.stores import MemoryRevocationStore, StoreUnavailable
from wsgate.stores.revocation import RevocationWatch

BOUND = 1.0
"""The contract: expired or revoked sockets are cut within 1 s."""

SLACK = 0.3
"""The test's own scheduling and the client's receive path."""


def token_expiring_in(seconds: int, sub: str = "alice", **claims: Any) -> tuple[str, int]:
    exp = int(time.time()) + seconds
    return make_token(sub, exp=exp, **claims), exp


async def wait_cut(client: Any, notice: str, deadline: float) -> tuple[Any, float]:
    """The ``notice`` event's data and when the connection closed (epoch seconds)."""
    data = await client.next_event(notice, timeout=deadline - time.time() + 3)
    await client.wait_closed(timeout=3)
    return data, time.time()


@pytest.fixture
def store() -> MemoryRevocationStore:
    return MemoryRevocationStore()


@pytest.fixture
async def app_url(store: MemoryRevocationStore) -> AsyncIterator[tuple[App, str]]:
    port = free_port()
    app = App([Chat(), Admin()], settings_for(port), revocations=store)
    async with serve(app, port) as url:
        yield app, url


# -- expiry and refresh ---------------------------------------------------------------------


async def test_expiry_cuts_the_socket_and_refresh_keeps_it(
    transport: str, app_url: tuple[App, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Two sockets on tokens that expire in 3 s: the one that refreshes outlives the old exp.

    The other tries to refresh with another user's token, an expired one, a
    refresh token and garbage; each is a 401, and its old expiry stands.
    """
    caplog.set_level(logging.INFO, logger="wsgate.audit")
    app, url = app_url
    old_token, exp = token_expiring_in(3)
    stays_token, _ = token_expiring_in(3)
    async with (
        connect(transport, url, token=old_token) as expiring,
        connect(transport, url, token=stays_token) as refreshed,
    ):
        bad = {
            "unauthorized": make_token("bob", ttl=60),
            "token_expired": make_token("alice", exp=int(time.time()) - 5),
        }
        for code, token in bad.items():
            reply = await expiring.call("auth:refresh", {"token": token})
            assert reply["error"]["status"] == 401 and reply["error"]["code"] == code, reply
        for garbage in ("not-a-jwt", make_token("alice", ttl=60, token_use="refresh")):
            reply = await expiring.call("auth:refresh", {"token": garbage})
            assert reply["error"] == {
                "status": 401,
                "code": "unauthorized",
                "message": reply["error"]["message"],
            }
        reply = await expiring.call("auth:refresh", {"tok": "x"})
        assert reply["error"]["status"] == 400

        new_token, new_exp = token_expiring_in(60)
        assert await refreshed.call("auth:refresh", {"token": new_token}) == {
            "expires_at": float(new_exp)
        }

        data, closed_at = await wait_cut(expiring, "auth:expired", exp)
        assert data["reason"] == "token_expired"
        assert exp - 0.05 <= closed_at <= exp + BOUND + SLACK, closed_at - exp
        assert not expiring.connected

        await asyncio.sleep(max(0.0, exp + BOUND + 0.2 - time.time()))
        assert refreshed.connected
        assert await refreshed.call("whoami") == {"sub": "alice", "roles": []}

    metrics = app.metrics.render().decode()
    assert 'wsgate_session_ends_total{reason="token_expired"} 1.0' in metrics
    assert 'wsgate_refreshes_total{outcome="ok"} 1.0' in metrics
    assert 'wsgate_refreshes_total{outcome="refused"} 5.0' in metrics
    assert 'wsgate_disconnects_total{reason="token_expired"} 1.0' in metrics
    lines = [r for r in caplog.records if r.name == "wsgate.audit"]
    actions = [getattr(r, "wsgate", {}).get("action") for r in lines]
    assert "expired" in actions and "refreshed" in actions and "refresh_refused" in actions
    assert not any(old_token in r.getMessage() or new_token in r.getMessage() for r in lines)


async def test_grace_window_allows_a_late_refresh(transport: str) -> None:
    """With ``expiry_grace`` the client is told at exp, events are refused, a refresh saves it."""
    port = free_port()
    app = App([Chat()], settings_for(port, expiry_grace=3))
    async with serve(app, port) as url:
        token, exp = token_expiring_in(2)
        async with connect(transport, url, token=token) as client:
            data = await client.next_event("auth:expired", timeout=exp - time.time() + 2)
            assert data == {"reason": "token_expired", "grace": 3.0}
            assert time.time() <= exp + BOUND
            reply = await client.call("whoami")
            assert reply["error"]["status"] == 401
            assert reply["error"]["code"] == "token_expired"
            new_token, new_exp = token_expiring_in(60)
            assert await client.call("auth:refresh", {"token": new_token}) == {
                "expires_at": float(new_exp)
            }
            assert await client.call("whoami") == {"sub": "alice", "roles": []}
            assert client.connected


async def test_refresh_that_drops_a_required_role_is_forbidden(
    transport: str, app_url: tuple[App, str]
) -> None:
    _, url = app_url
    async with connect(
        transport, url, token=make_token("root", roles=["admin"]), namespace="/admin"
    ) as admin:
        reply = await admin.call("auth:refresh", {"token": make_token("root", roles=[])})
        assert reply["error"]["status"] == 403
        assert await admin.call("whoami") == {"sub": "root", "roles": ["admin"]}
        renewed = make_token("root", roles=["admin"], ttl=600)
        assert "expires_at" in await admin.call("auth:refresh", {"token": renewed})


async def test_refresh_with_a_revoked_token_is_refused(
    transport: str, app_url: tuple[App, str], store: MemoryRevocationStore
) -> None:
    _, url = app_url
    async with connect(transport, url, token=make_token()) as client:
        revoked = make_token(jti="revoked-one", ttl=60)
        await store.revoke_jti("revoked-one", expires_at=time.time() + 60)
        reply = await client.call("auth:refresh", {"token": revoked})
        assert reply["error"]["code"] == "token_revoked"
        assert await client.call("ping") == "pong"


def test_a_gateway_cannot_shadow_auth_refresh() -> None:
    class Sneaky(Gateway, namespace="/"):
        @subscribe("auth:refresh")
        async def refresh(self, ctx: Context) -> str:
            return "trust me"

    with pytest.raises(ConfigurationError, match="auth:refresh"):
        App([Sneaky()], settings_for(8000))


# -- revocation -----------------------------------------------------------------------------


async def test_revocation_by_jti_and_by_sub_cuts_live_sockets(
    transport: str, app_url: tuple[App, str], store: MemoryRevocationStore
) -> None:
    app, url = app_url
    async with (
        connect(transport, url, token=make_token("alice", jti="alice-1")) as by_jti,
        connect(transport, url, token=make_token("bob", iat=time.time() - 1)) as by_sub,
        connect(transport, url, token=make_token("carol")) as bystander,
    ):
        revoked_at = time.time()
        await store.revoke_jti("alice-1", expires_at=revoked_at + 60)
        await store.revoke_sub("bob", expires_at=revoked_at + 60)
        for client in (by_jti, by_sub):
            data, closed_at = await wait_cut(client, "auth:revoked", revoked_at)
            assert data == {"reason": "token_revoked"}
            assert closed_at - revoked_at <= BOUND + SLACK
        assert await bystander.call("ping") == "pong"
        # A new token issued after the sub revocation is not caught by it.
        fresh = app.token_issuer().issue("bob", ttl=60)[0]
        async with connect(transport, url, token=fresh) as again:
            assert await again.call("whoami") == {"sub": "bob", "roles": []}
        with pytest.raises(Refused) as refused:
            async with connect(transport, url, token=make_token("alice", jti="alice-1")):
                pass
        assert refused.value.code == "token_revoked"


class FlakyStore(MemoryRevocationStore):
    """A memory store whose watch fails until healed, as in a Redis or SQLite outage."""

    def __init__(self) -> None:
        super().__init__()
        self.healed = False
        self.failed_watches = 0

    def watch(self) -> RevocationWatch:
        if not self.healed:
            self.failed_watches += 1
            raise StoreUnavailable("simulated outage")
        return super().watch()


async def test_a_failed_watch_is_restarted_and_live_sockets_rechecked(transport: str) -> None:
    port = free_port()
    store = FlakyStore()
    app = App([Chat()], settings_for(port), revocations=store)
    async with serve(app, port) as url, connect(transport, url, token=make_token()) as client:
        # Revoked while no watch runs: only the re-check after the restart can see it.
        await store.revoke_sub("alice", expires_at=time.time() + 60)
        await asyncio.sleep(0.3)
        assert client.connected and store.failed_watches >= 1
        store.healed = True
        data, _ = await wait_cut(client, "auth:revoked", time.time() + 2)
        assert data == {"reason": "token_revoked"}


async def test_expired_revocations_are_purged_periodically() -> None:
    store = MemoryRevocationStore()
    await store.revoke_jti("old", expires_at=time.time() - 1)
    await store.revoke_jti("current", expires_at=time.time() + 60)
    app = App([Chat()], settings_for(8000), revocations=store)
    follower = RevocationFollower(
        store, app.runtime.sessions, app.runtime.fanout.connections.values, purge_interval=0.05
    )
    follower.ensure_started()
    try:
        await asyncio.sleep(0.2)
        assert await store.purge_expired() == 0, "the follower already purged the old entry"
        assert await store.is_revoked(sub="x", jti="current", issued_at=None)
    finally:
        await follower.aclose()


async def test_issued_iat_has_milliseconds_so_a_new_login_outlives_revoke_sub() -> None:
    store = MemoryRevocationStore()
    issuer = App([Chat()], settings_for(8000)).token_issuer()
    _, before = issuer.issue("dave")
    await asyncio.sleep(0.01)
    await store.revoke_sub("dave", expires_at=time.time() + 60)
    await asyncio.sleep(0.01)
    token, after = issuer.issue("dave")
    assert isinstance(after.claims["iat"], float) and after.claims["iat"] <= time.time()
    assert await store.is_revoked(sub="dave", jti=before.jti, issued_at=before.issued_at)
    assert not await store.is_revoked(sub="dave", jti=after.jti, issued_at=after.issued_at)
    verified = await App([Chat()], settings_for(8000)).verifier.verify(token)
    assert verified.issued_at == after.issued_at


async def test_guard_denials_are_audited_with_who_and_where(
    transport: str, app_url: tuple[App, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsgate.audit")
    app, url = app_url
    async with connect(transport, url, token=make_token("eve")) as client:
        reply = await client.call("admin:broadcast", {"text": "hi"})
        assert reply["error"]["status"] == 403
    for _ in range(100):  # the server sees the close a moment after the client
        if not app.runtime.fanout.connections:
            break
        await asyncio.sleep(0.02)
    denied = [
        getattr(r, "wsgate", {}) for r in caplog.records if getattr(r, "wsgate", {}).get("action")
    ]
    assert {"action": "denied", "sub": "eve", "event": "admin:broadcast"}.items() <= next(
        d for d in denied if d["action"] == "denied"
    ).items()
    assert [d["action"] for d in denied if d.get("sub") == "eve"] == [
        "connected",
        "denied",
        "disconnected",
    ]
    metrics = app.metrics.render().decode()
    assert 'wsgate_events_total{event="admin:broadcast",outcome="denied"} 1.0' in metrics


async def test_revocations_reach_an_app_whose_lifespan_never_ran(transport: str) -> None:
    """A mounted App may never see its lifespan: the follower starts on the first connect."""
    port = free_port()
    store = MemoryRevocationStore()
    app = App([Chat()], settings_for(port), revocations=store)

    async def host(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the host's own lifespan, which ignores the App's
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await app(scope, receive, send)

    async with serve(host, port) as url:
        assert app.runtime.follower is not None and not app.runtime.follower.running
        async with connect(transport, url, token=make_token("mallory")) as client:
            await store.revoke_sub("mallory", expires_at=time.time() + 60, at=time.time() + 1)
            data, _ = await wait_cut(client, "auth:revoked", time.time())
            assert data == {"reason": "token_revoked"}
    await app.aclose()
