"""Prometheus metrics of one App, in a registry of its own.

A registry per App (not the process-global default) lets tests and
applications run several Apps in one process without name clashes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


def _running_tasks() -> float:
    """Tasks of the running event loop; 0 when read outside one."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return 0.0


class Metrics:
    """Connections, refusals, events, errors, handler latency, sessions and limits.

    Label values are always from a bounded set (reason codes, registered
    event names, status codes): a client must never be able to grow the
    number of time series.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "wsgate_connections",
            "Live connections",
            ["namespace", "transport"],
            registry=self.registry,
        )
        self.connects = Counter(
            "wsgate_connects",
            "Accepted connections",
            ["namespace", "transport"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "wsgate_auth_failures",
            "Refused connections by reason",
            ["reason"],
            registry=self.registry,
        )
        self.disconnects = Counter(
            "wsgate_disconnects",
            "Closed connections by reason",
            ["reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "wsgate_events",
            "Events handled by name and outcome",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "wsgate_errors", "Error replies by status code", ["status"], registry=self.registry
        )
        self.handler_seconds = Histogram(
            "wsgate_handler_seconds",
            "Handler latency",
            ["event"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

        self.session_ends = Counter(
            "wsgate_session_ends",
            "Sessions the server ended, by reason (token_expired, token_revoked)",
            ["reason"],
            registry=self.registry,
        )
        self.refreshes = Counter(
            "wsgate_refreshes",
            "In-band auth:refresh attempts by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.recoveries = Counter(
            "wsgate_recoveries",
            "Socket.IO reconnects that asked for connection-state recovery, by outcome"
            " (recovered, or new: no such session, another user's, expired, past a bound)",
            ["outcome"],
            registry=self.registry,
        )
        self.limit_hits = Counter(
            "wsgate_limit_hits",
            "Requests stopped by a limit (rate, message_size, connections_per_user, handshakes)",
            ["limit"],
            registry=self.registry,
        )
        self.malformed = Counter(
            "wsgate_malformed",
            "Messages that could not be parsed, before or after authentication (never logged"
            " one by one: garbage must not become log lines)",
            ["transport"],
            registry=self.registry,
        )
        self.pending_handshakes = Gauge(
            "wsgate_pending_handshakes",
            "Handshakes in flight right now (verifying, or waiting for their auth or CONNECT)",
            registry=self.registry,
        )
        self.tasks = Gauge(
            "wsgate_tasks",
            "asyncio tasks of the event loop serving /metrics (a leak shows as growth)",
            registry=self.registry,
        )
        self.tasks.set_function(_running_tasks)

        # Labelled children of the per-event metrics, looked up once per label
        # set: ``labels()`` validates and locks on every call, and these two
        # are touched by every event. The label sets are bounded (see above),
        # so the caches are too.
        self._event_counts: dict[tuple[str, str], Any] = {}
        self._handler_timers: dict[str, Any] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: for the per-connection metrics of every handshake."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def count_event(self, event: str, outcome: str) -> None:
        """``events{event, outcome} += 1`` without a ``labels()`` lookup after the first."""
        child = self._event_counts.get((event, outcome))
        if child is None:
            child = self._event_counts[(event, outcome)] = self.events.labels(event, outcome)
        child.inc()

    def observe_handler(self, event: str, seconds: float) -> None:
        """``handler_seconds{event}.observe(seconds)``, its child cached too."""
        child = self._handler_timers.get(event)
        if child is None:
            child = self._handler_timers[event] = self.handler_seconds.labels(event)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
