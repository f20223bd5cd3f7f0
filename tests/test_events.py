"""The per-event pipeline against a real server: guards, validation, filters, crashes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from clients import Refused, connect
from support import free_port, make_token, serve, settings_for
from wsgate import (
    App,
    Context,
    Gateway,
    GatewayError,
    Unauthorized,
    public,
    roles,
    subscribe,
    use_filters,
    use_guards,
)


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    count: int = Field(ge=0)


def weekday_guard(ctx: Context) -> bool:
    return ctx.claims.get("weekday") is True


async def async_vip_guard(ctx: Context) -> bool:
    return "vip" in ctx.roles


def exploding_guard(ctx: Context) -> bool:
    raise RuntimeError("guard bug with secret detail")


class TeapotError(Exception):
    pass


class Teapot(GatewayError):
    status, code, default_message = 418, "teapot", "I am a teapot"


class Conflict(GatewayError):
    status, code, default_message = 409, "conflict", "Already exists"


def teapot_filter(exc: BaseException, ctx: Context) -> GatewayError | None:
    if isinstance(exc, TeapotError):
        return Teapot()
    return None


async def async_conflict_filter(exc: BaseException, ctx: Context) -> GatewayError | None:
    """An async filter: its answer must reach the client like a sync one's."""
    if isinstance(exc, KeyError):
        return Conflict()
    return None


def leaky_filter(exc: BaseException, ctx: Context) -> Any:
    """A filter that breaks the contract: a raw dict holding a trace must never go out."""
    return {"trace": repr(exc), "error": {"status": 409, "code": "x", "message": repr(exc)}}


class Board(BaseModel):
    board: str = Field(min_length=1, max_length=20)


def board_member_guard(ctx: Context) -> bool:
    """A guard that reads the validated body: the ``boards`` claim holds its board id."""
    body = ctx.body
    return isinstance(body, Board) and body.board in ctx.claims.get("boards", [])


class Shop(Gateway, namespace="/"):
    @subscribe("add")
    async def add(self, ctx: Context, body: Item) -> Item:
        return body

    @subscribe("count")
    async def count(self, ctx: Context, body: int) -> int:
        return body + 1

    @subscribe("crash")
    async def crash(self, ctx: Context) -> None:
        raise ValueError("database password is hunter2")

    @subscribe("deny")
    async def deny(self, ctx: Context) -> None:
        raise Unauthorized("Custom denial")

    @use_guards(weekday_guard)
    @subscribe("weekday")
    async def weekday(self, ctx: Context) -> str:
        return "open"

    @use_guards(async_vip_guard)
    @subscribe("vip")
    async def vip(self, ctx: Context) -> str:
        return "welcome"

    @use_guards(exploding_guard)
    @subscribe("broken-guard")
    async def broken_guard(self, ctx: Context) -> str:
        return "unreachable"

    @use_filters(teapot_filter)
    @subscribe("teapot")
    async def teapot(self, ctx: Context) -> None:
        raise TeapotError()

    @use_filters(async_conflict_filter)
    @subscribe("conflict")
    async def conflict(self, ctx: Context) -> None:
        raise KeyError("row 42 with secret detail")

    @use_filters(leaky_filter)
    @subscribe("leaky")
    async def leaky(self, ctx: Context) -> None:
        raise ValueError("password=hunter2")

    @use_guards(board_member_guard)
    @subscribe("post")
    async def post(self, ctx: Context, body: Board) -> str:
        return f"posted to {body.board}"


@roles("staff")
class Staff(Gateway, namespace="/staff"):
    """Class metadata: every event (and the connect) needs ``staff``..."""

    @subscribe("inventory")
    async def inventory(self, ctx: Context) -> list[str]:
        return ["tea"]

    @roles("manager")
    @subscribe("payroll")
    async def payroll(self, ctx: Context) -> str:
        """...but method metadata overrides it: payroll needs ``manager``."""
        return "secret numbers"


class Grumpy(Gateway, namespace="/grumpy"):
    async def on_connect(self, ctx: Context) -> None:
        if ctx.sub == "bob":
            raise GatewayError("should never reach the client verbatim")
        if ctx.sub == "carol":
            raise KeyError("internal detail")

    @subscribe("hello")
    async def hello(self, ctx: Context) -> str:
        return "hi"


@pytest.fixture
async def url() -> AsyncIterator[str]:
    port = free_port()
    async with serve(App([Shop(), Staff(), Grumpy()], settings_for(port)), port) as base:
        yield base


def error_of(reply: Any) -> dict[str, Any]:
    assert isinstance(reply, dict) and "error" in reply, reply
    return reply["error"]  # type: ignore[no-any-return]


async def test_valid_body_is_validated_and_returned(transport: str, url: str) -> None:
    async with connect(transport, url, token=make_token()) as c:
        assert await c.call("add", {"name": "tea", "count": 2}) == {"name": "tea", "count": 2}
        assert await c.call("count", 41) == 42
        # Beyond 64 bits stays an exact integer both ways (orjson alone would make it a float).
        assert await c.call("count", 10**20 + 7) == 10**20 + 8


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "", "count": 1}, {"name"}),
        ({"name": "x" * 11, "count": 1}, {"name"}),
        ({"name": "tea", "count": -1}, {"count"}),
        ({"name": "tea"}, {"count"}),
        ({"count": "many"}, {"name", "count"}),
        ("not an object", {"body"}),
        (None, {"body"}),
        ([1, 2], {"body"}),
    ],
)
async def test_bad_body_gives_400_naming_fields(
    transport: str, url: str, body: Any, fields: set[str]
) -> None:
    async with connect(transport, url, token=make_token()) as c:
        error = error_of(await c.call("add", body))
        assert error["status"] == 400 and error["code"] == "bad_request"
        assert set(error["fields"]) == fields
        assert await c.call("count", 1) == 2  # still connected and serving


async def test_handler_crash_is_a_generic_500_and_keeps_the_connection(
    transport: str, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "wsgate")
    async with connect(transport, url, token=make_token()) as c:
        reply = await c.call("crash")
        error = error_of(reply)
        assert error == {
            "status": 500,
            "code": "internal_error",
            "message": "Internal server error",
        }
        assert "hunter2" not in str(reply) and "Traceback" not in str(reply)
        assert c.connected
        assert await c.call("count", 1) == 2
    assert "hunter2" in caplog.text  # the details are in the server log only


async def test_error_without_ack_is_emitted_as_exception_event(transport: str, url: str) -> None:
    async with connect(transport, url, token=make_token()) as c:
        await c.send("crash")
        event = await c.next_event("exception")
        assert error_of(event)["status"] == 500
        await c.send("no-such-event", {})
        assert error_of(await c.next_event("exception"))["status"] == 404


async def test_unknown_event_is_404(transport: str, url: str) -> None:
    async with connect(transport, url, token=make_token()) as c:
        assert error_of(await c.call("does-not-exist"))["status"] == 404


async def test_gateway_errors_keep_their_status(transport: str, url: str) -> None:
    async with connect(transport, url, token=make_token()) as c:
        assert error_of(await c.call("deny")) == {
            "status": 401,
            "code": "unauthorized",
            "message": "Custom denial",
        }


async def test_custom_guards_sync_async_and_raising(transport: str, url: str) -> None:
    async with connect(transport, url, token=make_token(weekday=True, roles=["vip"])) as c:
        assert await c.call("weekday") == "open"
        assert await c.call("vip") == "welcome"
        broken = error_of(await c.call("broken-guard"))
        assert broken["status"] == 403 and "secret detail" not in str(broken)
    async with connect(transport, url, token=make_token()) as c:
        assert error_of(await c.call("weekday"))["status"] == 403
        assert error_of(await c.call("vip"))["status"] == 403


async def test_custom_exception_filter(transport: str, url: str) -> None:
    async with connect(transport, url, token=make_token()) as c:
        assert error_of(await c.call("teapot")) == {
            "status": 418,
            "code": "teapot",
            "message": "I am a teapot",
        }
        assert error_of(await c.call("crash"))["status"] == 500  # other handlers unaffected


async def test_async_filter_answers_on_both_transports(transport: str, url: str) -> None:
    async with connect(transport, url, token=make_token()) as c:
        reply = await c.call("conflict", timeout=3)
        assert reply == {"error": {"status": 409, "code": "conflict", "message": "Already exists"}}
        assert "secret" not in str(reply)


async def test_a_filter_cannot_put_anything_but_the_error_object_on_the_wire(
    transport: str, url: str
) -> None:
    async with connect(transport, url, token=make_token()) as c:
        reply = await c.call("leaky")
    assert reply == {
        "error": {"status": 500, "code": "internal_error", "message": "Internal server error"}
    }
    assert "hunter2" not in str(reply) and "trace" not in str(reply)


async def test_guard_reads_the_validated_body(transport: str, url: str) -> None:
    token = make_token(boards=["tea", "cake"])
    async with connect(transport, url, token=token) as c:
        assert await c.call("post", {"board": "tea"}) == "posted to tea"
        assert error_of(await c.call("post", {"board": "coffee"}))["status"] == 403
        # Validation comes before the guard: a bad body is a 400, the guard never sees it.
        assert error_of(await c.call("post", {"board": ""}))["status"] == 400


async def test_second_namespace_has_its_own_guards(transport: str, url: str) -> None:
    with pytest.raises(Refused) as refused:
        async with connect(transport, url, token=make_token(), namespace="/staff"):
            pass
    assert refused.value.code == "forbidden"
    async with connect(transport, url, token=make_token(roles=["staff"]), namespace="/staff") as c:
        assert await c.call("inventory") == ["tea"]
        assert error_of(await c.call("payroll"))["status"] == 403
    async with connect(
        transport, url, token=make_token(roles=["staff", "manager"]), namespace="/staff"
    ) as c:
        assert await c.call("payroll") == "secret numbers"


async def test_second_namespace_needs_a_token_too(transport: str, url: str) -> None:
    with pytest.raises(Refused) as refused:
        async with connect(transport, url, namespace="/grumpy"):
            pass
    assert refused.value.code == "unauthorized"


async def test_unconfigured_namespace_is_refused(transport: str, url: str) -> None:
    with pytest.raises(Refused) as refused:
        async with connect(transport, url, token=make_token(), namespace="/forgotten"):
            pass
    assert refused.value.code == "forbidden"


async def test_class_public_does_not_cancel_method_roles() -> None:
    @public
    class Lobby(Gateway, namespace="/"):
        @subscribe("hello")
        async def hello(self, ctx: Context) -> str:
            return "hi"

        @roles("admin")
        @subscribe("kick")
        async def kick(self, ctx: Context) -> str:
            return "kicked"

    port = free_port()
    async with serve(App([Lobby()], settings_for(port)), port) as base:
        async with connect("socketio", base, token=make_token()) as c:
            assert await c.call("hello") == "hi"
            assert error_of(await c.call("kick"))["status"] == 403
        async with connect("socketio", base, token=make_token(roles=["admin"])) as c:
            assert await c.call("kick") == "kicked"


@pytest.mark.parametrize("sub", ["bob", "carol"])
async def test_exception_in_on_connect_refuses_cleanly(transport: str, url: str, sub: str) -> None:
    with pytest.raises(Refused) as refused:
        async with connect(transport, url, token=make_token(sub=sub), namespace="/grumpy"):
            pass
    assert refused.value.code == "forbidden"
    assert "internal detail" not in str(refused.value.detail)
    async with connect(transport, url, token=make_token(), namespace="/grumpy") as c:
        assert await c.call("hello") == "hi"  # the server is still fine


async def test_public_event_skips_role_checks_of_its_class() -> None:
    @roles("member")
    class Club(Gateway, namespace="/"):
        @public
        @subscribe("hours")
        async def hours(self, ctx: Context) -> str:
            return "9-5"

        @subscribe("bar")
        async def bar(self, ctx: Context) -> str:
            return "drinks"

    port = free_port()
    async with serve(App([Club()], settings_for(port)), port) as base:
        async with connect("socketio", base, token=make_token(roles=["member"])) as c:
            assert await c.call("hours") == "9-5"
            assert await c.call("bar") == "drinks"
