"""One behaviour, three stores: the same suite runs against memory, SQLite and Redis.

A backend hands out *handles* onto one shared state: a second handle is
another process's view (another node, or the ``wsgate revoke`` CLI). For
memory, which shares nothing across processes, the second handle is the same
object.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from wsgate.errors import WsgateError
from wsgate.stores import (
    MemoryRevocationStore,
    RedisRevocationStore,
    Revocation,
    RevocationStore,
    SqliteRevocationStore,
    StoreUnavailable,
)

DELIVERY = 1.0  # seconds: the contract's bound for a revocation to reach every node


class Backend:
    """Opens handles onto one store's state and closes them all after the test."""

    def __init__(self, name: str, factory: Callable[[], RevocationStore]) -> None:
        self.name = name
        self._factory = factory
        self._opened: list[RevocationStore] = []

    def open(self) -> RevocationStore:
        store = self._factory()
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._opened:
            await store.aclose()


def make_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if name == "memory":
        shared = MemoryRevocationStore()
        return Backend(name, lambda: shared)
    if name == "sqlite":
        path = tmp_path / "revocations.db"
        return Backend(name, lambda: SqliteRevocationStore(path, poll_interval=0.05))
    url = request.getfixturevalue("redis_url")
    prefix = f"wsgate-test:{uuid.uuid4().hex}:"
    return Backend(name, lambda: RedisRevocationStore(url, prefix=prefix))


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    result = make_backend(request.param, request, tmp_path)
    yield result
    await result.close_all()


@pytest.fixture(params=["sqlite", "redis"])
async def persistent_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Backend]:
    """The stores that outlive the process (memory, by design, does not)."""
    result = make_backend(request.param, request, tmp_path)
    yield result
    await result.close_all()


async def test_revoke_jti_revokes_that_token_only(backend: Backend) -> None:
    store = backend.open()
    now = time.time()
    revocation = await store.revoke_jti("token-1", expires_at=now + 60)

    assert revocation.kind == "jti"
    assert revocation.value == "token-1"
    assert revocation.expires_at == now + 60
    assert abs(revocation.revoked_at - now) < 5
    assert await store.is_revoked(sub="alice", jti="token-1", issued_at=now)
    assert not await store.is_revoked(sub="alice", jti="token-2", issued_at=now)
    assert not await store.is_revoked(sub="alice", jti=None, issued_at=now)


async def test_revoke_sub_revokes_tokens_issued_before(backend: Backend) -> None:
    store = backend.open()
    now = time.time()
    revocation = await store.revoke_sub("alice", expires_at=now + 60, at=now)

    assert (revocation.kind, revocation.value, revocation.revoked_at) == ("sub", "alice", now)
    assert await store.is_revoked(sub="alice", jti="a", issued_at=now - 10)
    assert await store.is_revoked(sub="alice", jti=None, issued_at=None), "no iat: revoked"
    assert not await store.is_revoked(sub="alice", jti="b", issued_at=now + 10)
    assert not await store.is_revoked(sub="bob", jti="c", issued_at=now - 10)


async def test_revoke_sub_defaults_to_now(backend: Backend) -> None:
    store = backend.open()
    before = time.time()
    revocation = await store.revoke_sub("alice", expires_at=before + 60)

    # Now, truncated to the millisecond: the precision of the iat wsgate issues.
    assert math.floor(before * 1000) / 1000 <= revocation.revoked_at <= time.time()
    assert revocation.revoked_at == math.floor(revocation.revoked_at * 1000) / 1000
    assert await store.is_revoked(sub="alice", jti=None, issued_at=before - 1)


async def test_revocation_by_sub_boundary_is_the_millisecond(backend: Backend) -> None:
    """A token issued in the millisecond of the revocation or later is not revoked by it.

    A user cut off by ``revoke --sub`` who logs in again right away gets in,
    whichever second the two fall in; a token one millisecond older is revoked.
    """
    store = backend.open()
    revocation = await store.revoke_sub("alice", expires_at=time.time() + 60)
    at = revocation.revoked_at
    assert await store.is_revoked(sub="alice", jti="old", issued_at=at - 0.001)
    assert not await store.is_revoked(sub="alice", jti="same-ms", issued_at=at)
    assert not await store.is_revoked(sub="alice", jti="new", issued_at=at + 0.001)


async def test_later_revocation_is_not_weakened_by_an_earlier_or_shorter_one(
    backend: Backend,
) -> None:
    store = backend.open()
    now = time.time()
    await store.revoke_sub("alice", expires_at=now + 60, at=now)
    await store.revoke_sub("alice", expires_at=now + 60, at=now - 50)
    await store.revoke_jti("j", expires_at=now + 60)
    await store.revoke_jti("j", expires_at=now - 1)

    assert await store.is_revoked(sub="alice", jti=None, issued_at=now - 10)
    assert await store.is_revoked(sub="bob", jti="j", issued_at=now)


async def test_expired_entries_are_ignored(backend: Backend) -> None:
    store = backend.open()
    now = time.time()
    await store.revoke_jti("old", expires_at=now - 1)
    await store.revoke_sub("alice", expires_at=now - 1, at=now)

    assert not await store.is_revoked(sub="alice", jti="old", issued_at=now - 10)


async def test_purge_expired_removes_only_expired_entries(backend: Backend) -> None:
    store = backend.open()
    now = time.time()
    await store.revoke_jti("short", expires_at=now + 0.2)
    await store.revoke_jti("long", expires_at=now + 60)
    await asyncio.sleep(0.3)

    removed = await store.purge_expired()

    # Redis purges by TTL on its own, so there is nothing left to remove.
    assert removed == (0 if backend.name == "redis" else 1)
    assert await store.purge_expired() == 0
    assert not await store.is_revoked(sub="u", jti="short", issued_at=now)
    assert await store.is_revoked(sub="u", jti="long", issued_at=now)


async def test_purge_expired_takes_an_explicit_now(backend: Backend) -> None:
    store = backend.open()
    now = time.time()
    await store.revoke_sub("alice", expires_at=now + 30, at=now)

    assert await store.purge_expired(now=now) == 0
    if backend.name != "redis":
        assert await store.purge_expired(now=now + 31) == 1
        assert not await store.is_revoked(sub="alice", jti=None, issued_at=None)


async def test_watch_receives_revocations_from_another_handle(backend: Backend) -> None:
    watcher, writer = backend.open(), backend.open()
    now = time.time()
    await writer.revoke_jti("before-watch", expires_at=now + 60)

    async with watcher.watch() as revocations:
        by_jti = await writer.revoke_jti("j1", expires_at=now + 60)
        by_sub = await writer.revoke_sub("alice", expires_at=now + 60, at=now)
        async with asyncio.timeout(DELIVERY):
            received = [await anext(revocations), await anext(revocations)]

    assert received == [by_jti, by_sub], "nothing from before the watch, nothing lost, in order"


async def test_every_watch_gets_every_revocation(backend: Backend) -> None:
    store = backend.open()
    now = time.time()
    async with store.watch() as first, store.watch() as second:
        revocation = await backend.open().revoke_jti("j", expires_at=now + 60)
        async with asyncio.timeout(DELIVERY):
            assert await anext(first) == revocation
            assert await anext(second) == revocation


async def test_watch_ends_when_the_store_closes(backend: Backend) -> None:
    store = backend.open()
    watch = await store.watch().start()
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.05)

    await store.aclose()

    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(DELIVERY):
            await pending


async def test_closed_store_fails_closed(backend: Backend) -> None:
    store = backend.open()
    await store.aclose()

    with pytest.raises(StoreUnavailable):
        await store.is_revoked(sub="alice", jti="j", issued_at=None)
    with pytest.raises(StoreUnavailable):
        await store.revoke_jti("j", expires_at=time.time() + 60)
    with pytest.raises(StoreUnavailable):
        store.watch()


async def test_revocations_survive_a_restart(persistent_backend: Backend) -> None:
    backend = persistent_backend
    now = time.time()
    first = backend.open()
    await first.revoke_jti("j", expires_at=now + 60)
    await first.revoke_sub("alice", expires_at=now + 60, at=now)
    await first.aclose()

    reopened = backend.open()
    assert await reopened.is_revoked(sub="bob", jti="j", issued_at=now)
    assert await reopened.is_revoked(sub="alice", jti=None, issued_at=now - 1)


@pytest.mark.parametrize(
    ("value", "expires_at"),
    [("", 1e12), ("j", math.nan), ("j", math.inf), ("j", "soon"), ("j", True)],
)
async def test_invalid_revocations_are_refused(
    backend: Backend, value: str, expires_at: float
) -> None:
    store = backend.open()
    with pytest.raises(ValueError):
        await store.revoke_jti(value, expires_at=expires_at)
    with pytest.raises(ValueError):
        await store.revoke_sub(value, expires_at=expires_at)
    with pytest.raises(ValueError):
        await store.revoke_sub("alice", expires_at=1e12, at=math.nan)


def test_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    sqlite_store = SqliteRevocationStore(tmp_path / "x.db")
    assert isinstance(MemoryRevocationStore(), RevocationStore)
    assert isinstance(sqlite_store, RevocationStore)
    assert issubclass(StoreUnavailable, WsgateError)


# Revocation itself


def test_revocation_concerns_matches_is_revoked_rules() -> None:
    by_sub = Revocation("sub", "alice", revoked_at=100.0, expires_at=200.0)
    by_jti = Revocation("jti", "j", revoked_at=100.0, expires_at=200.0)

    assert by_sub.concerns(sub="alice", jti=None, issued_at=99)
    assert by_sub.concerns(sub="alice", jti=None, issued_at=None)
    assert not by_sub.concerns(sub="alice", jti=None, issued_at=100)
    assert not by_sub.concerns(sub="bob", jti=None, issued_at=1)
    assert by_jti.concerns(sub="anyone", jti="j", issued_at=None)
    assert not by_jti.concerns(sub="anyone", jti=None, issued_at=None)
    assert by_jti.is_expired(200.1) and not by_jti.is_expired(200.0)


def test_revocation_json_round_trip() -> None:
    revocation = Revocation("sub", "alice", revoked_at=1.5, expires_at=2.25)
    assert Revocation.from_json(revocation.to_json()) == revocation
    assert Revocation.from_json(revocation.to_json().encode()) == revocation


@pytest.mark.parametrize(
    "message",
    [
        b"\xff",
        "not json",
        "[]",
        '{"kind":"all","value":"x","revoked_at":1,"expires_at":2}',
        '{"kind":"jti","value":"","revoked_at":1,"expires_at":2}',
        '{"kind":"jti","value":7,"revoked_at":1,"expires_at":2}',
        '{"kind":"jti","value":"x","revoked_at":"1","expires_at":2}',
        '{"kind":"jti","value":"x","revoked_at":1,"expires_at":NaN}',
        '{"kind":"jti","value":"x","revoked_at":1}',
    ],
)
def test_revocation_from_json_rejects_anything_else(message: str | bytes) -> None:
    with pytest.raises(ValueError):
        Revocation.from_json(message)


# SQLite specifics


async def test_sqlite_watch_sees_a_revocation_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = SqliteRevocationStore(path)
    script = textwrap.dedent(
        """
        import asyncio, sys, time
        from wsgate.stores import SqliteRevocationStore

        async def main() -> None:
            store = SqliteRevocationStore(sys.argv[1])
            await store.revoke_jti("from-cli", expires_at=time.time() + 60)
            await store.aclose()

        asyncio.run(main())
        """
    )
    try:
        async with store.watch() as revocations:
            process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(path))
            assert await process.wait() == 0
            async with asyncio.timeout(DELIVERY):
                revocation = await anext(revocations)
        assert (revocation.kind, revocation.value) == ("jti", "from-cli")
        assert await store.is_revoked(sub="u", jti="from-cli", issued_at=None)
    finally:
        await store.aclose()


async def test_sqlite_uses_wal_and_prefixed_tables(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    store = SqliteRevocationStore(path)
    await store.revoke_jti("j", expires_at=time.time() + 60)
    await store.aclose()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "wsgate_revocations" in tables


async def test_sqlite_unopenable_file_fails_closed(tmp_path: Path) -> None:
    store = SqliteRevocationStore(tmp_path / "missing-dir" / "x.db")
    try:
        with pytest.raises(StoreUnavailable):
            await store.is_revoked(sub="alice", jti="j", issued_at=None)
        with pytest.raises(StoreUnavailable):
            await store.watch().start()
    finally:
        await store.aclose()


@pytest.mark.parametrize("path", ["", ":memory:", "file:x?mode=memory"])
def test_sqlite_refuses_a_database_other_processes_cannot_share(path: str) -> None:
    with pytest.raises(ValueError):
        SqliteRevocationStore(path)


# Redis specifics


async def test_redis_down_fails_closed() -> None:
    store = RedisRevocationStore("redis://127.0.0.1:1/0", timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await store.is_revoked(sub="alice", jti="j", issued_at=None)
        with pytest.raises(StoreUnavailable):
            await store.revoke_jti("j", expires_at=time.time() + 60)
        with pytest.raises(StoreUnavailable):
            await store.watch().start()
    finally:
        await store.aclose()


@pytest.fixture
async def redis_pair(redis_url: str) -> AsyncIterator[tuple[RedisRevocationStore, Redis]]:
    prefix = f"wsgate-test:{uuid.uuid4().hex}:"
    store = RedisRevocationStore(redis_url, prefix=prefix)
    raw = Redis.from_url(redis_url)
    yield store, raw
    await store.aclose()
    await raw.aclose()


async def test_redis_keys_expire_with_the_revocation(
    redis_pair: tuple[RedisRevocationStore, Redis],
) -> None:
    store, raw = redis_pair
    now = time.time()
    await store.revoke_sub("alice", expires_at=now + 100, at=now)
    await store.revoke_sub("alice", expires_at=now + 10, at=now - 50)

    key = store.key("sub", "alice")
    assert key.endswith("revoked:sub:alice")
    assert 90_000 < await raw.pttl(key) <= 100_000, "a shorter revocation never shortens the TTL"
    stored = await raw.get(key)
    assert stored is not None and float(stored) == now, "the latest revoked_at is kept"


async def test_redis_watch_ignores_malformed_messages(
    redis_pair: tuple[RedisRevocationStore, Redis],
) -> None:
    store, raw = redis_pair
    async with store.watch() as revocations:
        await raw.publish(store.channel, "not json")
        await raw.publish(store.channel, '{"kind":"all","value":"*"}')
        revocation = await store.revoke_jti("j", expires_at=time.time() + 60)
        async with asyncio.timeout(DELIVERY):
            assert await anext(revocations) == revocation


async def test_redis_watch_reports_a_lost_subscription(
    redis_pair: tuple[RedisRevocationStore, Redis],
) -> None:
    store, raw = redis_pair
    async with store.watch() as revocations:
        pending = asyncio.ensure_future(anext(revocations))
        await asyncio.sleep(0.05)
        clients = await raw.client_list()
        ids = [c["id"] for c in clients if c.get("name") == f"{store.keys.prefix}-watch"]
        assert len(ids) == 1
        await raw.client_kill_filter(_id=ids[0])

        # Messages published while it was away are lost: say so, never go quiet.
        with pytest.raises(StoreUnavailable):
            async with asyncio.timeout(DELIVERY):
                await pending


# SQLite's in-memory mirror (issue 5): lookups without a query while a watch is live


async def test_sqlite_mirror_answers_exactly_as_the_database(tmp_path: Path) -> None:
    store = SqliteRevocationStore(tmp_path / "m.db", mirror_stale_after=3600)
    now = time.time()
    try:
        await store.revoke_jti("old-jti", expires_at=now + 600)
        await store.revoke_sub("old-sub", expires_at=now + 600, at=now - 10)
        await store.revoke_jti("expired-jti", expires_at=now - 1)
        async with store.watch():
            assert store.mirror_live, "a started watch loads the active revocations"
            # Written while the watch is live: in the mirror before revoke_* returns.
            await store.revoke_jti("new-jti", expires_at=now + 600)
            await store.revoke_sub("new-sub", expires_at=now + 600, at=now)
            await store.revoke_sub("new-sub", expires_at=now + 300, at=now - 100)
            cases = [
                (sub, jti, iat)
                for sub in ("old-sub", "new-sub", "someone")
                for jti in ("old-jti", "new-jti", "expired-jti", "other", None)
                for iat in (None, now - 200, now - 50, now - 5, now + 5)
            ]
            mirrored = [await store.is_revoked(sub=s, jti=j, issued_at=i) for s, j, i in cases]
            database = [await store._call(store._is_revoked, s, j, i) for s, j, i in cases]
        assert mirrored == database
        assert any(mirrored) and not all(mirrored)
    finally:
        await store.aclose()


async def test_sqlite_mirror_is_used_only_while_a_watch_is_live(tmp_path: Path) -> None:
    store = SqliteRevocationStore(tmp_path / "m.db", poll_interval=0.05)
    queries = 0
    original = store._is_revoked

    def counting(*args: object) -> bool:
        nonlocal queries
        queries += 1
        return original(*args)  # type: ignore[arg-type]

    store._is_revoked = counting  # type: ignore[method-assign]
    try:
        assert not await store.is_revoked(sub="a", jti="j", issued_at=None)
        assert queries == 1, "without a watch every lookup asks SQLite"
        async with store.watch() as revocations:
            assert not await store.is_revoked(sub="a", jti="j", issued_at=None)
            assert queries == 1, "with a live watch the mirror answers"
            await store.revoke_jti("j", expires_at=time.time() + 60)
            assert await store.is_revoked(sub="a", jti="j", issued_at=None)
            assert queries == 2, "a commit since the last poll sends lookups to SQLite"
            async with asyncio.timeout(DELIVERY):
                assert (await anext(revocations)).value == "j"
            assert await store.is_revoked(sub="a", jti="j", issued_at=None)
            assert queries == 2, "the poll read the files as they are: the mirror again"
        assert not store.mirror_live
        assert await store.is_revoked(sub="a", jti="j", issued_at=None)
        assert queries == 3, "a closed watch sends lookups back to SQLite"
    finally:
        await store.aclose()


async def test_sqlite_mirror_learns_other_handles_revocations_through_the_watch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.db"
    store, other = SqliteRevocationStore(path, poll_interval=0.05), SqliteRevocationStore(path)
    try:
        async with store.watch() as revocations:
            await other.revoke_sub("bob", expires_at=time.time() + 60)
            async with asyncio.timeout(DELIVERY):
                seen = await anext(revocations)
            assert seen.value == "bob"
            assert store.mirror_live
            assert await store.is_revoked(sub="bob", jti=None, issued_at=None)
    finally:
        await store.aclose()
        await other.aclose()


async def test_sqlite_mirror_never_hides_another_processs_revocation(tmp_path: Path) -> None:
    """A revocation committed elsewhere counts at once, before any poll has read it.

    Seen in a test of recovery: ``wsgate revoke`` returned, the token
    reconnected within the poll interval, was admitted from the mirror and
    had its missed messages replayed before the follower cut it.
    """
    path = tmp_path / "m.db"
    # A poll only every hour, a mirror trusted for an hour: only the files can tell.
    store = SqliteRevocationStore(path, poll_interval=3600, mirror_stale_after=3600)
    other = SqliteRevocationStore(path)  # another process would do the same
    try:
        async with store.watch():
            assert store.mirror_live
            assert not await store.is_revoked(sub="bob", jti="t1", issued_at=None)
            await other.revoke_jti("t1", expires_at=time.time() + 60)
            assert await store.is_revoked(sub="bob", jti="t1", issued_at=None)
            await other.revoke_sub("bob", expires_at=time.time() + 60)
            assert await store.is_revoked(sub="bob", jti=None, issued_at=time.time() - 5)
    finally:
        await store.aclose()
        await other.aclose()


async def test_sqlite_mirror_fails_closed_when_the_watch_fails(tmp_path: Path) -> None:
    store = SqliteRevocationStore(tmp_path / "m.db", poll_interval=0.05, mirror_stale_after=3600)
    try:
        async with store.watch() as revocations:
            assert store.mirror_live
            assert not await store.is_revoked(sub="a", jti="j", issued_at=None)

            async def broken(*args: object, **kwargs: object) -> object:
                raise sqlite3.OperationalError("disk I/O error")

            store._thread.run = broken  # type: ignore[method-assign]
            with pytest.raises(StoreUnavailable):
                await anext(revocations)
            # The watch is blind now: the mirror may miss revocations, so it is
            # not believed, and SQLite (broken) refuses to answer.
            assert not store.mirror_live
            with pytest.raises(StoreUnavailable):
                await store.is_revoked(sub="a", jti="j", issued_at=None)
    finally:
        store._closed = True  # the thread's run is broken; skip the orderly close
        store._thread.shutdown()


def test_sqlite_mirror_stale_after_must_be_a_duration(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteRevocationStore(tmp_path / "m.db", mirror_stale_after=float("nan"))
