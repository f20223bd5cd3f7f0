"""Request heads of bounded size: uvicorn HTTP protocols that answer 431 to oversized headers.

uvicorn (0.54) with httptools, the parser ``uvicorn[standard]`` picks, reads
a request head of any size: a 10 MB header was accepted, and 1,340 Engine.IO
sessions holding 1 MB headers each took a server from 316 MB to 2.8 GB before
anyone authenticated. With h11 the head is bounded (16 KiB by default) but
the number of headers is not. And a WebSocket upgrade is parsed a second
time by the ``websockets`` library, whose own limits (8,192 bytes a line,
128 headers) end in no answer at all: the socket just stays open.

The subclasses here bound every head before the application, or the
WebSocket library, sees it:

- ``max_bytes``: the whole head (request line and headers), counted as the
  bytes arrive, so a 10 MB header is refused after ``max_bytes``, not after
  10 MB;
- ``max_count``: the number of header fields;
- :data:`MAX_LINE_BYTES`: one header line (``name: value``) or the request
  line, the limit every server shares (Apache's 8,190, nginx's 8 KiB
  buffers), and the largest line the ``websockets`` handshake parser takes.

A head over a limit is answered ``431 Request Header Fields Too Large`` (a
request line over :data:`MAX_LINE_BYTES`: ``414 URI Too Long``) with
``connection: close``, and the connection is closed at once; the
application never runs and nothing is logged (a flood of big heads must
not become a flood of log lines; ``wsgate_request_heads_refused_total``
counts them when the App is the one served).

Why not a library: the parsers are the libraries (httptools, h11); what is
missing is the policy around them, and uvicorn offers no hook for it.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "DEFAULT_HEAD_LIMITS",
    "MAX_LINE_BYTES",
    "H11HeadLimits",
    "HeadLimits",
    "HttpToolsHeadLimits",
    "head_refusal",
]

MAX_LINE_BYTES = 8190
"""Largest request line or ``name: value`` header line, without its CRLF.

With its CRLF a line is then at most 8,192 bytes, what the ``websockets``
handshake parser (``WEBSOCKETS_MAX_LINE_LENGTH``) reads after an upgrade.
"""


class HeadLimits(NamedTuple):
    """Bounds of one request head."""

    max_bytes: int = 32 * 1024
    """The request line and every header line, with their line ends."""
    max_count: int = 100
    """Header fields (Apache's ``LimitRequestFields``; ``websockets`` stops at 128)."""


DEFAULT_HEAD_LIMITS = HeadLimits()


def head_refusal(status: int) -> bytes:
    """The whole response to a refused head: ``status``, ``connection: close``, a short text."""
    phrase = http.HTTPStatus(status).phrase
    body = (phrase + "\n").encode("ascii")
    return b"".join(
        [
            f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii"),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


LINGER_SECONDS = 2.0
"""How long a refused connection's input is still read (and dropped) after the answer."""

LINGER_BYTES = 16 * 1024 * 1024
"""How much of it, at most."""


class _Linger(asyncio.Protocol):
    """Reads and drops what a refused client still sends, for a short while, then closes.

    Closing a socket whose receive buffer holds unread bytes makes the
    kernel answer with a reset, and a reset can reach the client before it
    read the 431 (measured: a client still sending a 10 MB header got a
    reset and no answer). So the answer is followed by a half close (the
    client reads it, then end of file) and the client's bytes are drained,
    at no memory cost, until it closes too, ``LINGER_SECONDS`` pass or
    ``LINGER_BYTES`` were dropped: nginx's ``lingering_close``, bounded.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._left = LINGER_BYTES
        self._timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, self._close)

    def data_received(self, data: bytes) -> None:
        self._left -= len(data)
        if self._left <= 0:
            self._close()

    def eof_received(self) -> bool:
        self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()

    def _close(self) -> None:
        self._timer.cancel()
        if self._transport.get_write_buffer_size():
            # A client that does not read would keep a graceful close waiting forever.
            self._transport.abort()
        else:
            self._transport.close()


def _refuse(transport: asyncio.Transport, status: int) -> None:
    """Answer ``status``, stop sending, and close once the client had the time to read it."""
    if transport.is_closing():
        return
    transport.write(head_refusal(status))
    if not transport.can_write_eof():
        transport.close()
        return
    transport.write_eof()
    transport.set_protocol(_Linger(transport))
    _resume(transport)
    # Once more after the caller returns: uvicorn's h11 protocol pauses reading
    # on the way out (the refusal is reported to it as PAUSED).
    asyncio.get_running_loop().call_soon(_resume, transport)


def _resume(transport: asyncio.Transport) -> None:
    if not transport.is_closing() and not transport.is_reading():
        transport.resume_reading()


class HttpToolsHeadLimits(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads (``head_limits``).

    httptools keeps a header value in its own buffer until the value ends,
    so a long header is only seen when it is complete. The bytes of a head
    are therefore counted here, before they reach the parser: while a head
    is being read, at most what is left of ``max_bytes`` is fed at a time.
    The line and count limits are checked in the parser's callbacks; a
    refusal found there sets ``_wsgate_refused``, which the callbacks that
    would start the application or the upgrade respect, and the answer is
    sent when the parser returns (raising from a callback would make
    uvicorn answer 400 and log a warning instead).
    """

    head_limits: ClassVar[HeadLimits] = DEFAULT_HEAD_LIMITS
    _wsgate_head_bytes: int
    _wsgate_header_count: int
    _wsgate_in_head: bool
    _wsgate_refused: int

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._wsgate_head_bytes = 0
        self._wsgate_header_count = 0
        self._wsgate_in_head = True
        self._wsgate_refused = 0
        super().connection_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self._wsgate_refused:
            return  # refused, answer pending: nothing more is parsed or kept
        limit = self.head_limits.max_bytes
        while data and self._wsgate_in_head:
            room = limit - self._wsgate_head_bytes
            if room <= 0:
                self._wsgate_refused = 431
                break
            chunk, data = data[:room], data[room:]
            self._wsgate_head_bytes += len(chunk)
            super().data_received(chunk)
            if self._wsgate_refused or self.transport.is_closing():
                break
            protocol = self.transport.get_protocol()
            if protocol is not self:  # upgraded: the rest is the WebSocket's
                self._upgraded()
                if data:
                    protocol.data_received(data)  # type: ignore[attr-defined]
                return
        else:
            if data and not self._wsgate_refused:
                super().data_received(data)
        if self._wsgate_refused:
            self._answer_refusal()

    def _upgraded(self) -> None:
        """This protocol is done: the connection now belongs to the WebSocket protocol.

        httptools' parser holds this protocol's bound callbacks, a reference
        cycle that uvicorn breaks in ``connection_lost``; an upgraded
        connection's loss goes to the WebSocket protocol instead, so the cycle
        (the protocol, its parser, the request's scope and headers: ~20
        objects per websocket) was left to the garbage collector, whose
        young-generation passes were ~4% of a connect's CPU. Broken here the
        same way.
        """
        self.parser = None  # type: ignore[assignment]

    def _answer_refusal(self) -> None:
        """Send the refusal now, or after the responses still owed (HTTP answers in order)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self.flow.pause_reading()  # on_response_complete answers
            return
        self.connections.discard(self)
        _refuse(self.transport, self._wsgate_refused)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._wsgate_refused:
            self._answer_refusal()

    def on_message_begin(self) -> None:
        self._wsgate_header_count = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._wsgate_refused:
            return
        super().on_url(url)
        if len(self.url) > MAX_LINE_BYTES:
            self._wsgate_refused = 414

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._wsgate_refused:
            return
        self._wsgate_header_count += 1
        too_many = self._wsgate_header_count > self.head_limits.max_count
        if too_many or len(name) + 2 + len(value) > MAX_LINE_BYTES:
            self._wsgate_refused = 431
        else:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._wsgate_refused:
            return
        self._wsgate_in_head = False
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        if not self._wsgate_refused:
            super().handle_websocket_upgrade()

    def on_body(self, body: bytes) -> None:
        if not self._wsgate_refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._wsgate_refused:
            return
        # The next bytes are the next request's head.
        self._wsgate_in_head = True
        self._wsgate_head_bytes = 0
        super().on_message_complete()


class _BoundedH11Connection(h11.Connection):
    """h11's connection that also refuses a head with too many or too long lines.

    h11 bounds the head's bytes itself (``max_incomplete_event_size``, its
    error hint is 431); the count and line limits are checked on the parsed
    request. A refused head is answered through ``refuse`` (the protocol's),
    and ``PAUSED`` returned: uvicorn then stops reading and handling events,
    where an error would have made it answer 400 and log a warning per
    request, a log line an attacker could repeat at will.
    """

    def __init__(self, limits: HeadLimits, refuse: Callable[[int], None]) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limits.max_bytes)
        self.limits = limits
        self.refusal = 0
        self._refuse = refuse

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        if self.refusal:
            return h11.PAUSED
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint not in (414, 431):
                raise
            return self._refused(exc.error_status_hint)
        if isinstance(event, h11.Request):
            if len(event.method) + len(event.target) + 9 > MAX_LINE_BYTES:
                return self._refused(414)
            if len(event.headers) > self.limits.max_count or any(
                len(name) + 2 + len(value) > MAX_LINE_BYTES for name, value in event.headers
            ):
                return self._refused(431)
        return event

    def _refused(self, status: int) -> type[h11.PAUSED]:
        self.refusal = status
        self._refuse(status)
        return h11.PAUSED


class H11HeadLimits(H11Protocol):
    """uvicorn's h11 protocol with bounded request heads (``head_limits``).

    uvicorn answers any h11 protocol error with 400 (and one warning line);
    a head over a limit is answered 431 (or 414) instead, without a line.
    """

    head_limits: ClassVar[HeadLimits] = DEFAULT_HEAD_LIMITS
    conn: h11.Connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Replaced before any byte is read; uvicorn reuses it for every request.
        self.conn = _BoundedH11Connection(self.head_limits, self._refuse_head)
        super().connection_made(transport)  # type: ignore[arg-type]

    def _refuse_head(self, status: int) -> None:
        self.connections.discard(self)
        _refuse(self.transport, status)
