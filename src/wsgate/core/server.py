"""``ctx.server`` and ``app.server``: what an application may do to connections beyond its own."""

from __future__ import annotations

from typing import Any

from wsgate.codes import CloseReason
from wsgate.core.fanout import Fanout
from wsgate.core.remote import DEFAULT_TIMEOUT, ClusterAnswer, Op


class Server:
    """Emit to a namespace, a room or one connection, on every transport (and node).

    Bound to a namespace: ``ctx.server`` is bound to the gateway's own, so
    ``ctx.server.emit("news", data)`` from the ``/board`` gateway reaches
    ``/board``; ``app.server`` is bound to ``/``. Pass ``namespace=`` to
    reach another one, or take :meth:`of`.
    """

    __slots__ = ("_fanout", "namespace")

    def __init__(self, fanout: Fanout, namespace: str = "/") -> None:
        self._fanout = fanout
        self.namespace = namespace

    def of(self, namespace: str) -> Server:
        """The same server, bound to ``namespace``."""
        return Server(self._fanout, namespace)

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        room: str | None = None,
        namespace: str | None = None,
        skip: str | None = None,
    ) -> None:
        """Send ``event`` to every connection of the namespace (or of ``room`` in it).

        ``skip`` is a connection id that does not get it (usually the
        sender's). With a bus (``redis_url``) other nodes' members get it too;
        when the bus cannot take it, :class:`~wsgate.Unavailable` is raised
        and this node's members did not get it either, so a handler's ack says
        503.
        """
        await self._fanout.emit(
            namespace if namespace is not None else self.namespace,
            event,
            data,
            room=room,
            skip=skip,
        )

    async def send_to(self, conn_id: str, event: str, data: Any = None) -> bool:
        """Send ``event`` to the live connection ``conn_id`` of this node; False if none."""
        connection = self._fanout.connections.get(conn_id)
        if connection is None:
            return False
        await self._fanout.send_to(connection, event, data)
        return True

    async def disconnect(self, conn_id: str, reason: str = CloseReason.SERVER_DISCONNECT) -> bool:
        """Close the connection ``conn_id`` on this node; False if there is none."""
        connection = self._fanout.connections.get(conn_id)
        if connection is None:
            return False
        await self._fanout.close(connection, reason)
        return True

    def connections_of(self, sub: str) -> list[str]:
        """Ids of the live connections of user ``sub`` on this node."""
        return [connection.id for connection in self._fanout.connections_of(sub)]

    def connection_count(self) -> int:
        """Live connections on this node, every namespace and transport."""
        return len(self._fanout.connections)

    # -- on every node (see docs/remote-operations.md) ----------------------------------

    async def emit_to_user(
        self,
        sub: str,
        event: str,
        data: Any = None,
        *,
        namespace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109  (a bounded wait for other nodes)
    ) -> ClusterAnswer:
        """``event`` to every live connection of user ``sub`` in the namespace, on every node.

        ``count`` in the answer is the number of connections it was sent to;
        ``missing`` the nodes that did not answer within ``timeout``.
        """
        return await self._run(
            {
                "op": Op.EMIT_USER,
                "namespace": namespace if namespace is not None else self.namespace,
                "sub": sub,
                "event": event,
                "data": data,
            },
            timeout,
        )

    async def emit_to_connection(
        self,
        conn_id: str,
        event: str,
        data: Any = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> ClusterAnswer:
        """``event`` to the live connection ``conn_id``, on whichever node holds it."""
        return await self._run(
            {"op": Op.EMIT_CONNECTION, "conn": conn_id, "event": event, "data": data}, timeout
        )

    async def disconnect_user(
        self,
        sub: str,
        reason: str = CloseReason.SERVER_DISCONNECT,
        *,
        namespace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109  (a bounded wait for other nodes)
    ) -> ClusterAnswer:
        """Close every live connection of ``sub`` on every node (every namespace by default).

        With ``reason="token_revoked"`` each client is told ``auth:revoked``
        first, as a revocation does. This closes sockets; it does not stop
        the user from connecting again: revoke their tokens for that.
        """
        request: dict[str, Any] = {"op": Op.DISCONNECT_USER, "sub": sub, "reason": reason}
        if namespace is not None:
            request["namespace"] = namespace
        return await self._run(request, timeout)

    async def disconnect_token(
        self,
        jti: str,
        reason: str = CloseReason.TOKEN_REVOKED,
        *,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109  (a bounded wait for other nodes)
    ) -> ClusterAnswer:
        """Close every live connection holding the token ``jti``, on every node."""
        return await self._run({"op": Op.DISCONNECT_TOKEN, "jti": jti, "reason": reason}, timeout)

    async def disconnect_connection(
        self,
        conn_id: str,
        reason: str = CloseReason.SERVER_DISCONNECT,
        *,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109  (a bounded wait for other nodes)
    ) -> ClusterAnswer:
        """Close the live connection ``conn_id``, on whichever node holds it."""
        return await self._run(
            {"op": Op.DISCONNECT_CONNECTION, "conn": conn_id, "reason": reason}, timeout
        )

    async def find_connections(
        self,
        sub: str,
        *,
        namespace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> ClusterAnswer:
        """The live connections of ``sub`` on every node (every namespace by default).

        A node that does not answer within ``timeout`` is named in
        ``missing``: the list is then partial, and says so.
        """
        request: dict[str, Any] = {"op": Op.LIST_USER, "sub": sub}
        if namespace is not None:
            request["namespace"] = namespace
        return await self._run(request, timeout)

    async def _run(self, request: dict[str, Any], timeout: float) -> ClusterAnswer:  # noqa: ASYNC109
        remote = self._fanout.remote
        if remote is None:  # a Fanout used on its own, outside a Runtime
            raise RuntimeError("remote operations need the App's runtime")
        return await remote.run(request, timeout)
