"""Dependency injection: providers, scopes, teardown (also on error and cancellation), overrides.

Most tests use wsgate.testing (the App in memory, as a user's tests would);
the ones about guards refusing and about a connection ending under a
running event also run against a real uvicorn with real clients, on both
transports.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from clients import connect
from support import free_port, make_token, serve, settings_for
from wsgate import (
    App,
    Context,
    Depends,
    Gateway,
    GatewayError,
    Settings,
    Unavailable,
    subscribe,
    use_filters,
    use_guards,
    use_interceptors,
)
from wsgate.testing import AppClient, Refused

SETTINGS = Settings(jwt_secret="a-test-secret-that-is-long-enough-0123456789")

LOG: list[str] = []
"""What providers, guards and hooks did, in order (reset before each test)."""


@pytest.fixture(autouse=True)
def _fresh_log() -> None:
    LOG.clear()


def app_of(*gateways: Gateway, **kwargs: Any) -> App:
    return App(list(gateways), SETTINGS, **kwargs)


class Note(BaseModel):
    text: str


class Conflict(GatewayError):
    status, code, default_message = 409, "conflict", "Already there"


# -- providers of every kind -------------------------------------------------------------------


def config() -> dict[str, int]:
    LOG.append("config")
    return {"limit": 3}


async def user_name(ctx: Context) -> str:
    LOG.append("user_name")
    return ctx.sub


def sync_resource(conf: Annotated[dict[str, int], Depends(config)]) -> Iterator[str]:
    LOG.append("sync_resource open")
    yield f"sync(limit={conf['limit']})"
    LOG.append("sync_resource close")


async def async_resource(
    name: Annotated[str, Depends(user_name)],
    inner: Annotated[str, Depends(sync_resource)],
) -> AsyncIterator[str]:
    LOG.append("async_resource open")
    try:
        yield f"async({name}, {inner})"
    except BaseException as exc:
        LOG.append(f"async_resource saw {type(exc).__name__}")
        raise
    LOG.append("async_resource close")


_counter = itertools.count(1)


def numbered() -> int:
    return next(_counter)


def labelled(ctx: Context, note: Note) -> str:
    """A provider that takes the validated body, by its type."""
    LOG.append("labelled")
    return f"{ctx.sub}:{note.text}"


def resource_guard(ctx: Context, res: Annotated[str, Depends(async_resource)]) -> bool:
    LOG.append(f"guard sees {res}")
    return True


class Kinds(Gateway):
    @use_guards(resource_guard)
    @subscribe("all")
    async def all_kinds(
        self,
        ctx: Context,
        res: Annotated[str, Depends(async_resource)],
        conf: Annotated[dict[str, int], Depends(config)],
    ) -> dict[str, Any]:
        LOG.append("handler")
        return {"res": res, "limit": conf["limit"]}

    @subscribe("fresh")
    async def fresh(
        self,
        ctx: Context,
        a: Annotated[int, Depends(numbered, use_cache=False)],
        b: Annotated[int, Depends(numbered, use_cache=False)],
        c: Annotated[int, Depends(numbered)],
        d: Annotated[int, Depends(numbered)],
    ) -> list[int]:
        return [a, b, c, d]

    @subscribe("label")
    async def label(self, ctx: Context, body: Note, tag: Annotated[str, Depends(labelled)]) -> str:
        return tag


async def test_providers_of_every_kind_once_per_event_torn_down_newest_first() -> None:
    async with AppClient(app_of(Kinds())) as client, client.socketio(sub="alice") as alice:
        reply = await alice.call("all")
        assert reply == {"res": "async(alice, sync(limit=3))", "limit": 3}
        # The guard and the handler got the same values (made once for the
        # event), and the teardowns ran newest first before the reply was sent.
        assert LOG == [
            "user_name",
            "config",
            "sync_resource open",
            "async_resource open",
            "guard sees async(alice, sync(limit=3))",
            "handler",
            "async_resource close",
            "sync_resource close",
        ]
        LOG.clear()
        await alice.call("all")
        assert LOG.count("config") == 1 and LOG.count("async_resource close") == 1, "per event"


async def test_use_cache_false_makes_a_value_per_parameter() -> None:
    async with AppClient(app_of(Kinds())) as client, client.websocket(sub="bob") as bob:
        a, b, c, d = await bob.call("fresh")
        assert len({a, b, c}) == 3 and c == d


async def test_a_provider_takes_the_validated_body_by_its_type() -> None:
    async with AppClient(app_of(Kinds())) as client, client.socketio(sub="carol") as carol:
        assert await carol.call("label", {"text": "hi"}) == "carol:hi"
        invalid = await carol.call("label", {"text": 5})
        assert invalid["error"]["status"] == 400
        assert LOG == ["labelled"], "a body that does not validate runs no provider"


# -- errors ----------------------------------------------------------------------------------


async def swallowing() -> AsyncIterator[str]:
    try:
        yield "swallowing"
    except Exception:
        LOG.append("swallowed")  # and does not re-raise


async def failing_teardown() -> AsyncIterator[str]:
    yield "fine"
    raise RuntimeError("commit failed: password=hunter2")


def down() -> str:
    raise Unavailable("Database is down")


def broken() -> str:
    raise RuntimeError("provider bug with secret detail")


def guard_on_down(ctx: Context, value: Annotated[str, Depends(down)]) -> bool:
    return True


def guard_on_broken(ctx: Context, value: Annotated[str, Depends(broken)]) -> bool:
    return True


def conflict_filter(exc: BaseException, ctx: Context) -> GatewayError | None:
    return Conflict() if isinstance(exc, KeyError) else None


class Failing(Gateway):
    @subscribe("crash")
    async def crash(self, ctx: Context, res: Annotated[str, Depends(async_resource)]) -> None:
        raise ValueError("handler bug with secret detail")

    @subscribe("conflict")
    async def conflict(self, ctx: Context, res: Annotated[str, Depends(async_resource)]) -> None:
        raise Conflict()

    @use_filters(conflict_filter)
    @subscribe("filtered")
    async def filtered(self, ctx: Context, res: Annotated[str, Depends(async_resource)]) -> None:
        raise KeyError("x")

    @subscribe("swallow")
    async def swallow(self, ctx: Context, res: Annotated[str, Depends(swallowing)]) -> None:
        raise ValueError("still an error")

    @subscribe("late")
    async def late(self, ctx: Context, res: Annotated[str, Depends(failing_teardown)]) -> str:
        return "would be fine"

    @use_guards(guard_on_down)
    @subscribe("guarded_down")
    async def guarded_down(self, ctx: Context) -> str:
        return "never"

    @use_guards(guard_on_broken)
    @subscribe("guarded_broken")
    async def guarded_broken(self, ctx: Context) -> str:
        return "never"


async def test_the_handlers_error_reaches_the_teardown_and_the_client_gets_the_error_object() -> (
    None
):
    async with AppClient(app_of(Failing())) as client, client.socketio(sub="dan") as dan:
        crashed = await dan.call("crash")
        assert crashed == {
            "error": {"status": 500, "code": "internal_error", "message": "Internal server error"}
        }
        # The error is raised at each generator's yield, newest first; the
        # sync one does not catch it, so its line after yield never runs.
        assert LOG == [
            "user_name",
            "config",
            "sync_resource open",
            "async_resource open",
            "async_resource saw ValueError",
        ]
        assert (await dan.call("conflict"))["error"]["status"] == 409
        assert "async_resource saw Conflict" in LOG
        assert (await dan.call("filtered"))["error"]["code"] == "conflict"
        assert "async_resource saw KeyError" in LOG


async def test_a_teardown_cannot_hide_an_error_and_its_own_error_is_the_events() -> None:
    async with AppClient(app_of(Failing())) as client, client.websocket(sub="erin") as erin:
        swallowed = await erin.call("swallow")
        assert LOG == ["swallowed"]
        assert swallowed["error"]["status"] == 500, "a teardown cannot turn a failure into data"
        late = await erin.call("late")
        assert late["error"] == {
            "status": 500,
            "code": "internal_error",
            "message": "Internal server error",
        }
        assert "hunter2" not in str(late)


async def test_a_provider_failure_is_the_events_error_not_a_guard_denial() -> None:
    async with AppClient(app_of(Failing())) as client, client.socketio(sub="fay") as fay:
        down_reply = await fay.call("guarded_down")
        assert down_reply["error"]["status"] == 503, "retry later, not 'forbidden'"
        broken_reply = await fay.call("guarded_broken")
        assert broken_reply["error"]["status"] == 500
        assert "secret" not in str(broken_reply)


# -- cancellation and the connection scope ---------------------------------------------------------


class Service:
    """A per-connection service; records its life in LOG."""

    made = 0

    def __init__(self, sub: str) -> None:
        Service.made += 1
        self.sub = sub
        self.calls = 0


async def service(ctx: Context) -> AsyncIterator[Service]:
    await asyncio.sleep(0.05)  # slow to make: two events may both want it first
    LOG.append(f"service open {ctx.sub} event={ctx.event}")
    made = Service(ctx.sub)
    yield made
    LOG.append(f"service close {ctx.sub}")


async def event_resource() -> AsyncIterator[str]:
    LOG.append("event open")
    try:
        yield "event"
    except asyncio.CancelledError:
        LOG.append("event teardown cancelled")
        raise
    LOG.append("event close")


PerConnection = Annotated[Service, Depends(service, scope="connection")]


class Scoped(Gateway):
    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.started = asyncio.Event()

    @subscribe("use")
    async def use(self, ctx: Context, svc: PerConnection) -> list[Any]:
        svc.calls += 1
        return [id(svc), svc.calls]

    @subscribe("hang")
    async def hang(
        self, ctx: Context, svc: PerConnection, res: Annotated[str, Depends(event_resource)]
    ) -> None:
        self.started.set()
        await asyncio.sleep(30)

    async def on_disconnect(self, ctx: Context, reason: str, svc: PerConnection) -> None:
        LOG.append(f"on_disconnect {svc.sub} calls={svc.calls}")
        self.released.set()


async def test_connection_scope_made_once_shared_and_torn_down_after_on_disconnect() -> None:
    Service.made = 0
    gateway = Scoped()
    async with AppClient(app_of(gateway)) as client:
        async with client.socketio(sub="gus") as gus, client.websocket(sub="hal") as hal:
            # Two events of one connection want it first at once: made once.
            first, second = await asyncio.gather(gus.call("use"), gus.call("use"))
            assert first[0] == second[0] and {first[1], second[1]} == {1, 2}
            third = await gus.call("use")
            assert third == [first[0], 3]
            other = await hal.call("use")
            assert other[1] == 1, "another connection has its own"
            assert Service.made == 2
            # A connection-scoped provider gets the connection's context: no event.
            assert "service open gus event=None" in LOG
        await asyncio.wait_for(gateway.released.wait(), 5)
        await asyncio.sleep(0.05)
    assert LOG.index("on_disconnect gus calls=3") < LOG.index("service close gus")
    assert LOG.index("on_disconnect hal calls=1") < LOG.index("service close hal")


class ScopedOnline(Scoped):
    """The same gateway for a real server (a fresh instance per test)."""


async def test_a_running_events_teardown_sees_the_cancellation_before_on_disconnect(
    transport: str,
) -> None:
    gateway = ScopedOnline()
    port = free_port()
    async with serve(App([gateway], settings_for(port)), port) as url:
        async with connect(transport, url, token=make_token("ida")) as ida:
            await ida.send("hang")
            await asyncio.wait_for(gateway.started.wait(), 5)
        await asyncio.wait_for(gateway.released.wait(), 5)
        await asyncio.sleep(0.05)
    assert LOG == [
        "service open ida event=None",
        "event open",
        "event teardown cancelled",
        "on_disconnect ida calls=0",
        "service close ida",
    ]


# -- connect guards and hooks ------------------------------------------------------------------


def team_of(ctx: Context) -> str:
    LOG.append("team_of")
    return str(ctx.claims.get("team", ""))


def blue_team(ctx: Context, team: Annotated[str, Depends(team_of)], svc: PerConnection) -> bool:
    LOG.append(f"connect guard team={team}")
    return team == "blue"


def down_at_connect(ctx: Context, value: Annotated[str, Depends(broken)]) -> bool:
    return True


@use_guards(blue_team)
class Teams(Gateway, namespace="/teams"):
    async def on_connect(
        self, ctx: Context, team: Annotated[str, Depends(team_of)], svc: PerConnection
    ) -> None:
        LOG.append(f"on_connect team={team} same_service={svc.sub == ctx.sub}")
        svc.calls += 100

    @subscribe("calls")
    async def calls(self, ctx: Context, svc: PerConnection) -> int:
        return svc.calls


@use_guards(down_at_connect)
class Fragile(Gateway, namespace="/fragile"):
    pass


async def test_connect_guards_and_on_connect_take_dependencies() -> None:
    async with AppClient(app_of(Teams(), Fragile())) as client:
        token = client.token("jan", team="blue")
        async with client.socketio(token=token, namespace="/teams") as jan:
            # The guard and on_connect shared the event-scoped value (one
            # "team_of") and the connection's service, which events then get.
            assert LOG == [
                "team_of",
                "service open jan event=None",
                "connect guard team=blue",
                "on_connect team=blue same_service=True",
            ]
            assert await jan.call("calls") == 100
        LOG.clear()
        with pytest.raises(Refused) as refused:
            async with client.websocket(token=client.token("kim", team="red"), namespace="/teams"):
                pass
        assert refused.value.code == "forbidden"
        # The refused connection's service was made by the guard, and torn down at once.
        assert LOG[-1] == "service close kim"
        with pytest.raises(Refused) as unavailable:
            async with client.socketio(sub="lee", namespace="/fragile"):
                pass
        assert unavailable.value.code == "unavailable", "a check that could not be made"


def boards_of(ctx: Context) -> frozenset[str]:
    return frozenset(ctx.claims.get("boards", ()))


class Post(BaseModel):
    board: str
    text: str


def may_post(ctx: Context, boards: Annotated[frozenset[str], Depends(boards_of)]) -> bool:
    return isinstance(ctx.body, Post) and ctx.body.board in boards


class Boards(Gateway):
    @use_guards(may_post)
    @subscribe("post")
    async def post(self, ctx: Context, body: Post) -> str:
        return f"posted on {body.board}"


async def test_a_guard_with_a_dependency_refuses_a_forged_board_on_both_transports(
    transport: str,
) -> None:
    port = free_port()
    async with serve(App([Boards()], settings_for(port)), port) as url:
        token = make_token("mo", boards=["news"])
        async with connect(transport, url, token=token) as mo:
            assert await mo.call("post", {"board": "news", "text": "hi"}) == "posted on news"
            forged = await mo.call("post", {"board": "admin", "text": "hi"})
            assert forged["error"]["status"] == 403


# -- start-up errors ---------------------------------------------------------------------------


def needs_body(note: Note) -> str:
    return note.text


class Other(BaseModel):
    value: int


def needs_other(other: Other) -> int:
    return other.value


def conn_needs_event(value: Annotated[dict[str, int], Depends(config)]) -> str:
    return "x"


def conn_needs_body(note: Note) -> str:
    return note.text


def unannotated(thing) -> str:  # type: ignore[no-untyped-def]  # on purpose
    return "x"


def cycle_a(b: Annotated[str, Depends(lambda: "placeholder")]) -> str:
    return b


def cycle_b(a: Annotated[str, Depends(cycle_a)]) -> str:
    return a


# cycle_a -> cycle_b -> cycle_a, closed after both exist.
cycle_a.__annotations__["b"] = Annotated[str, Depends(cycle_b)]


def _gateway_with(handler: Any) -> type[Gateway]:
    return type("Bad", (Gateway,), {"handler": subscribe("x")(handler)})


async def _default_style(self: Any, ctx: Context, db: str = Depends(config)) -> None: ...  # type: ignore[assignment]
async def _body_for_none(
    self: Any, ctx: Context, v: Annotated[str, Depends(needs_body)]
) -> None: ...
async def _wrong_body(
    self: Any, ctx: Context, body: Note, v: Annotated[int, Depends(needs_other)]
) -> None: ...
async def _cycle(self: Any, ctx: Context, v: Annotated[str, Depends(cycle_a)]) -> None: ...
async def _conn_event(
    self: Any, ctx: Context, v: Annotated[str, Depends(conn_needs_event, scope="connection")]
) -> None: ...
async def _conn_body(
    self: Any,
    ctx: Context,
    body: Note,
    v: Annotated[str, Depends(conn_needs_body, scope="connection")],
) -> None: ...
async def _unannotated(
    self: Any, ctx: Context, v: Annotated[str, Depends(unannotated)]
) -> None: ...
async def _two_bodies(self: Any, ctx: Context, body: Note, other: Other) -> None: ...


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (_default_style, "Annotated[T, Depends(...)]"),
        (_body_for_none, "takes the body"),
        (_wrong_body, "but the handler's body is"),
        (_cycle, "dependency cycle"),
        (_conn_event, "cannot take an event-scoped dependency"),
        (_conn_body, "cannot take the body"),
        (_unannotated, "annotate 'thing'"),
        (_two_bodies, "'other' is not ctx, the body or a Depends"),
    ],
)
def test_what_cannot_be_planned_is_a_start_up_error(handler: Any, message: str) -> None:
    with pytest.raises(TypeError) as error:
        app_of(_gateway_with(handler)())
    assert message in str(error.value)
    assert "Bad.handler" in str(error.value), "the error names the handler"


def test_guards_and_hooks_are_planned_at_start_up_too() -> None:
    def bad_guard(ctx: Context, extra: str) -> bool:
        return True

    @use_guards(bad_guard)
    class BadGuard(Gateway):
        pass

    with pytest.raises(TypeError, match="'extra' is not ctx or a Depends"):
        app_of(BadGuard())

    class BadHook(Gateway):
        async def on_disconnect(self, ctx: Context, reason: str, extra: int) -> None: ...

    with pytest.raises(TypeError, match="on_disconnect"):
        app_of(BadHook())

    with pytest.raises(TypeError, match="async callable"):
        use_interceptors(lambda ctx, call_next: None)  # type: ignore[arg-type,return-value]


# -- overrides -------------------------------------------------------------------------------


class Database:
    def __init__(self, name: str) -> None:
        self.name = name


async def real_database() -> AsyncIterator[Database]:
    LOG.append("real database opened")
    yield Database("real")


def fake_database(ctx: Context) -> Database:
    return Database(f"fake for {ctx.sub}")


class Stored(Gateway):
    @subscribe("db")
    async def db(self, ctx: Context, db: Annotated[Database, Depends(real_database)]) -> str:
        return db.name

    @subscribe("svc")
    async def svc(self, ctx: Context, svc: PerConnection) -> str:
        return type(svc).__name__


def fake_service(ctx: Context) -> Service:
    LOG.append("fake service")
    return Service("fake")


async def test_overrides_in_app_client_replace_providers_for_the_clients_life() -> None:
    app = app_of(Stored())
    overrides = {real_database: fake_database, service: fake_service}
    async with AppClient(app, overrides=overrides) as client:
        assert app.dependency_overrides[real_database] is fake_database
        async with client.socketio(sub="nia") as nia:
            assert await nia.call("db") == "fake for nia"
            assert await nia.call("svc") == "Service"
    assert LOG == ["fake service"], "the real providers never ran"
    assert dict(app.dependency_overrides) == {}, "restored when the client closed"
    async with AppClient(app) as client, client.websocket(sub="oz") as oz:
        assert await oz.call("db") == "real"


async def test_dependency_overrides_set_directly_apply_at_once_and_bad_ones_raise_there() -> None:
    app = app_of(Stored())
    async with AppClient(app) as client, client.socketio(sub="pam") as pam:
        assert await pam.call("db") == "real"
        app.dependency_overrides[real_database] = fake_database
        assert await pam.call("db") == "fake for pam"

        def needs_a_body(note: Note) -> Database:
            return Database(note.text)

        with pytest.raises(TypeError, match="takes the body"):
            app.dependency_overrides[real_database] = needs_a_body
        assert app.dependency_overrides[real_database] is fake_database, "kept what it had"
        assert await pam.call("db") == "fake for pam"
        del app.dependency_overrides[real_database]
        assert await pam.call("db") == "real"
