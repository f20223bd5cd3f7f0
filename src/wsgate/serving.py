"""Running an App under uvicorn the way ``wsgate serve`` and ``wsgate demo`` do.

``run(app, settings)`` adds what a plain ``uvicorn module:app`` lacks: the
connect deadline at the TCP level (idle and half-sent requests are closed),
bounded request heads, log lines without query values or credential headers,
proxy headers believed only from ``trusted_proxies``, a tuned garbage
collector, and a shutdown that closes live sockets with ``server_shutdown``
(close 1001 on ``/ws``) before uvicorn drops them (uvicorn itself would
close websockets with 1012 before the App's lifespan could say why).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import uvicorn

from wsgate.app import apps_within
from wsgate.log_redaction import install_redaction
from wsgate.settings import Settings
from wsgate.transports.deadline import DEFAULT_CONNECT_TIMEOUT, uvicorn_http_protocol
from wsgate.transports.request_head import HeadLimits
from wsgate.transports.ws_protocol import websocket_protocol

__all__ = ["HttpProtocol", "UvicornServer", "WebSocketProtocol", "run", "tune_gc"]


HttpProtocol = uvicorn_http_protocol(DEFAULT_CONNECT_TIMEOUT)
"""uvicorn's HTTP protocol with wsgate's connect deadline and request head limits (defaults).

For ``uvicorn module:app --http wsgate.serving:HttpProtocol`` (see docs/deployment.md).
"""


def _websocket_protocol_class() -> type[asyncio.Protocol] | None:
    chosen = websocket_protocol()
    if isinstance(chosen, type):
        return chosen
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    return AutoWebSocketsProtocol  # type: ignore[return-value]


WebSocketProtocol = _websocket_protocol_class()
"""The websocket protocol ``wsgate serve`` uses (frames coalesced per loop turn), or uvicorn's
own where that needs a newer uvicorn. For ``uvicorn module:app --ws
wsgate.serving:WebSocketProtocol`` (see docs/deployment.md).
"""

GC_GEN0_THRESHOLD = 50_000
"""Allocations between two young-generation collections when serving (CPython's default: 700)."""


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running socket server.

    A broadcast to 1,000 members, or a burst of events, allocates thousands
    of short-lived asyncio objects; at CPython's default threshold (700) the
    young generation is collected several times per message, and each
    collection that reaches the older generations walks every live
    connection's objects again. Profiled, the collector was a third of the
    baseline's fan-out CPU and a fifth of wsgate's (bench/profile_baseline.md).
    Two changes, neither of which changes what is collected, only when:
    ``gc.freeze()`` moves everything alive after start-up (modules, the app,
    its registries) out of the collector's sight for good, and a higher
    young-generation threshold collects the same garbage in fewer, larger
    batches. Memory held by uncollected cycles stays bounded by the threshold.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class UvicornServer(uvicorn.Server):
    """uvicorn's server, closing wsgate's live connections first when it shuts down."""

    async def shutdown(self, sockets: Any = None) -> None:
        for server in self.servers:
            server.close()  # no new connections while the live ones are told why they end
        for app in apps_within(self.config.loaded_app):
            await app.close_connections()
        await super().shutdown(sockets=sockets)


STARTUP_FAILURE = 3
"""Exit status of a server that never started (uvicorn's own command line uses 3)."""


def run(app: Any, settings: Settings | None = None) -> None:
    """Serve ``app`` (a wsgate App, or an ASGI app with one mounted) until interrupted.

    uvicorn picks uvloop and httptools when installed; ``settings`` (the
    App's own by default) gives the address, the connect deadline and the
    trusted proxies.
    """
    if settings is None:
        settings = getattr(app, "settings", None) or Settings()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=uvicorn_http_protocol(
            settings.connect_timeout,
            limits=HeadLimits(settings.max_header_bytes, settings.max_headers),
        ),
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        # Frames written once per connection per loop turn (transports/ws_protocol.py).
        ws=websocket_protocol(),  # "auto" where it needs a newer uvicorn
        ws_max_size=max(4 * settings.max_message_bytes, 1 << 20),
        # No permessage-deflate: each compressing socket holds ~300 KB of zlib state
        # (an idle connection's cost grows tenfold, and churn fragments the heap:
        # the soak saw RSS climb ~0.6 MB/s), and compressing secrets beside
        # attacker-chosen text is the CRIME/BREACH pattern.
        ws_per_message_deflate=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    install_redaction()
    tune_gc()
    server = UvicornServer(config)
    server.run()
    if not server.started:
        # A start-up that failed (a lifespan hook, a port in use) must not exit 0;
        # uvicorn's own command line does this, and older Server.run() does not.
        sys.exit(STARTUP_FAILURE)
