"""The transports' registry of peers by id, namespace and room: nothing stays once peers go."""

from __future__ import annotations

from dataclasses import dataclass

from wsgate.transports.rooms import Rooms


@dataclass(eq=False)
class Peer:
    namespace: str = "/"


def registry(*peers: tuple[str, Peer]) -> Rooms[Peer]:
    """A registry holding ``peers``, added in order as ``(conn_id, peer)``."""
    rooms: Rooms[Peer] = Rooms()
    for conn_id, peer in peers:
        rooms.add(conn_id, peer)
    return rooms


def test_members_of_a_namespace_and_of_a_room() -> None:
    a, b, other = Peer(), Peer(), Peer("/admin")
    rooms = registry(("a", a), ("b", b), ("o", other))
    rooms.enter("a", "/", "room:r")
    assert rooms.members("/", None) == {a, b}
    assert rooms.members("/admin", None) == {other}
    assert rooms.members("/", "room:r") == {a}
    assert rooms.members("/admin", "room:r") is None  # the same name in another namespace
    assert rooms.get("b") is b and rooms.get("nobody") is None


def test_a_peer_enters_rooms_of_its_own_namespace_only() -> None:
    rooms = registry(("a", Peer()))
    rooms.enter("a", "/admin", "room:r")
    rooms.enter("nobody", "/", "room:r")
    assert rooms.members("/admin", "room:r") is None
    assert rooms.members("/", "room:r") is None


def test_leaving_the_last_member_drops_the_room() -> None:
    a = Peer()
    rooms = registry(("a", a))
    rooms.enter("a", "/", "room:r")
    rooms.leave("a", "/", "room:other")  # not in it: nothing happens
    rooms.leave("a", "/", "room:r")
    rooms.leave("a", "/", "room:r")
    assert rooms.members("/", "room:r") is None
    rooms.discard("a", a)
    assert not rooms


def test_discard_forgets_everywhere_and_twice_is_harmless() -> None:
    a, b = Peer(), Peer()
    rooms = registry(("a", a), ("b", b))
    for conn_id in ("a", "b"):
        rooms.enter(conn_id, "/", "room:r")
        rooms.enter(conn_id, "/", "room:s")
    rooms.discard("a", a)
    rooms.discard("a", a)
    assert rooms.get("a") is None
    assert rooms.members("/", None) == {b}
    assert rooms.members("/", "room:r") == {b} and rooms.members("/", "room:s") == {b}
    rooms.discard("b", b)
    assert not rooms


def test_discard_keeps_an_id_that_names_another_peer() -> None:
    old, new = Peer(), Peer()
    rooms = registry(("x", old), ("x", new))
    rooms.discard("x", old)
    assert rooms.get("x") is new
    assert rooms.members("/", None) == {new}
