"""Micro-benchmark: what the core costs per event, from the port to the reply.

Why: dependency injection, interceptors and tracing all sit on the
per-event path, and issue 12 asks that an event without them costs what it
did before. This admits one connection through the transport port (a
transport link that sends nowhere), then times ``port.handle(connection,
event, payload)`` in a loop: rate limit, dispatch, validation, guards,
interceptors, dependencies, the handler, ``to_wire`` and the metrics, with
no socket and no JSON. Figures are nanoseconds of this thread's CPU time
per event (``time.thread_time``: time the process waits for a core on a
busy machine is not counted, which wall time would), the best of several
rounds, to compare runs made on the same machine minutes apart (e.g.
before and after a change, with ``PYTHONPATH`` pointing at another
checkout's ``src``). Never asserted.

    .venv/bin/python bench/event_cost.py [--events 20000] [--rounds 7]

Cases that need features an older checkout lacks are skipped there.
"""

# No ``from __future__ import annotations``: the gateway below is built in a
# function, and its ``Annotated[..., Depends(...)]`` hints must be evaluated
# where its local names are visible.
import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from pydantic import BaseModel

import wsgate
from wsgate import App, Context, Gateway, Settings, subscribe
from wsgate.core.handshake import Handshake

SECRET = "bench-secret-long-enough-for-hs256-0123456789abcdef"


class Echo(BaseModel):
    text: str


class NullLink:
    """A transport that sends nowhere: the benchmark measures the core alone."""

    name = "bench"

    async def send(self, conn_id: str, namespace: str, event: str, data: Any) -> None:
        return None

    async def broadcast(
        self, namespace: str, event: str, data: Any, *, room: str | None, skip: str | None
    ) -> None:
        return None

    async def enter_room(self, conn_id: str, namespace: str, room: str) -> None:
        return None

    async def leave_room(self, conn_id: str, namespace: str, room: str) -> None:
        return None

    async def close(self, conn_id: str, namespace: str, reason: str) -> None:
        return None


def gateways() -> tuple[list[Gateway], list[tuple[str, str, Any]]]:
    """The gateways and the cases ``(label, event, payload)``."""

    class Plain(Gateway):
        @subscribe("ping")
        async def ping(self, ctx: Context) -> str:
            return "pong"

        @subscribe("echo")
        async def echo(self, ctx: Context, body: Echo) -> Echo:
            return body

    cases: list[tuple[str, str, Any]] = [
        ("ping (no body)", "ping", None),
        ("echo (pydantic body)", "echo", {"text": "hello"}),
    ]
    depends = getattr(wsgate, "Depends", None)
    use_interceptors = getattr(wsgate, "use_interceptors", None)
    if depends is None or use_interceptors is None:
        return [Plain()], cases
    body = {"text": "hello"}
    cases += [
        ("echo (beside the cases below)", "echo_same", body),
        ("echo + 1 event-scoped Depends", "echo_di", body),
        ("echo + 1 async-generator Depends", "echo_gen", body),
        ("echo + 1 connection-scoped Depends", "echo_conn", body),
        ("echo + 1 interceptor", "echo_icpt", body),
    ]
    return [Plain(), _with_features(depends, use_interceptors)], cases


def _with_features(depends: Any, use_interceptors: Callable[..., Any]) -> Gateway:
    # Built here, with the names looked up at run time, so that this file
    # also runs against a checkout without dependency injection.

    def settings() -> dict[str, int]:
        return {"limit": 3}

    async def session() -> AsyncIterator[str]:
        yield "session"

    def service(ctx: Context) -> str:
        return "service of " + ctx.sub

    async def passthrough(ctx: Context, call_next: Any) -> Any:
        return await call_next()

    class Featured(Gateway, namespace="/featured"):
        @subscribe("echo_same")
        async def echo_same(self, ctx: Context, body: Echo) -> Echo:
            return body

        @subscribe("echo_di")
        async def echo_di(
            self, ctx: Context, body: Echo, conf: Annotated[dict[str, int], depends(settings)]
        ) -> Echo:
            return body

        @subscribe("echo_gen")
        async def echo_gen(
            self, ctx: Context, body: Echo, db: Annotated[str, depends(session)]
        ) -> Echo:
            return body

        @subscribe("echo_conn")
        async def echo_conn(
            self,
            ctx: Context,
            body: Echo,
            svc: Annotated[str, depends(service, scope="connection")],
        ) -> Echo:
            return body

        @use_interceptors(passthrough)
        @subscribe("echo_icpt")
        async def echo_icpt(self, ctx: Context, body: Echo) -> Echo:
            return body

    return Featured()


async def measure(events: int, rounds: int, only: tuple[str, ...] = ()) -> list[tuple[str, float]]:
    """``(case, ns per event)``, the best round of each; ``only``: the cases of those events."""
    gateway_list, cases = gateways()
    if only:
        cases = [case for case in cases if case[1] in only]
    app = App(gateway_list, Settings(jwt_secret=SECRET, rate_limit=1e12))
    port = app.runtime.port
    token, _ = app.token_issuer().issue("bench")
    link = NullLink()
    connections = {}
    for namespace in port.namespaces():
        handshake = Handshake(auth={"token": token}, remote_addr="127.0.0.1", transport="bench")
        connections[namespace] = await port.admit(namespace, handshake, f"c{namespace}", link)
    runs = []
    for label, event, payload in cases:
        namespace = "/" if event in ("ping", "echo") else "/featured"
        connection = connections[namespace]
        reply = await port.handle(connection, event, payload)
        assert not reply.failed, (event, reply)
        runs.append((label, connection, event, payload))
    best = {label: float("inf") for label, *_ in runs}
    # Rounds interleave the cases, so a busy moment of the machine weighs on
    # all of them alike; the best round of each is the least disturbed one.
    for _ in range(rounds):
        for label, connection, event, payload in runs:
            started = time.thread_time()
            for _ in range(events):
                await port.handle(connection, event, payload)
            best[label] = min(best[label], (time.thread_time() - started) / events)
    results = [(label, seconds * 1e9) for label, seconds in best.items()]
    for connection in connections.values():
        await port.release(connection, "bench_over")
    await app.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    results = asyncio.run(measure(args.events, args.rounds))
    print(f"wsgate from {wsgate.__file__}")
    print(f"{'case':<40} {'ns/event':>10}")
    for label, ns in results:
        print(f"{label:<40} {ns:>10.0f}")


if __name__ == "__main__":
    main()
