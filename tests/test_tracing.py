"""OpenTelemetry spans through real clients, with the SDK's in-memory exporter.

The provider is passed to the App (``tracer_provider=``), so these tests
never set OpenTelemetry's process-wide provider (which can be set once);
the global provider and the absent API are tested in subprocesses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from clients import Refused, connect
from support import SECRET, free_port, make_token, serve, settings_for
from wsgate import App, Context, Forbidden, Gateway, Settings, roles, subscribe

SUB = "carol-7f3a9-unique-sub"
"""A sub that cannot appear in a span by accident (it must not appear at all)."""


class Traced(Gateway, namespace="/traced"):
    @subscribe("say")
    async def say(self, ctx: Context) -> str:
        await ctx.server.emit("said", {"by": ctx.sub}, room="lobby")
        return "ok"

    @subscribe("crash")
    async def crash(self, ctx: Context) -> None:
        raise RuntimeError(f"crash holding the sub {ctx.sub}")

    @subscribe("deny")
    async def deny(self, ctx: Context) -> None:
        raise Forbidden()


@roles("admin")
class AdminOnly(Gateway, namespace="/admin"):
    pass


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, provider
    provider.shutdown()


def spans_named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def expected_hash(sub: str, key: bytes) -> str:
    return hmac.new(key, sub.encode(), hashlib.sha256).hexdigest()[:16]


def derived_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"wsgate trace sub key", hashlib.sha256).digest()


async def test_connect_event_and_broadcast_spans_with_their_attributes(
    transport: str, exporter: tuple[InMemorySpanExporter, TracerProvider]
) -> None:
    memory, provider = exporter
    port = free_port()
    app = App([Traced(), AdminOnly()], settings_for(port), tracer_provider=provider)
    token = make_token(SUB)
    async with serve(app, port) as url:
        async with connect(transport, url, token=token, namespace="/traced") as client:
            assert await client.call("say") == "ok"
            assert (await client.call("crash"))["error"]["status"] == 500
            assert (await client.call("deny"))["error"]["status"] == 403
            assert (await client.call("no-such-event"))["error"]["status"] == 404
        with pytest.raises(Refused):
            async with connect(transport, url, token=token, namespace="/admin"):
                pass
        with pytest.raises(Refused):
            async with connect(transport, url, token="not.a.token", namespace="/traced"):
                pass
    spans = memory.get_finished_spans()
    sub_hash = expected_hash(SUB, derived_key(SECRET))

    connects = spans_named(spans, "wsgate.connect")
    assert [attributes(s)["wsgate.outcome"] for s in connects] == [
        "ok",
        "forbidden",
        "unauthorized",
    ]
    ok, forbidden, unauthorized = (attributes(s) for s in connects)
    assert ok == {
        "wsgate.namespace": "/traced",
        "wsgate.transport": transport,
        "wsgate.sub_hash": sub_hash,
        "wsgate.outcome": "ok",
    }
    assert forbidden["wsgate.status_code"] == 403 and forbidden["wsgate.sub_hash"] == sub_hash
    assert unauthorized["wsgate.status_code"] == 401
    assert "wsgate.sub_hash" not in unauthorized, "no verified sub, no hash"
    assert all(s.kind is SpanKind.SERVER for s in connects)

    events = {attributes(s)["wsgate.event"]: s for s in spans_named(spans, "wsgate.event")}
    assert set(events) == {"say", "crash", "deny", "<unknown>"}
    for name, outcome, status in [
        ("say", "ok", None),
        ("crash", "error", 500),
        ("deny", "denied", 403),
        ("<unknown>", "not_found", 404),
    ]:
        got = attributes(events[name])
        assert got["wsgate.outcome"] == outcome
        assert got.get("wsgate.status_code") == status
        assert got["wsgate.namespace"] == "/traced"
        assert got["wsgate.transport"] == transport
        assert got["wsgate.sub_hash"] == sub_hash
    assert events["crash"].status.status_code is StatusCode.ERROR
    assert events["deny"].status.status_code is StatusCode.UNSET, "a client's error is not ours"

    (broadcast,) = spans_named(spans, "wsgate.broadcast")
    assert attributes(broadcast) == {
        "wsgate.namespace": "/traced",
        "wsgate.event": "said",
        "wsgate.room": True,
        "wsgate.outcome": "ok",
    }
    assert broadcast.kind is SpanKind.PRODUCER
    assert broadcast.parent is not None
    assert broadcast.parent.span_id == events["say"].context.span_id, "a child of its event"


async def test_no_span_holds_a_token_a_raw_sub_or_a_connection_id(
    transport: str, exporter: tuple[InMemorySpanExporter, TracerProvider]
) -> None:
    memory, provider = exporter
    port = free_port()
    app = App([Traced()], settings_for(port), tracer_provider=provider)
    token = make_token(SUB)
    expired = make_token(SUB, ttl=-60)
    async with serve(app, port) as url:
        async with connect(transport, url, token=token, namespace="/traced") as client:
            await client.call("say")
            await client.call("crash")  # its exception text holds the sub
            conn_id = app.runtime.fanout.connections and next(iter(app.runtime.fanout.connections))
        with pytest.raises(Refused):
            async with connect(transport, url, token=expired, namespace="/traced"):
                pass
    dumped = "\n".join(span.to_json() for span in memory.get_finished_spans())
    assert dumped.count('"name": "wsgate.') >= 4
    for secret in (token, expired, SUB, SECRET, conn_id, "lobby"):
        assert secret
        assert secret not in dumped
    # Nor any part of the token: its signature, or its payload segment.
    for part in token.split("."):
        assert part not in dumped


async def test_the_sub_hash_is_keyed_by_trace_sub_key(
    exporter: tuple[InMemorySpanExporter, TracerProvider],
) -> None:
    from wsgate.testing import AppClient

    memory, provider = exporter
    settings = Settings(jwt_secret=SECRET, trace_sub_key="a-key-shared-by-every-node")
    assert "a-key-shared" not in repr(settings), "held as a secret"
    app = App([Traced()], settings, tracer_provider=provider)
    async with AppClient(app) as client:
        async with client.websocket(sub=SUB, namespace="/traced") as ws:
            await ws.call("say")
    (event,) = spans_named(memory.get_finished_spans(), "wsgate.event")
    assert attributes(event)["wsgate.sub_hash"] == expected_hash(SUB, b"a-key-shared-by-every-node")


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


_APP = """
import asyncio, json
from wsgate import App, Context, Gateway, Settings, subscribe
from wsgate.testing import AppClient

class Echo(Gateway):
    @subscribe("echo")
    async def echo(self, ctx: Context, body: dict) -> dict:
        return body

def make_app():
    return App([Echo()], Settings(jwt_secret="a-test-secret-that-is-long-enough-0123456789"))

async def exercise(app):
    async with AppClient(app) as client, client.socketio(sub="zed") as zed:
        return await zed.call("echo", {"a": 1})
"""


def test_the_global_provider_turns_spans_on() -> None:
    out = run_python(
        _APP
        + """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

app = make_app()               # built before the SDK is configured, as often happens
memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
trace.set_tracer_provider(provider)
reply = asyncio.run(exercise(app))
print(json.dumps({"reply": reply, "spans": [s.name for s in memory.get_finished_spans()]}))
"""
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"reply": {"a": 1}, "spans": ["wsgate.connect", "wsgate.event"]}


def test_without_an_sdk_there_are_no_spans_and_without_the_api_nothing_is_imported() -> None:
    out = run_python(
        _APP
        + """
app = make_app()
reply = asyncio.run(exercise(app))
print(json.dumps({"reply": reply, "tracer": repr(app.runtime.tracing.tracer)}))
"""
    )
    assert json.loads(out.strip().splitlines()[-1]) == {"reply": {"a": 1}, "tracer": "None"}

    hidden = """
import importlib.abc, sys

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ImportError(name)

sys.meta_path.insert(0, Hide())
"""
    out = run_python(
        hidden
        + _APP
        + """
from wsgate.core import tracing
app = make_app()
reply = asyncio.run(exercise(app))
print(json.dumps({
    "reply": reply,
    "available": tracing.available(),
    "imported": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
}))
"""
    )
    assert json.loads(out.strip().splitlines()[-1]) == {
        "reply": {"a": 1},
        "available": False,
        "imported": [],
    }
