"""wsgate.testing, used the way an application's own tests use it (no port, a few lines)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, Field

from wsgate import App, Context, Gateway, Settings, roles, subscribe
from wsgate.testing import AppClient, Refused


class Note(BaseModel):
    text: str = Field(min_length=1, max_length=100)


class Board(Gateway, namespace="/board"):
    @subscribe("post")
    async def post(self, ctx: Context, body: Note) -> dict[str, str]:
        await ctx.server.emit("posted", {"by": ctx.sub, "text": body.text})
        return {"ok": "yes"}

    @roles("editor")
    @subscribe("pin")
    async def pin(self, ctx: Context, body: Note) -> str:
        return f"pinned {body.text} for team {ctx.claims.get('team')}"


def make_app() -> App:
    return App([Board()], Settings(jwt_secret="a-test-secret-that-is-long-enough-0123456789"))


async def test_a_user_tests_their_gateway_in_a_few_lines() -> None:
    async with AppClient(make_app()) as client:
        async with (
            client.socketio(sub="alice", namespace="/board") as alice,
            client.websocket(sub="bob", namespace="/board") as bob,
        ):
            assert await alice.call("post", {"text": "hello"}) == {"ok": "yes"}
            # ctx.server broadcasts to the gateway's own namespace, on both transports.
            assert await bob.next_event("posted") == {"by": "alice", "text": "hello"}
            assert await alice.next_event("posted") == {"by": "alice", "text": "hello"}
            denied = await bob.call("pin", {"text": "x"})
            assert denied["error"]["status"] == 403
            bad = await alice.call("post", {"text": ""})
            assert bad["error"]["status"] == 400 and "text" in bad["error"]["fields"]


async def test_tokens_carry_the_claims_a_test_chooses() -> None:
    async with AppClient(make_app()) as client:
        token = client.token("carol", roles=["editor"], team="blue")
        async with client.websocket(token=token, namespace="/board", bearer=True) as carol:
            assert await carol.call("pin", {"text": "n1"}) == "pinned n1 for team blue"


async def test_refusals_raise_with_the_contract_code() -> None:
    async with AppClient(make_app()) as client:
        with pytest.raises(Refused) as no_token:
            async with client.socketio(namespace="/board"):
                pass
        assert no_token.value.code == "unauthorized"
        with pytest.raises(Refused) as unknown:
            async with client.websocket(sub="dan", namespace="/nowhere"):
                pass
        assert (unknown.value.code, unknown.value.close_code) == ("forbidden", 4403)
        with pytest.raises(Refused) as origin:
            async with client.socketio(
                sub="eve", namespace="/board", headers={"origin": "https://evil.example"}
            ):
                pass
        assert origin.value.code == "forbidden"


async def test_the_app_runs_its_lifespan_and_closes_clients_at_the_end() -> None:
    app = make_app()
    async with AppClient(app) as client:
        async with client.websocket(sub="frank", namespace="/board") as frank:
            await client.__aexit__(None, None, None)
            await frank.wait_closed()
            assert (frank.close_code, frank.close_reason) == (1001, "server_shutdown")
    await asyncio.sleep(0)
    assert app.server.connection_count() == 0


async def test_an_app_mounted_in_fastapi_is_tested_through_its_host() -> None:
    from test_websocket_transport import load_example

    example = load_example("fastapi_app")
    api = example.create_app(
        Settings(jwt_secret="a-test-secret-that-is-long-enough-0123456789", port=8000)
    )
    realtime: App = api.state.realtime
    async with AppClient(realtime, asgi=api, prefix="/realtime") as client:
        async with client.socketio(sub="ann") as ann, client.websocket(sub="ben") as ben:
            assert await ann.call("echo", {"text": "hi"}) == {"text": "hi"}
            await ann.call("join", {"room": "r"})
            await ben.call("join", {"room": "r"})
            await ben.call("say", {"room": "r", "text": "through the mount"})
            assert (await ann.next_event("message"))["text"] == "through the mount"
