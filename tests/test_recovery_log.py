"""The recovery log and saved sessions, pushed past each bound (no server needed).

The end-to-end behaviour, with socket.io-client against a real demo, is in
tests/test_recovery.py.
"""

from __future__ import annotations

from typing import Any

from wsgate.codes import CloseReason
from wsgate.core.connection import Connection, room_key
from wsgate.core.handshake import Handshake
from wsgate.core.recovery import RECOVERABLE, Missed, Recovery
from wsgate.principal import Principal


class _Link:
    name = "socketio"


def _connection(sub: str, conn_id: str = "c1", rooms: set[str] | None = None) -> Connection:
    handshake = Handshake(headers={}, remote_addr="127.0.0.1", transport="socketio")
    return Connection(
        id=conn_id,
        namespace="/",
        principal=Principal(sub=sub, roles=frozenset(), claims={}),
        handshake=handshake,
        transport=_Link(),  # type: ignore[arg-type]
        rooms=set(rooms or ()),
    )


async def _restore(
    recovery: Recovery, pid: str, offset: str, *, sub: str, namespace: str = "/"
) -> tuple[frozenset[str], tuple[Missed, ...]] | None:
    saved = await recovery.take(pid, sub=sub, namespace=namespace)
    if saved is None:
        return None
    missed = await recovery.missed(saved, offset)
    return None if missed is None else (saved.rooms, missed)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _say(recovery: Recovery, text: str, room: str | None = "lobby", **kw: Any) -> str:
    offset = recovery.record(
        kw.get("namespace", "/"),
        "message",
        {"text": text},
        room_key(room) if room else None,
        kw.get("skip"),
    )
    assert offset is not None
    return offset


def test_off_records_nothing() -> None:
    recovery = Recovery(window=0)
    assert not recovery.enabled
    assert recovery.record("/", "e", 1, None, None) is None
    assert recovery.logged == (0, 0)


async def test_replays_the_session_s_rooms_and_namespace_only() -> None:
    recovery = Recovery(window=60)
    last = _say(recovery, "seen")
    await recovery.save(_connection("alice", rooms={"lobby"}), "pid-a")
    _say(recovery, "one")
    _say(recovery, "elsewhere", room="private")
    _say(recovery, "other namespace", namespace="/admin")
    _say(recovery, "to everyone", room=None)
    _say(recovery, "skipped", skip="c1")
    restored = await _restore(recovery, "pid-a", last, sub="alice", namespace="/")
    assert restored is not None
    assert restored[0] == frozenset({"lobby"})
    assert [m.data["text"] for m in restored[1]] == ["one", "to everyone"]
    # Taken once: the same pid does not recover twice.
    assert await _restore(recovery, "pid-a", last, sub="alice", namespace="/") is None


async def test_a_foreign_sub_or_namespace_recovers_nothing_and_leaves_the_session() -> None:
    recovery = Recovery(window=60)
    last = _say(recovery, "seen")
    await recovery.save(_connection("alice", rooms={"lobby"}), "pid-a")
    assert await _restore(recovery, "pid-a", last, sub="mallory", namespace="/") is None
    assert await _restore(recovery, "pid-a", last, sub="alice", namespace="/admin") is None
    assert await _restore(recovery, "pid-a", last, sub="alice", namespace="/") is not None


async def test_the_window_bounds_a_session() -> None:
    clock = Clock()
    recovery = Recovery(window=10, clock=clock)
    last = _say(recovery, "seen")
    await recovery.save(_connection("alice"), "pid-a")
    clock.now += 10.5
    assert await _restore(recovery, "pid-a", last, sub="alice", namespace="/") is None
    assert recovery.saved_sessions == 0


async def test_past_the_packet_bound_a_gap_is_not_recovered() -> None:
    recovery = Recovery(window=60, max_packets=3)
    last = _say(recovery, "seen")
    await recovery.save(_connection("alice", rooms={"lobby"}), "pid-a")
    await recovery.save(_connection("ann", "c2", rooms={"lobby"}), "pid-b")
    for i in range(3):
        _say(recovery, f"m{i}")
    assert recovery.logged[0] == 3
    restored = await _restore(recovery, "pid-a", last, sub="alice", namespace="/")
    assert restored is not None and len(restored[1]) == 3  # exactly at the bound
    _say(recovery, "m3")  # one more: "m0", right after the offset, is gone
    assert await _restore(recovery, "pid-b", last, sub="ann", namespace="/") is None


def test_the_byte_bound_evicts_the_oldest() -> None:
    recovery = Recovery(window=60, max_packets=1000, max_bytes=2000)
    for i in range(100):
        recovery.record("/", "message", {"text": "x" * 100, "i": i}, None, None)
    entries, size = recovery.logged
    assert size <= 2000 and 0 < entries < 100


async def test_saved_sessions_are_bounded() -> None:
    recovery = Recovery(window=60, max_sessions=5)
    last = _say(recovery, "seen")
    for i in range(8):
        await recovery.save(_connection(f"u{i}", f"c{i}"), f"pid-{i}")
    assert recovery.saved_sessions == 5
    assert (
        await _restore(recovery, "pid-0", last, sub="u0", namespace="/") is None
    )  # the oldest went
    assert await _restore(recovery, "pid-7", last, sub="u7", namespace="/") is not None


async def test_unknown_and_malformed_offsets_recover_nothing() -> None:
    recovery = Recovery(window=60)
    last = _say(recovery, "seen")
    for offset in ["", "-1", "abc", str(int(last) + 5), "9" * 40]:
        await recovery.save(_connection("alice"), "pid-a")
        assert await _restore(recovery, "pid-a", offset, sub="alice", namespace="/") is None


def test_pids_are_long_and_distinct() -> None:
    pids = {Recovery.new_pid() for _ in range(1000)}
    assert len(pids) == 1000 and all(len(pid) >= 22 for pid in pids)


def test_only_network_losses_are_recoverable() -> None:
    assert CloseReason.TRANSPORT_CLOSE in RECOVERABLE
    for reason in (
        CloseReason.CLIENT_DISCONNECT,
        CloseReason.TOKEN_REVOKED,
        CloseReason.TOKEN_EXPIRED,
        CloseReason.SERVER_DISCONNECT,
        CloseReason.SLOW_CONSUMER,
    ):
        assert reason not in RECOVERABLE
