"""Prometheus metrics of one App, in a registry of its own.

A registry per App (not the process-global default) lets tests and
applications run several Apps in one process without name clashes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


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
        self.limit_hits = Counter(
            "wsgate_limit_hits",
            "Requests stopped by a limit (rate, message_size, connections_per_user, handshakes)",
            ["limit"],
            registry=self.registry,
        )
        self.pending_handshakes = Gauge(
            "wsgate_pending_handshakes",
            "Handshakes being verified right now",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
