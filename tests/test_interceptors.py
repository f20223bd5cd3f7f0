"""Interceptors: order, what they see, transforming results and errors, and their own failures."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from clients import connect
from doc_examples import python_blocks, run_blocks
from support import free_port, make_token, serve, settings_for
from wsgate import (
    App,
    CallNext,
    Context,
    Depends,
    Forbidden,
    Gateway,
    GatewayError,
    Settings,
    subscribe,
    use_filters,
    use_guards,
    use_interceptors,
)
from wsgate.testing import AppClient

SETTINGS = Settings(jwt_secret="a-test-secret-that-is-long-enough-0123456789")

LOG: list[str] = []


@pytest.fixture(autouse=True)
def _fresh_log() -> None:
    LOG.clear()


def tracer(name: str) -> Any:
    """An interceptor that records when the chain enters and leaves it."""

    async def intercept(ctx: Context, call_next: CallNext) -> Any:
        LOG.append(f"{name} in")
        try:
            return await call_next()
        finally:
            LOG.append(f"{name} out")

    intercept.__name__ = name
    return intercept


class Note(BaseModel):
    text: str


def deny(ctx: Context) -> bool:
    return False


@use_interceptors(tracer("class-1"), tracer("class-2"))
class Ordered(Gateway):
    @use_interceptors(tracer("method-1"))
    @use_interceptors(tracer("method-2"))
    @subscribe("order")
    async def order(self, ctx: Context, body: Note) -> str:
        LOG.append("handler")
        return body.text

    @use_guards(deny)
    @subscribe("denied")
    async def denied(self, ctx: Context) -> str:
        LOG.append("handler")
        return "never"


async def test_app_then_class_then_method_outermost_first() -> None:
    app = App([Ordered()], SETTINGS, interceptors=[tracer("app-1"), tracer("app-2")])
    async with AppClient(app) as client, client.socketio(sub="amy") as amy:
        assert await amy.call("order", {"text": "hi"}) == "hi"
    names = ["app-1", "app-2", "class-1", "class-2", "method-1", "method-2"]
    expected = [f"{n} in" for n in names] + ["handler"] + [f"{n} out" for n in reversed(names)]
    assert expected == LOG


async def test_a_refused_event_never_reaches_the_interceptors() -> None:
    app = App([Ordered()], SETTINGS, interceptors=[tracer("app")])
    async with AppClient(app) as client, client.websocket(sub="ben") as ben:
        assert (await ben.call("denied"))["error"]["status"] == 403
        assert (await ben.call("order", {"text": 1}))["error"]["status"] == 400
        assert (await ben.call("no-such-event"))["error"]["status"] == 404
    assert LOG == []


class Conflict(GatewayError):
    status, code, default_message = 409, "conflict", "Already there"


async def upper(ctx: Context, call_next: CallNext) -> Any:
    """Sees the validated body, and transforms the result."""
    assert isinstance(ctx.body, Note)
    result = await call_next()
    return {"text": str(result).upper(), "body_seen": ctx.body.text}


async def conflicts_to_forbidden(ctx: Context, call_next: CallNext) -> Any:
    try:
        return await call_next()
    except Conflict:
        raise Forbidden("Not yours") from None


async def recover(ctx: Context, call_next: CallNext) -> Any:
    try:
        return await call_next()
    except ValueError:
        return "recovered"


async def broken(ctx: Context, call_next: CallNext) -> Any:
    raise RuntimeError("interceptor bug: token=eyJsecret")


async def broken_after(ctx: Context, call_next: CallNext) -> Any:
    await call_next()
    raise KeyError("after the handler")


def key_error_filter(exc: BaseException, ctx: Context) -> GatewayError | None:
    return Conflict("Filtered") if isinstance(exc, KeyError) else None


ATTEMPTS: list[int] = []


def made_once() -> str:
    LOG.append("made")
    return "value"


async def retry(
    ctx: Context, call_next: CallNext, value: Annotated[str, Depends(made_once)]
) -> Any:
    LOG.append(f"retry sees {value}")
    try:
        return await call_next()
    except TimeoutError:
        return await call_next()


class Transforming(Gateway):
    @use_interceptors(upper)
    @subscribe("upper")
    async def upper_event(self, ctx: Context, body: Note) -> str:
        return body.text

    @use_interceptors(conflicts_to_forbidden)
    @subscribe("conflict")
    async def conflict(self, ctx: Context) -> None:
        raise Conflict()

    @use_interceptors(recover)
    @subscribe("recover")
    async def recover_event(self, ctx: Context) -> None:
        raise ValueError("handler failed")

    @use_interceptors(broken)
    @subscribe("broken")
    async def broken_event(self, ctx: Context) -> str:
        LOG.append("handler")
        return "never"

    @use_filters(key_error_filter)
    @use_interceptors(broken_after)
    @subscribe("filtered")
    async def filtered(self, ctx: Context) -> str:
        return "replaced by the interceptor's error"

    @use_interceptors(retry)
    @subscribe("flaky")
    async def flaky(self, ctx: Context, value: Annotated[str, Depends(made_once)]) -> list[Any]:
        ATTEMPTS.append(1)
        if len(ATTEMPTS) == 1:
            raise TimeoutError
        return [value, len(ATTEMPTS)]


async def test_interceptors_transform_results_and_replace_or_recover_errors() -> None:
    async with AppClient(App([Transforming()], SETTINGS)) as client:
        async with client.socketio(sub="cy") as cy:
            assert await cy.call("upper", {"text": "hi"}) == {"text": "HI", "body_seen": "hi"}
            replaced = await cy.call("conflict")
            assert replaced["error"] == {"status": 403, "code": "forbidden", "message": "Not yours"}
            assert await cy.call("recover") == "recovered"
            ATTEMPTS.clear()
            # call_next() twice: the event's dependencies are made once and reused.
            assert await cy.call("flaky") == ["value", 2]
            assert LOG == ["made", "retry sees value"]


async def test_an_interceptors_own_error_is_filtered_never_a_trace(transport: str) -> None:
    port = free_port()
    async with serve(App([Transforming()], settings_for(port)), port) as url:
        async with connect(transport, url, token=make_token("dee")) as dee:
            failed = await dee.call("broken")
            assert failed == {
                "error": {
                    "status": 500,
                    "code": "internal_error",
                    "message": "Internal server error",
                }
            }
            assert (await dee.call("filtered"))["error"]["code"] == "conflict"
    assert "handler" not in LOG, "an interceptor may stop the chain"


def test_an_interceptor_must_be_async() -> None:
    def sync_interceptor(ctx: Context, call_next: CallNext) -> Any:
        return None

    with pytest.raises(TypeError, match="async callable"):
        use_interceptors(sync_interceptor)
    with pytest.raises(TypeError, match="async callable"):
        App([Ordered()], SETTINGS, interceptors=[sync_interceptor])


async def test_the_documented_timing_audit_and_envelope_examples(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSGATE_JWT_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    example = run_blocks("interceptors_doc", python_blocks("docs/interceptors.md"))
    caplog.set_level(logging.INFO, logger="myapp")
    async with AppClient(example.app) as client:
        async with client.socketio(sub="alice", namespace="/notes") as alice:
            assert await alice.call("notes:add", {"text": "hi"}) == {
                "event": "notes:add",
                "data": 1,
            }
            conflict = await alice.call("notes:add", {"text": "hi"})
            assert conflict["error"]["status"] == 409
            invalid = await alice.call("notes:add", {"text": ""})
            assert invalid["error"]["status"] == 400
    timing = [r.getMessage() for r in caplog.records if r.name == "myapp.timing"]
    audit = [r.getMessage() for r in caplog.records if r.name == "myapp.audit"]
    assert len(timing) == 2 and all(t.startswith("event=notes:add ms=") for t in timing)
    assert audit == [
        "sub='alice' event=notes:add outcome=ok",
        "sub='alice' event=notes:add outcome=conflict",
    ], "the 400 never reached an interceptor"

    # The second block: a retry and an error replaced by a 503.
    class Flaky(Gateway, namespace="/flaky"):
        def __init__(self) -> None:
            self.calls = 0

        @use_interceptors(example.retry_once)
        @subscribe("retried")
        async def retried(self, ctx: Context) -> int:
            self.calls += 1
            if self.calls == 1:
                raise example.UpstreamTimeout()
            return self.calls

        @use_interceptors(example.hide_timeouts)
        @subscribe("slow")
        async def slow(self, ctx: Context) -> None:
            raise example.UpstreamTimeout()

    async with AppClient(App([Flaky()], SETTINGS)) as client:
        async with client.websocket(sub="bo", namespace="/flaky") as bo:
            assert await bo.call("retried") == 2
            assert (await bo.call("slow"))["error"]["status"] == 503
