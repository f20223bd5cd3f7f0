"""Dispatch: what happens to one event of a live connection, whatever the transport.

In order: a closing connection runs nothing; the rate limit, before any
handler work, so a flood costs the server as little as possible; the
built-in ``auth:refresh``; during an expiry grace window, nothing else; an
unknown event is a 404; then the gateway's pipeline (roles -> validation ->
guards -> handler, inside the exception filters). Every outcome is counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from wsgate.codes import Code
from wsgate.core.connection import Connection, ConnectionState, Flood
from wsgate.core.context import Context
from wsgate.core.fanout import Fanout
from wsgate.core.pipeline import Reply, apply_filters, run_event
from wsgate.core.refresh import REFRESH_EVENT, Refresher, unauthorized
from wsgate.core.registry import NamespaceSpec
from wsgate.core.sessions import audit_connection
from wsgate.core.tracing import Tracing, set_outcome
from wsgate.errors import GatewayError, NotFound, PayloadTooLarge, TooManyRequests
from wsgate.metrics import Metrics
from wsgate.security.limits import EventRateLimiter

log = logging.getLogger("wsgate.dispatch")

FLOOD_QUIET = 10.0
"""Seconds without a limit hit after which a connection's flood is over (and audited)."""

FLOOD_LOG_INTERVAL = 60.0
"""A flood that goes on is audited once per this many seconds, with the hits since."""

_OUTCOMES = {
    400: "invalid",
    401: "denied",
    403: "denied",
    404: "not_found",
    413: "too_large",
    429: "rate_limited",
    503: "unavailable",
}


class Dispatcher:
    """Runs events for the connections of one App."""

    def __init__(
        self,
        registry: Mapping[str, NamespaceSpec],
        *,
        rate: EventRateLimiter,
        refresher: Refresher,
        fanout: Fanout,
        metrics: Metrics,
        max_message_bytes: int,
        tracing: Tracing,
    ) -> None:
        self.tracing = tracing
        self.registry = registry
        self.rate = rate
        self.refresher = refresher
        self.fanout = fanout
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes

    async def handle(self, connection: Connection, event: str, payload: Any) -> Reply:
        """Run ``event`` for ``connection``; never raises (but may be cancelled)."""
        if not connection.live:
            # The transport may still hand over an event read before the close;
            # a closing session runs nothing and keeps no state.
            return Reply(unauthorized(Code.UNAUTHORIZED, "Session is closing").to_payload(), True)
        spec = self.registry[connection.namespace]
        handler = spec.handlers.get(event)
        # Unknown names are not used as metric labels: a client could
        # otherwise grow the label set without bound.
        label = event if handler is not None or event == REFRESH_EVENT else "<unknown>"
        if not self.rate.allow(connection.id):
            return self._limited(connection, label, "rate", TooManyRequests())
        if connection.flood is not None:
            self._end_quiet_flood(connection)
        if event == REFRESH_EVENT:
            reply = await self.refresher(connection, payload)
            self.metrics.refreshes.labels("refused" if reply.failed else "ok").inc()
            return self._count(label, reply)
        if connection.state is ConnectionState.EXPIRED:
            error = unauthorized(Code.TOKEN_EXPIRED, "Token expired; send auth:refresh")
            return self._count(label, Reply(error.to_payload(), True))
        ctx = Context(connection, self.fanout, event)
        if handler is None:
            return self._count(
                label, Reply(await apply_filters(NotFound(), ctx, spec.filters), True)
            )
        started = time.perf_counter()
        reply = await run_event(handler, ctx, payload)
        self.metrics.observe_handler(event, time.perf_counter() - started)
        if reply.failed and _status_of(reply.data) in (401, 403):
            audit_connection("denied", connection, level=logging.WARNING, event=event)
        return self._count(label, reply)

    async def handle_traced(self, connection: Connection, event: str, payload: Any) -> Reply:
        """:meth:`handle` inside a ``wsgate.event`` span (the port calls it when tracing is on).

        The span is the current one while the event runs, so spans the
        handler makes (a database call, an HTTP request) are its children.
        """
        tracer = self.tracing.tracer
        if tracer is None:  # turned off since the port looked
            return await self.handle(connection, event, payload)
        with self.tracing.start(tracer, "wsgate.event") as span:
            try:
                reply = await self.handle(connection, event, payload)
            except BaseException:
                if span.is_recording():
                    self._describe(span, connection, event)
                    set_outcome(span, "cancelled", error=False)
                raise
            if span.is_recording():
                self._describe(span, connection, event)
                if not reply.failed:
                    set_outcome(span, "ok", error=False)
                else:
                    status = _status_of(reply.data)
                    outcome = _OUTCOMES.get(status, "error") if status is not None else "error"
                    set_outcome(span, outcome, status, error=status is None or status >= 500)
            return reply

    def _describe(self, span: Any, connection: Connection, event: str) -> None:
        spec = self.registry.get(connection.namespace)
        known = event == REFRESH_EVENT or (spec is not None and event in spec.handlers)
        span.set_attribute("wsgate.namespace", connection.namespace)
        span.set_attribute("wsgate.event", event if known else "<unknown>")
        span.set_attribute("wsgate.transport", connection.transport.name)
        span.set_attribute("wsgate.sub_hash", self.tracing.sub_hash(connection.principal.sub))

    def oversize(self, connection: Connection, size: int) -> dict[str, Any]:
        """The 413 error object for a message over ``max_message_bytes``, counted and audited.

        The transport measures the raw message before decoding it (decoding
        is the cost being avoided) and sends the answer its own way.
        """
        error = PayloadTooLarge(f"Messages are limited to {self.max_message_bytes} bytes")
        reply = self._limited(connection, "<unknown>", "message_size", error)
        data: dict[str, Any] = reply.data
        return data

    def flush_flood_log(self, connection: Connection) -> None:
        """Audit the flood still counting, if any (the connection is ending)."""
        flood, connection.flood = connection.flood, None
        if flood is not None and flood.count:
            self._audit_flood(connection, flood)

    def _limited(
        self, connection: Connection, label: str, limit: str, error: GatewayError
    ) -> Reply:
        """Count a limit hit; a flood is one audit line, with its count, when it is over.

        Over means ``FLOOD_QUIET`` seconds without a hit, a hit of another
        limit, or the end of the connection; a flood that goes on is audited
        every ``FLOOD_LOG_INTERVAL`` seconds. So one client flooding costs
        a bounded number of log lines, whatever its rate.
        """
        self.metrics.limit_hits.labels(limit).inc()
        now = time.monotonic()
        flood = connection.flood
        if flood is not None and (flood.limit != limit or now - flood.last >= FLOOD_QUIET):
            self.flush_flood_log(connection)
            flood = None
        if flood is None:
            flood = connection.flood = Flood(limit, started=now, last=now)
        flood.count += 1
        flood.last = now
        if now - flood.started >= FLOOD_LOG_INTERVAL:
            self._audit_flood(connection, flood)
            connection.flood = Flood(limit, started=now, last=now)
        return self._count(label, Reply(error.to_payload(), True))

    def _end_quiet_flood(self, connection: Connection) -> None:
        flood = connection.flood
        if flood is not None and time.monotonic() - flood.last >= FLOOD_QUIET:
            self.flush_flood_log(connection)

    def _audit_flood(self, connection: Connection, flood: Flood) -> None:
        audit_connection(
            "limited",
            connection,
            level=logging.WARNING,
            limit=flood.limit,
            count=flood.count,
            seconds=round(flood.last - flood.started, 3),
        )

    def _count(self, label: str, reply: Reply) -> Reply:
        """Events by name and outcome, and error replies by status."""
        if not reply.failed:
            self.metrics.count_event(label, "ok")
            return reply
        status = _status_of(reply.data)
        outcome = _OUTCOMES.get(status, "error") if status is not None else "error"
        self.metrics.count_event(label, outcome)
        self.metrics.errors.labels(str(status)).inc()
        return reply


def _status_of(reply: Any) -> int | None:
    error = reply.get("error") if isinstance(reply, dict) else None
    status = error.get("status") if isinstance(error, dict) else None
    return status if isinstance(status, int) else None
