"""The transport port: the one surface of the core a transport may use.

A transport turns its wire protocol into these calls and nothing else, so
the origin policy, token rules, guards, validation, limits and error
filtering are written once and hold on every transport alike. Transports
import this module only; everything they need from the core is here.

The life of a connection, as a transport drives it::

    slot = port.take_handshake_slot(handshake, ...)      # refused past the caps
    connection = await port.admit(namespace, handshake, conn_id, link, slot=slot)
    await port.submit(connection, event, payload, respond)   # per event: a task, an in-flight cap
    reply = port.oversize(connection, size)              # a message over max_message_bytes
    await port.release(connection, reason)               # the socket is gone (exactly once)

``link`` is the transport's :class:`TransportLink`: how the core sends,
broadcasts, manages rooms and closes. ``respond`` is how the transport puts
one :class:`Reply` on the wire (an ack, an ``id``-matched frame, or an
``exception`` push when the client asked for no reply).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wsgate.codes import CloseReason, Code
from wsgate.core.connection import Connection, ConnectionState, TransportLink
from wsgate.core.handshake import Handshake
from wsgate.core.handshakes import HandshakeSlot
from wsgate.core.json_codec import has_long_integer, loads_strict
from wsgate.core.pipeline import Reply
from wsgate.core.recovery import Missed
from wsgate.core.sessions import audit_connection
from wsgate.errors import BadRequest, ConnectionRefused, InternalError, TooManyRequests
from wsgate.security.limits import utf8_size_over

if TYPE_CHECKING:
    from wsgate.core.runtime import Runtime

__all__ = [
    "BadRequest",
    "CloseReason",
    "Code",
    "Connection",
    "ConnectionRefused",
    "ConnectionState",
    "Handshake",
    "HandshakeSlot",
    "InternalError",
    "Missed",
    "Port",
    "Reply",
    "Responder",
    "Resumption",
    "TransportLink",
    "has_long_integer",
    "loads_strict",
    "message_too_large",
]

log = logging.getLogger("wsgate.port")

Responder = Callable[[Reply], Awaitable[None]]
"""Puts one reply on the wire, the transport's way."""

message_too_large = utf8_size_over
"""``message_too_large(data, limit)``: True when ``data`` is over ``limit`` bytes in UTF-8."""


@dataclass(frozen=True, slots=True)
class Resumption:
    """What :meth:`Port.resume` decided for a newly admitted connection.

    ``pid`` goes in the CONNECT answer (None: recovery is off);
    ``recovered`` says whether an earlier session was taken back, and
    ``missed`` holds the broadcasts to send, in order, right after the
    CONNECT answer.
    """

    pid: str | None
    recovered: bool = False
    missed: tuple[Missed, ...] = ()


class Port:
    """What a transport may ask of the core; one per App."""

    def __init__(self, runtime: Runtime, *, connect_timeout: float, max_message_bytes: int) -> None:
        self._runtime = runtime
        self._dispatcher = runtime.dispatcher
        self._tracing = runtime.tracing
        self.connect_timeout = connect_timeout
        """Seconds from opening a connection to a completed connect (auth included)."""
        self.max_message_bytes = max_message_bytes
        """The largest message accepted; measure before decoding (:func:`message_too_large`)."""

    def attach(self, link: TransportLink) -> None:
        """Register a transport, so broadcasts reach its connections too."""
        self._runtime.fanout.attach(link)

    def namespaces(self) -> tuple[str, ...]:
        """The namespaces gateways serve (any other one is refused at admit)."""
        return tuple(self._runtime.registry)

    def take_handshake_slot(
        self, handshake: Handshake, *, conn_id: str, transport: str, namespace: str | None = None
    ) -> HandshakeSlot:
        """Hold a pending-handshake slot until admitted or gone; refused past the caps.

        The caps are ``max_pending_handshakes`` in total and
        ``max_pending_handshakes_per_address`` per client address. A refusal
        (code ``too_many_connections``) is already counted and audited.
        """
        try:
            return self._runtime.handshakes.take(handshake.remote_addr)
        except ConnectionRefused as refusal:
            self.record_refusal(conn_id, namespace or "-", transport, handshake, refusal)
            raise

    def token_in_handshake(self, handshake: Handshake) -> bool:
        """True when the HTTP request carries a token source (header, cookie, enabled query)."""
        return self._runtime.admission.token_in_handshake(handshake)

    async def admit(
        self,
        namespace: str,
        handshake: Handshake,
        conn_id: str,
        link: TransportLink,
        *,
        slot: HandshakeSlot | None = None,
    ) -> Connection:
        """Verify a handshake and register its connection, or raise :class:`ConnectionRefused`.

        ``slot`` is the handshake's pending slot (released here, whatever
        happens); without one, a slot is held for the duration of the check.
        Every refusal is counted and audited before it is raised; an
        unexpected error is a refusal with code ``unavailable``.
        """
        runtime = self._runtime
        runtime.start()
        if slot is None:
            slot = self.take_handshake_slot(
                handshake, conn_id=conn_id, transport=link.name, namespace=namespace
            )
        with slot:
            return await runtime.admission.admit(namespace, handshake, conn_id, link)

    async def resume(self, connection: Connection, auth: Any) -> Resumption:
        """Connection-state recovery for a connection :meth:`admit` just let in.

        Call it only after ``admit`` succeeded: the token, origin, roles and
        guards were checked as for any connection, so nothing is replayed to
        a client that would not be let in now. ``auth`` is the client's
        CONNECT data; with ``pid`` and ``offset`` strings in it, the session
        ``pid`` is taken back when it belongs to the same ``sub`` and
        namespace, is within ``recovery_window`` and nothing it missed was
        evicted: its rooms are entered again and its missed broadcasts
        returned. Otherwise the connection is new and gets a fresh ``pid``.
        """
        recovery = self._runtime.recovery
        if not recovery.enabled or not connection.live:
            return Resumption(None)
        pid = auth.get("pid") if isinstance(auth, dict) else None
        offset = auth.get("offset") if isinstance(auth, dict) else None
        if not (isinstance(pid, str) and isinstance(offset, str)) or len(pid) > 64:
            return self._fresh(connection)
        sub, namespace = connection.principal.sub, connection.namespace
        recoveries = self._runtime.metrics.recoveries
        saved = await recovery.take(pid, sub=sub, namespace=namespace)
        if saved is None or not connection.live:
            recoveries.labels("new").inc()
            return self._fresh(connection)
        # Rooms first, then what was missed: a broadcast in between arrives live
        # and is also read back; the transport drops the second by its offset.
        fanout = self._runtime.fanout
        joined = [room for room in sorted(saved.rooms) if room not in connection.rooms]
        for room in list(joined):
            try:
                await fanout.join(connection, room)
            except TooManyRequests:  # on_connect already joined up to the cap
                joined.remove(room)
        missed = await recovery.missed(saved, offset)
        if missed is None:
            for room in joined:  # not recovered: a new session, in no room it did not join
                await fanout.leave(connection, room)
            recoveries.labels("new").inc()
            return self._fresh(connection)
        recoveries.labels("recovered").inc()
        connection.recovery_pid = pid
        audit_connection("recovered", connection, missed=len(missed))
        return Resumption(pid, True, missed)

    def _fresh(self, connection: Connection) -> Resumption:
        connection.recovery_pid = self._runtime.recovery.new_pid()
        return Resumption(connection.recovery_pid)

    def refuse(
        self,
        conn_id: str,
        namespace: str,
        transport: str,
        handshake: Handshake,
        code: Code,
        reason: str,
        message: str = "Connection refused",
    ) -> ConnectionRefused:
        """Count and audit a refusal the transport made itself; returns it, to raise or send."""
        refusal = ConnectionRefused(code, message, reason)
        self.record_refusal(conn_id, namespace, transport, handshake, refusal)
        return refusal

    def record_refusal(
        self,
        conn_id: str,
        namespace: str,
        transport: str,
        handshake: Handshake,
        refusal: ConnectionRefused,
    ) -> None:
        self._runtime.admission.record_refusal(conn_id, namespace, transport, handshake, refusal)

    async def submit(
        self, connection: Connection, event: str, payload: Any, respond: Responder
    ) -> None:
        """Run ``event`` in a task of its own and ``respond`` with its reply.

        One task per event, so a slow handler never delays the same client's
        other events. At most ``MAX_IN_FLIGHT`` run at once per connection:
        beyond it this call waits, which pushes back on the client's reader.
        The tasks are the connection's: ending it cancels them before
        ``on_disconnect`` runs.
        """
        await connection.slots.acquire()
        if not connection.live:
            connection.slots.release()
            await respond(await self.handle(connection, event, payload))
            return
        task = asyncio.get_running_loop().create_task(
            self._run(connection, event, payload, respond)
        )
        connection.tasks.add(task)
        task.add_done_callback(lambda done: _event_done(connection, done))

    async def handle(self, connection: Connection, event: str, payload: Any) -> Reply:
        """Run ``event`` inline and return its reply (no task, no in-flight accounting)."""
        if self._tracing.tracer is None:
            return await self._dispatcher.handle(connection, event, payload)
        return await self._dispatcher.handle_traced(connection, event, payload)

    def oversize(self, connection: Connection, size: int) -> dict[str, Any]:
        """The 413 error object for a message of ``size`` bytes, counted and audited."""
        return self._runtime.dispatcher.oversize(connection, size)

    def malformed(self, transport: str) -> None:
        """Count one message that could not be parsed (a metric, not a log line).

        Garbage costs an attacker nothing to send: logging each one (let
        alone its traceback) would turn a flood into log volume and CPU.
        """
        self._runtime.metrics.malformed.labels(transport).inc()

    async def release(self, connection: Connection, reason: str) -> None:
        """The transport's connection is gone: the core forgets it (later calls are no-ops)."""
        await self._runtime.release(connection, reason)

    def connection(self, conn_id: str) -> Connection | None:
        """The live connection ``conn_id`` of this node, if any."""
        return self._runtime.fanout.connections.get(conn_id)

    async def _run(
        self, connection: Connection, event: str, payload: Any, respond: Responder
    ) -> None:
        # Inline rather than a helper: untraced, an event costs one attribute
        # read more than before tracing existed, and no extra call.
        if self._tracing.tracer is None:
            reply = await self._dispatcher.handle(connection, event, payload)
        else:
            reply = await self._dispatcher.handle_traced(connection, event, payload)
        if connection.closed:
            return
        try:
            await respond(reply)
        except (OSError, RuntimeError) as exc:
            log.debug("reply to %s not sent: %r", connection.id, exc)


def _event_done(connection: Connection, task: asyncio.Task[None]) -> None:
    connection.tasks.discard(task)
    connection.slots.release()
    if not task.cancelled() and task.exception() is not None:
        log.error("an event task of %s failed", connection.id, exc_info=task.exception())
