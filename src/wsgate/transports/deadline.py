"""A connect deadline at the TCP level: uvicorn HTTP protocols that drop idle sockets.

The contract gives a client ``connect_timeout`` seconds from opening TCP to a
connected session. The Socket.IO and ``/ws`` layers can only enforce what
happens after a complete HTTP request reached the application; before that,
uvicorn (0.54) has no timeout at all. A client that opens TCP and sends
nothing, or sends a request line a byte at a time (slowloris), holds a socket
and a protocol object forever. ``timeout_keep_alive`` does not help: it is
cancelled by the first byte of the next request, so a keep-alive connection
that sends half of a second request is also kept forever.

The subclasses here add one timer per connection (``loop.call_later``, no
polling). It is armed when the connection is made and again when a response
is complete, and cancelled when a request head has been parsed; a request in
progress, however slow the application, is never cut. After a WebSocket
upgrade the timer is gone and the Socket.IO / WebSocket layer owns the rest
of the deadline. A deadline that passes closes the transport; if the client
is not even reading what was sent (a full write buffer would keep ``close``
waiting), the transport is aborted one more ``timeout`` later.

Only the request *head* is timed, as the HTTP servers' header timeouts do
(nginx ``client_header_timeout``); request bodies are the application's to
bound. TLS handshakes are bounded separately by asyncio's
``ssl_handshake_timeout`` (60 s by default) before ``connection_made`` runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import ClassVar, Literal, cast

import h11
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wsgate.transports.request_head import (
    DEFAULT_HEAD_LIMITS,
    H11HeadLimits,
    HeadLimits,
    HttpToolsHeadLimits,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "H11DeadlineProtocol",
    "HttpToolsDeadlineProtocol",
    "deadline_protocol",
    "uvicorn_http_protocol",
]

log = logging.getLogger("wsgate.transports.deadline")

DEFAULT_CONNECT_TIMEOUT = 10.0


class _Deadline:
    """The one timer of a connection; armed while the server waits for a request head."""

    __slots__ = ("_handle", "_loop", "_timeout", "_transport")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, timeout: float
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._timeout = timeout
        self._handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.cancel()
        self._handle = self._loop.call_later(self._timeout, self._expire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self) -> None:
        self._handle = None
        transport = self._transport
        if transport.is_closing():
            return
        peer = transport.get_extra_info("peername")
        log.debug("closing %s: no complete request head within %.3g s", peer, self._timeout)
        transport.close()
        if transport.get_write_buffer_size():
            # close() waits for the buffer to drain, which a client that does not
            # read would make last forever.
            self._loop.call_later(self._timeout, transport.abort)


class _DeadlineLifecycle(asyncio.Protocol):
    """Arms the deadline when the TCP connection opens and drops it when it closes.

    Shared by both protocol classes below, ahead of uvicorn's class in their MRO.
    """

    connect_timeout: ClassVar[float] = DEFAULT_CONNECT_TIMEOUT
    _wsgate_deadline: _Deadline

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._wsgate_deadline = _Deadline(
            loop, cast("asyncio.Transport", transport), self.connect_timeout
        )
        self._wsgate_deadline.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._wsgate_deadline.cancel()
        super().connection_lost(exc)


class H11DeadlineProtocol(_DeadlineLifecycle, H11Protocol):
    """uvicorn's h11 protocol with the connect deadline (``connect_timeout`` seconds)."""

    def handle_events(self) -> None:
        # h11 reports a parsed head as an h11.Request event inside this loop, and
        # uvicorn answers each one with a new scope dict: a new scope is the signal.
        scope = self.scope
        super().handle_events()
        if self.scope is not scope:
            self._wsgate_deadline.cancel()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._wsgate_deadline.cancel()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        # Armed before uvicorn replays pipelined data, so that a complete
        # pipelined head found there cancels it again in handle_events.
        if not self.transport.is_closing():
            self._wsgate_deadline.arm()
        super().on_response_complete()


class HttpToolsDeadlineProtocol(_DeadlineLifecycle, HttpToolsProtocol):
    """uvicorn's httptools protocol with the connect deadline (``connect_timeout`` seconds)."""

    def on_headers_complete(self) -> None:
        self._wsgate_deadline.cancel()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        self._wsgate_deadline.cancel()
        super().handle_websocket_upgrade()

    def on_response_complete(self) -> None:
        # A queued pipelined request already has its head: no deadline for it.
        waiting_for_head = not self.pipeline
        super().on_response_complete()
        if waiting_for_head and not self.transport.is_closing():
            self._wsgate_deadline.arm()


# uvicorn's protocol -> the same protocol with the deadline, and with bounded request heads.
_IMPLEMENTATIONS: tuple[
    tuple[type[asyncio.Protocol], type[asyncio.Protocol], type[asyncio.Protocol]], ...
] = (
    (HttpToolsProtocol, HttpToolsDeadlineProtocol, HttpToolsHeadLimits),
    (H11Protocol, H11DeadlineProtocol, H11HeadLimits),
)


def deadline_protocol(
    base: type[asyncio.Protocol], timeout: float, limits: HeadLimits = DEFAULT_HEAD_LIMITS
) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's h11 or httptools protocol, or a subclass) with a ``timeout`` deadline.

    Request heads are bounded by ``limits`` too (see
    :mod:`wsgate.transports.request_head`). Raises :class:`TypeError` for any
    other protocol (uvicorn's HTTP/2 ``zttp`` included) rather than serve
    without the deadline, and :class:`ValueError` for a timeout that is not a
    positive number.
    """
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"connect timeout must be a positive number of seconds, not {timeout!r}")
    for uvicorn_protocol, with_deadline, with_limits in _IMPLEMENTATIONS:
        if issubclass(base, uvicorn_protocol):
            # A subclass of uvicorn's protocol keeps its own overrides: the
            # deadline and head-limit classes go first in the MRO, the subclass after.
            bases = (base,) if issubclass(base, with_deadline) else (with_deadline, base)
            if not issubclass(base, with_limits):
                bases = (with_limits, *bases)
            name = f"{base.__name__.removesuffix('Protocol')}DeadlineProtocol"
            namespace = {
                "connect_timeout": float(timeout),
                "head_limits": limits,
                "__module__": __name__,
            }
            return cast("type[asyncio.Protocol]", type(name, bases, namespace))
    raise TypeError(
        f"no connect deadline for {base.__module__}.{base.__qualname__}: "
        "use uvicorn's h11 or httptools HTTP protocol"
    )


def uvicorn_http_protocol(
    timeout: float,
    http: Literal["auto", "h11", "httptools"] = "auto",
    *,
    limits: HeadLimits = DEFAULT_HEAD_LIMITS,
) -> type[asyncio.Protocol]:
    """The class to pass as ``uvicorn.Config(http=...)`` for a ``timeout`` connect deadline.

    ``"auto"`` picks what uvicorn's own ``auto`` picks (httptools when it is
    installed, which ``uvicorn[standard]`` does). Request heads over
    ``limits`` are answered 431 and closed.
    """
    base: type[asyncio.Protocol]
    if http == "auto":
        base = AutoHTTPProtocol
    elif http == "h11":
        base = H11Protocol
    elif http == "httptools":
        base = HttpToolsProtocol
    else:
        raise ValueError(f"http must be 'auto', 'h11' or 'httptools', not {http!r}")
    return deadline_protocol(base, timeout, limits)
