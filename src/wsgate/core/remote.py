"""Operations on connections wherever they live: emit to, disconnect and list across nodes.

A connection lives on one node, but an application asks about a *user* or a
*token*, which may be connected to any of them. Each operation here runs in
two halves that apply the same rules:

- on this node at once, through the same code as the local operations
  (:meth:`wsgate.Server.send_to`, ``disconnect``, ``connections_of``), so
  what a local call may not do (reach a connection that is closing, address
  another namespace than the one asked for) a remote one may not either;
- on every other node through the :class:`ControlPlane` (request/response
  with a timeout; :mod:`wsgate.stores.redis_control` on Redis), whose
  requests are checked again on arrival (:func:`parse_request`): a request
  that is not exactly one of the operations below, with fields of the right
  types, is answered with an error and does nothing.

The answer (:class:`ClusterAnswer`) says what was reached and which nodes
did not answer in time, so a caller never mistakes a partial answer for a
complete one. When there is no control plane (one node, the in-memory
default) the local half is the whole answer. When the control plane cannot
take the request (Redis unreachable), :class:`~wsgate.Unavailable` is raised
after the local half is done, as a broadcast does.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from wsgate.codes import CloseReason
from wsgate.core.connection import Connection
from wsgate.core.fanout import Fanout, to_wire
from wsgate.core.sessions import Sessions
from wsgate.errors import Unavailable
from wsgate.stores.revocation import StoreUnavailable

log = logging.getLogger("wsgate.remote")

DEFAULT_TIMEOUT = 1.0
"""Seconds a remote operation waits for the other nodes' answers."""

MAX_TIMEOUT = 30.0
"""The longest wait a caller may ask for (an answer table entry lives that long)."""

MAX_LISTED = 1000
"""Connections one node lists in one answer; more are counted, not listed (``truncated``)."""

_CLOSE_REASONS = frozenset(reason.value for reason in CloseReason)


class Op(enum.StrEnum):
    """The remote operations; a request naming anything else is refused."""

    EMIT_USER = "emit_user"
    EMIT_CONNECTION = "emit_connection"
    DISCONNECT_USER = "disconnect_user"
    DISCONNECT_TOKEN = "disconnect_token"
    DISCONNECT_CONNECTION = "disconnect_connection"
    LIST_USER = "list_user"


_FIELDS: dict[Op, tuple[str, ...]] = {
    Op.EMIT_USER: ("namespace", "sub", "event"),
    Op.EMIT_CONNECTION: ("conn", "event"),
    Op.DISCONNECT_USER: ("sub", "reason"),
    Op.DISCONNECT_TOKEN: ("jti", "reason"),
    Op.DISCONNECT_CONNECTION: ("conn", "reason"),
    Op.LIST_USER: ("sub",),
}
"""The string fields each operation requires (``emit_*`` also carry ``data``, any JSON)."""


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One live connection somewhere in the deployment."""

    id: str
    node: str
    namespace: str
    transport: str
    sub: str


@dataclass(frozen=True, slots=True)
class ClusterAnswer:
    """What a remote operation reached.

    ``count`` is the number of connections emitted to, closed, or found;
    ``connections`` lists them for :meth:`~wsgate.Server.find_connections`
    (at most :data:`MAX_LISTED` per node: ``truncated`` says when more were
    counted than listed). ``nodes`` answered; ``missing`` are the nodes
    known to be alive that did not answer within the timeout: their
    connections are not in ``count``.
    """

    count: int = 0
    connections: tuple[ConnectionInfo, ...] = ()
    nodes: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    truncated: bool = False

    @property
    def complete(self) -> bool:
        """True when every live node answered."""
        return not self.missing


Handler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]
"""A node's answer to one request from another node."""


class ControlPlane(Protocol):
    """Request/response between the nodes of one deployment (Redis: pub/sub)."""

    node_id: str

    def start(self, handler: Handler) -> None:
        """Answer other nodes' requests with ``handler`` (idempotent; from a running loop)."""
        ...

    async def ask(
        self,
        request: dict[str, Any],
        timeout: float,  # noqa: ASYNC109
    ) -> tuple[dict[str, Mapping[str, Any]], tuple[str, ...]]:
        """Send ``request`` to every other node; wait up to ``timeout`` for their answers.

        Returns the answers by node and the live nodes that gave none in time.

        Raises :class:`~wsgate.stores.StoreUnavailable` when the request
        cannot be sent.
        """
        ...

    async def aclose(self) -> None: ...


class BadRequest(ValueError):
    """A request from another node that is not one of the operations, well formed."""


def parse_request(raw: Mapping[str, Any]) -> tuple[Op, dict[str, Any]]:
    """The operation and its fields, or :class:`BadRequest` (nothing is done then)."""
    try:
        op = Op(str(raw.get("op")))
    except ValueError:
        raise BadRequest("unknown operation") from None
    fields: dict[str, Any] = {}
    for name in _FIELDS[op]:
        value = raw.get(name)
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise BadRequest(f"{op}: {name} must be a non-empty string")
        fields[name] = value
    if "reason" in fields and fields["reason"] not in _CLOSE_REASONS:
        raise BadRequest(f"{op}: unknown close reason")
    namespace = raw.get("namespace")
    if op is not Op.EMIT_USER and namespace is not None:
        if not isinstance(namespace, str):
            raise BadRequest(f"{op}: namespace must be a string")
        fields["namespace"] = namespace
    if op in (Op.EMIT_USER, Op.EMIT_CONNECTION):
        fields["data"] = raw.get("data")
    return op, fields


class RemoteOps:
    """Runs each operation here and, through the control plane, on every other node."""

    def __init__(
        self,
        fanout: Fanout,
        sessions: Sessions,
        control: ControlPlane | None = None,
        *,
        node_id: str | None = None,
    ) -> None:
        self.fanout = fanout
        self.sessions = sessions
        self.control = control
        self.node_id = control.node_id if control is not None else (node_id or uuid.uuid4().hex)

    def start(self) -> None:
        """Answer the other nodes' requests (idempotent)."""
        if self.control is not None:
            self.control.start(self.handle)

    async def aclose(self) -> None:
        if self.control is not None:
            await self.control.aclose()

    # -- what Server calls ------------------------------------------------------------

    async def run(self, request: dict[str, Any], timeout: float) -> ClusterAnswer:  # noqa: ASYNC109
        """``request`` here, then on the other nodes; their answers merged."""
        if not (0 < timeout <= MAX_TIMEOUT):
            raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT}] seconds")
        if "data" in request:
            request["data"] = to_wire(request["data"])
        op, fields = parse_request(request)  # our own request obeys the same rules
        local = await self.apply(op, fields)
        by_id = op is Op.EMIT_CONNECTION or op is Op.DISCONNECT_CONNECTION
        # Connection ids are unique: one found here is nowhere else.
        if self.control is None or (by_id and local.get("count")):
            return self._merge({self.node_id: local}, ())
        try:
            replies, missing = await self.control.ask({**request, "op": op.value}, timeout)
        except StoreUnavailable:
            raise Unavailable("Other nodes cannot be reached now; try again later") from None
        return self._merge({**replies, self.node_id: local}, missing)

    # -- what another node's request runs here ----------------------------------------

    async def handle(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one request of another node: checked, then applied as a local call."""
        try:
            op, fields = parse_request(raw)
        except BadRequest as exc:
            log.warning("refused a remote request: %s", exc)
            return {"error": "bad_request"}
        try:
            return await self.apply(op, fields)
        except Exception:
            log.exception("remote operation %s failed", op.value)
            return {"error": "internal_error"}

    async def apply(self, op: Op, fields: Mapping[str, Any]) -> dict[str, Any]:
        """One operation on this node's connections only."""
        namespace: str | None = fields.get("namespace")
        if op is Op.EMIT_USER:
            targets = self._of_user(fields["sub"], namespace)
            for connection in targets:
                await self.fanout.send_to(connection, fields["event"], fields["data"])
            return {"count": len(targets)}
        if op is Op.EMIT_CONNECTION:
            target = self._live(fields["conn"])
            if target is None:
                return {"count": 0}
            await self.fanout.send_to(target, fields["event"], fields["data"])
            return {"count": 1}
        if op is Op.LIST_USER:
            listed = self._of_user(fields["sub"], namespace)
            return {
                "count": len(listed),
                "connections": [self._describe(c) for c in listed[:MAX_LISTED]],
            }
        reason = fields["reason"]
        doomed: list[Connection]
        if op is Op.DISCONNECT_USER:
            doomed = self._of_user(fields["sub"], namespace)
        elif op is Op.DISCONNECT_TOKEN:
            jti = fields["jti"]
            doomed = [c for c in self._all_live() if c.principal.jti == jti]
        else:
            one = self._live(fields["conn"])
            doomed = [one] if one is not None else []
        closed = 0
        for connection in doomed:
            if await self.sessions.end(connection, reason):
                closed += 1
        return {"count": closed}

    # -- helpers ----------------------------------------------------------------------

    def _all_live(self) -> list[Connection]:
        return [c for c in self.fanout.connections.values() if c.live]

    def _of_user(self, sub: str, namespace: str | None) -> list[Connection]:
        return [
            c
            for c in self._all_live()
            if c.principal.sub == sub and (namespace is None or c.namespace == namespace)
        ]

    def _live(self, conn_id: str) -> Connection | None:
        connection = self.fanout.connections.get(conn_id)
        return connection if connection is not None and connection.live else None

    def _describe(self, connection: Connection) -> dict[str, str]:
        return {
            "id": connection.id,
            "namespace": connection.namespace,
            "transport": connection.transport.name,
            "sub": connection.principal.sub,
        }

    def _merge(
        self, replies: Mapping[str, Mapping[str, Any]], missing: tuple[str, ...]
    ) -> ClusterAnswer:
        count = 0
        listed: list[ConnectionInfo | None] = []
        truncated = False
        answered: list[str] = []
        failed: list[str] = list(missing)
        for node, reply in replies.items():
            number = reply.get("count")
            if "error" in reply or not isinstance(number, int) or isinstance(number, bool):
                failed.append(node)  # answered, but not with a usable answer
                continue
            answered.append(node)
            count += number
            entries = reply.get("connections")
            if isinstance(entries, list):
                truncated = truncated or number > len(entries)
                listed.extend(_info(node, entry) for entry in entries[:MAX_LISTED])
        return ClusterAnswer(
            count=count,
            connections=tuple(info for info in listed if info is not None),
            nodes=tuple(answered),
            missing=tuple(failed),
            truncated=truncated,
        )


def _info(node: str, entry: Any) -> ConnectionInfo | None:
    if not isinstance(entry, dict):
        return None
    conn_id, namespace, transport, sub = (
        entry.get(name) for name in ("id", "namespace", "transport", "sub")
    )
    if not (
        isinstance(conn_id, str)
        and isinstance(namespace, str)
        and isinstance(transport, str)
        and isinstance(sub, str)
    ):
        return None
    return ConnectionInfo(id=conn_id, node=node, namespace=namespace, transport=transport, sub=sub)
