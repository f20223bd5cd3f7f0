"""An Engine.IO v4 server on plain ASGI: handshake, long-polling, websocket, upgrade, close.

The protocol is the ``socketio/engine.io-protocol`` README; the official
test suite of that repository passes against ``python -m wsgate.conformance
engineio``. What the layer above (Socket.IO) sees is :class:`EngineHandler`:
a session opened, a message received, a session closed.

Limits that are the engine's own, whatever runs above it:

- at most one GET parked per session: a second one is answered 400 and the
  session closed (the parked one gets ``1``), as the protocol asks; a parked
  GET ends after ``ping_interval`` at the latest (a ping is due by then)
  and when its session closes;
- a POST body is refused (HTTP 413, session closed) past ``max_payload``
  bytes, from its ``Content-Length`` or while it is read, never read whole
  first; one POST at a time per session;
- a websocket message over ``max_payload`` closes the session (1009);
- a websocket opened to upgrade a session must send its ``2probe`` and then
  ``5`` within ``upgrade_timeout``, or it is closed; one upgrade at a time;
- a malformed packet closes its session and counts in :attr:`EngineServer.malformed`,
  without a traceback in the log;
- each session's outbox is bounded (:class:`~wsgate.transports.engineio.session.Session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

import orjson
from starlette.types import Message, Receive, Scope, Send

from wsgate.transports.engineio.packet import (
    PacketError,
    PacketType,
    decode,
    decode_payload,
    encode_payload,
)
from wsgate.transports.engineio.session import Session, SessionState, Transport

__all__ = ["EngineConfig", "EngineHandler", "EngineServer", "OpenRefused"]

log = logging.getLogger("wsgate.engineio")

UPGRADE_SETTLE: Final = 0.05
"""Seconds a GET that arrives mid-upgrade waits to learn whether the upgrade completes."""

_TEXT: Final = (b"content-type", b"text/plain; charset=UTF-8")
_JSON: Final = (b"content-type", b"application/json")

# Engine.IO's own error codes (engine.io-protocol README, "Errors").
_UNKNOWN_TRANSPORT: Final = (0, "Transport unknown")
_UNKNOWN_SID: Final = (1, "Session ID unknown")
_BAD_METHOD: Final = (2, "Bad handshake method")
_BAD_REQUEST: Final = (3, "Bad request")
_BAD_VERSION: Final = (5, "Unsupported protocol version")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The engine's parameters; the defaults are Engine.IO's own, apart from the bounds."""

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    max_payload: int = 1_000_000
    """Largest POST body or websocket message, in bytes (advertised as ``maxPayload``)."""
    max_queued_frames: int = 1024
    """Frames waiting for one client before it counts as not reading at all."""
    upgrade_timeout: float = 10.0
    """Seconds an upgrading websocket has for its ``2probe`` and ``5``."""
    cors: Callable[[str, Scope], bool] | None = None
    """Judges a polling request's ``Origin``: allowed ones get the CORS headers."""


class OpenRefused(Exception):
    """Raised by :meth:`EngineHandler.open` to refuse a new session with an HTTP answer."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class EngineHandler(Protocol):
    """What the engine tells the layer above."""

    def open(self, session: Session, scope: Scope) -> None:
        """A session is about to open (may raise :class:`OpenRefused`)."""

    async def message(self, session: Session, data: str | bytes) -> None:
        """One MESSAGE packet's data (binary messages as bytes)."""

    def closing(self, session: Session, reason: str) -> None:
        """The session stops (once); what it queued may still be going out."""


class EngineServer:
    """The ASGI app of one Engine.IO endpoint (the caller routes its path here)."""

    def __init__(self, handler: EngineHandler, config: EngineConfig) -> None:
        self.handler = handler
        self.sessions: dict[str, Session] = {}
        self.malformed = 0
        """Malformed packets received (each closed its session)."""
        self.on_malformed: Callable[[], None] = lambda: None
        """Called for each malformed packet: the binding counts it in the App's metrics."""
        self.configure(config)

    def configure(self, config: EngineConfig) -> None:
        """Use ``config`` for the sessions opened from now on."""
        self.config = config
        self._handshake = {
            "pingInterval": round(config.ping_interval * 1000),
            "pingTimeout": round(config.ping_timeout * 1000),
            "maxPayload": config.max_payload,
        }

    # -- sessions -----------------------------------------------------------------------

    def _new_session(self, transport: Transport, scope: Scope) -> Session:
        session = Session(
            secrets.token_urlsafe(15), transport, self.config, self._closing, self._finished
        )
        self.handler.open(session, scope)
        self.sessions[session.sid] = session
        return session

    def _open_packet(self, session: Session, upgrades: list[str]) -> str:
        body = {"sid": session.sid, "upgrades": upgrades, **self._handshake}
        return "0" + orjson.dumps(body).decode()

    def _closing(self, session: Session, reason: str) -> None:
        self.handler.closing(session, reason)

    def _finished(self, session: Session) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]

    def _malformed(self, session: Session, what: str) -> None:
        self.malformed += 1
        self.on_malformed()
        log.debug("closing an Engine.IO session: malformed packet (%s)", what)
        session.close("parse_error", flush=False)

    async def _packet(self, session: Session, kind: PacketType, data: str | bytes) -> None:
        if kind is PacketType.MESSAGE:
            await self.handler.message(session, data)
        elif kind is PacketType.PONG:
            session.pong()
        elif kind is PacketType.CLOSE:
            session.close("client_disconnect", by_client=True)
        # PING (a v3 client), UPGRADE and NOOP outside an upgrade: nothing to do.

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = dict(parse_qsl((scope.get("query_string") or b"").decode("latin-1")))
        if scope["type"] == "websocket":
            await self._websocket(scope, query, receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        cors = self._cors_headers(scope)
        if method == "OPTIONS":
            await _respond(send, 204, b"", [*cors, *_preflight_headers(scope)])
            return
        error = _check_query(query, "polling")
        if error is not None:
            await _error(send, error, cors)
            return
        sid = query.get("sid")
        if sid is None:
            if method != "GET":
                await _error(send, _BAD_METHOD, cors)
                return
            await self._handshake_polling(scope, send, cors)
            return
        session = self.sessions.get(sid)
        if session is None or session.state is SessionState.CLOSED:
            await _error(send, _UNKNOWN_SID, cors)
            return
        if session.transport is not Transport.POLLING:
            # Refused after a pause, so that the refusal never overtakes what the
            # websocket sent just before (``3probe``) on the client's side.
            await asyncio.sleep(UPGRADE_SETTLE)
            await _error(send, _BAD_REQUEST, cors)
            return
        if method == "GET":
            await self._get(session, send, cors)
        elif method == "POST":
            await self._post(session, scope, receive, send, cors)
        else:
            await _error(send, _BAD_METHOD, cors)

    def _cors_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        judge = self.config.cors
        if judge is None:
            return []
        origin = _header(scope, b"origin")
        if origin is None or not judge(origin, scope):
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]

    async def _handshake_polling(
        self, scope: Scope, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            session = self._new_session(Transport.POLLING, scope)
        except OpenRefused as refused:
            await _respond(send, refused.status, orjson.dumps(dict(refused.body)), [_JSON, *cors])
            return
        session.start_heartbeat()
        await _respond(
            send, 200, self._open_packet(session, ["websocket"]).encode(), [_TEXT, *cors]
        )

    async def _get(self, session: Session, send: Send, cors: list[tuple[bytes, bytes]]) -> None:
        if session.polled:
            # At most one GET parked per session: the protocol closes the session.
            await _error(send, _BAD_REQUEST, cors)
            session.close("transport_error", flush=False)
            return
        frames: list[str | bytes] = []
        if session.state is not SessionState.UPGRADING:
            frames = await session.collect(self.config.ping_interval)
        if session.state is SessionState.UPGRADING:
            # A GET racing the client's "5" (sent right behind its "2probe"):
            # the answer depends on which one wins, so let the upgrade settle.
            settled = session.upgrade_settled
            if settled is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(settled.wait(), UPGRADE_SETTLE)
            if session.transport is not Transport.POLLING:
                session.requeue([f for f in frames if f != "6"])
                await asyncio.sleep(UPGRADE_SETTLE)
                await _error(send, _BAD_REQUEST, cors)
                return
        if not frames:
            frames = ["6"]
        await _respond(send, 200, encode_payload(frames).encode(), [_TEXT, *cors])

    async def _post(
        self,
        session: Session,
        scope: Scope,
        receive: Receive,
        send: Send,
        cors: list[tuple[bytes, bytes]],
    ) -> None:
        if session.posting or not session.accepting:
            await _error(send, _BAD_REQUEST, cors)
            return
        session.posting = True
        try:
            body = await _read_body(scope, receive, self.config.max_payload)
            if body is None:
                await _respond(send, 413, b"Payload Too Large", [_TEXT, *cors])
                session.close("payload_too_large", flush=False)
                return
            try:
                packets = decode_payload(body.decode("utf-8"))
            except (UnicodeDecodeError, PacketError) as exc:
                await _error(send, _BAD_REQUEST, cors)
                self._malformed(session, type(exc).__name__)
                return
            for kind, data in packets:
                if session.backed_up:
                    await session.caught_up()  # the GETs drain what the last packets queued
                if not session.accepting:
                    break
                await self._packet(session, kind, data)
            await _respond(send, 200, b"ok", [(b"content-type", b"text/html"), *cors])
        finally:
            session.posting = False

    async def _websocket(
        self, scope: Scope, query: dict[str, str], receive: Receive, send: Send
    ) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if _check_query(query, "websocket") is not None:
            await send({"type": "websocket.close", "code": 1008})
            return
        sid = query.get("sid")
        if sid is not None:
            await self._upgrade(sid, receive, send)
            return
        try:
            session = self._new_session(Transport.WEBSOCKET, scope)
        except OpenRefused as refused:
            # Accepting is needed to deliver a close the client can read.
            await send({"type": "websocket.accept"})
            reason = str(refused.body.get("code", ""))[:120]
            await send({"type": "websocket.close", "code": 1013, "reason": reason})
            return
        try:
            await send({"type": "websocket.accept"})
            session.attach_websocket(send, fresh=True)
            session.send(self._open_packet(session, []))
            session.start_heartbeat()
            await self._read_websocket(session, receive)
        except OSError:
            pass
        finally:
            session.close("transport_close", flush=False)

    async def _read_websocket(self, session: Session, receive: Receive) -> None:
        limit = self.config.max_payload
        while True:
            if session.backed_up:
                await session.caught_up()
            message = await receive()
            if message["type"] != "websocket.receive":
                if session.accepting:
                    session.close(_disconnect_reason(message), flush=False)
                return
            if not session.accepting:
                continue
            frame: str | bytes | None = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            if len(frame) > limit or (isinstance(frame, str) and len(frame.encode()) > limit):
                log.info("closing an Engine.IO session: a message over max_payload")
                session.close("payload_too_large", flush=False)
                continue
            try:
                kind, data = decode(frame)
            except PacketError:
                self._malformed(session, "unknown packet type")
                continue
            await self._packet(session, kind, data)

    async def _upgrade(self, sid: str, receive: Receive, send: Send) -> None:
        """polling -> websocket: ``2probe``/``3probe``, the parked GET gets ``6``, then ``5``."""
        session = self.sessions.get(sid)
        if (
            session is None
            or session.transport is not Transport.POLLING
            or session.state is not SessionState.OPEN
        ):
            # Accepted first: a close before accept is an HTTP 403 the client reports
            # as an error, where the protocol wants this socket simply closed.
            await send({"type": "websocket.accept"})
            await asyncio.sleep(UPGRADE_SETTLE)
            await _close_quietly(send)
            return
        session.state = SessionState.PROBING
        session.upgrade_settled = asyncio.Event()
        upgraded = False
        try:
            await send({"type": "websocket.accept"})
            deadline = asyncio.get_running_loop().time() + self.config.upgrade_timeout
            probe = await _next_text(receive, deadline)
            if probe != "2probe" or session.state is not SessionState.PROBING:
                return
            await send({"type": "websocket.send", "text": "3probe"})
            session.state = SessionState.UPGRADING
            session.answer_poll_with_noop()
            done = await _next_text(receive, deadline)
            if done != "5" or session.state is not SessionState.UPGRADING:
                return
            session.state = SessionState.OPEN
            session.answer_poll_with_noop()
            session.attach_websocket(send)
            session.upgrade_settled.set()
            upgraded = True
            await self._read_websocket(session, receive)
        except OSError:
            pass
        finally:
            if upgraded:
                session.close("transport_close", flush=False)
            else:
                if session.state in (SessionState.PROBING, SessionState.UPGRADING):
                    session.state = SessionState.OPEN
                session.upgrade_settled.set()
                await _close_quietly(send)


async def _next_text(receive: Receive, deadline: float) -> str | None:
    """The next text message before ``deadline``; None on a timeout, a disconnect or bytes."""
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        return None
    try:
        message = await asyncio.wait_for(receive(), remaining)
    except TimeoutError:
        return None
    if message["type"] != "websocket.receive":
        raise OSError("websocket gone during an upgrade")
    text = message.get("text")
    return text if isinstance(text, str) else None


async def _close_quietly(send: Send) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "websocket.close", "code": 1000})


def _check_query(query: Mapping[str, str], transport: str) -> tuple[int, str] | None:
    if query.get("EIO") != "4":
        return _BAD_VERSION
    if query.get("transport") != transport:
        return _UNKNOWN_TRANSPORT
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _preflight_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    headers = [(b"access-control-allow-methods", b"GET, POST, OPTIONS")]
    requested = _header(scope, b"access-control-request-headers")
    if requested:
        headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
    return headers


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to be over ``limit`` bytes."""
    length = _header(scope, b"content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            raise OSError("client gone while sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, error: tuple[int, str], cors: list[tuple[bytes, bytes]]) -> None:
    body = orjson.dumps({"code": error[0], "message": error[1]})
    await _respond(send, 400, body, [_JSON, *cors])


def _disconnect_reason(message: Message) -> str:
    code = message.get("code", 1005)
    if code in (1000, 1001, 1005):
        return "client_disconnect"
    return "transport_close"
