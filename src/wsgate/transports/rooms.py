"""Where a transport's connections are: by id, by namespace and by room.

The core addresses connections by id and rooms by name (already qualified,
see ``room_key``); each transport must map those to its own peer objects
(a ``/ws`` socket, a Socket.IO namespace socket) to deliver anything. Both
transports need the same map, so it is written once here, generic over the
peer type, rather than once per transport.

Broadcasts read :meth:`Rooms.members` once and iterate the set it returns
themselves: the fan-out loop stays a plain ``for`` over a set, with no call
into this module per recipient.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

__all__ = ["Member", "Rooms"]


class Member(Protocol):
    """What the registry needs of a peer: the namespace it is connected to."""

    @property
    def namespace(self) -> str: ...


P = TypeVar("P", bound=Member)
K = TypeVar("K")
V = TypeVar("V")


class Rooms(Generic[P]):
    """The peers of one transport by connection id, by namespace and by room.

    A room is keyed by ``(namespace, room)``: the same room name in two
    namespaces is two rooms. Empty sets are dropped, so the tables grow
    with the live connections and rooms, never with those that are gone.
    """

    __slots__ = ("_joined", "_members", "_peers", "_rooms")

    def __init__(self) -> None:
        self._peers: dict[str, P] = {}
        self._members: dict[str, set[P]] = {}
        self._rooms: dict[tuple[str, str], set[P]] = {}
        self._joined: dict[P, set[tuple[str, str]]] = {}
        """The rooms of each peer that is in any, so forgetting it needs no scan."""

    def __bool__(self) -> bool:
        """True while any peer, namespace or room is held: False means nothing leaked."""
        return bool(self._peers or self._members or self._rooms or self._joined)

    def get(self, conn_id: str) -> P | None:
        """The peer of ``conn_id``, whatever its namespace (None once it was forgotten)."""
        return self._peers.get(conn_id)

    def add(self, conn_id: str, peer: P) -> None:
        """Register ``peer``: it can be addressed by id and is a member of its namespace."""
        self._peers[conn_id] = peer
        self._members.setdefault(peer.namespace, set()).add(peer)

    def discard(self, conn_id: str, peer: P) -> None:
        """Forget ``peer`` everywhere; a no-op when it was forgotten already.

        ``conn_id`` is unregistered only while it still names this ``peer``.
        """
        if self._peers.get(conn_id) is peer:
            del self._peers[conn_id]
        _remove(self._members, peer.namespace, peer)
        for key in self._joined.pop(peer, ()):
            _remove(self._rooms, key, peer)

    def enter(self, conn_id: str, namespace: str, room: str) -> None:
        """Put the peer of ``conn_id`` in ``room``; a no-op unless it is in ``namespace``."""
        peer = self._peers.get(conn_id)
        if peer is None or peer.namespace != namespace:
            return
        key = (namespace, room)
        self._rooms.setdefault(key, set()).add(peer)
        self._joined.setdefault(peer, set()).add(key)

    def leave(self, conn_id: str, namespace: str, room: str) -> None:
        """Take the peer of ``conn_id`` out of ``room``; a no-op when it is not in it."""
        peer = self._peers.get(conn_id)
        key = (namespace, room)
        if peer is None or key not in self._joined.get(peer, ()):
            return
        _remove(self._joined, peer, key)
        _remove(self._rooms, key, peer)

    def members(self, namespace: str, room: str | None) -> set[P] | None:
        """The peers of ``room`` in ``namespace`` (of the whole namespace when None).

        The registry's own set, not a copy: a caller that may forget peers
        while it iterates must copy it first.
        """
        if room is None:
            return self._members.get(namespace)
        return self._rooms.get((namespace, room))


def _remove(table: dict[K, set[V]], key: K, value: V) -> None:
    """Take ``value`` out of ``table[key]``; an emptied set goes, so no table keeps the gone."""
    values = table.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del table[key]
