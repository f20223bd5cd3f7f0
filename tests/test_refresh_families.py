"""Refresh-token families, one behaviour over memory, SQLite and Redis (RFC 9700 §4.14.2).

The attack: twenty requests racing with one refresh token all got a new
token each. Here the consume is a compare-and-set; every store must let
exactly one of many concurrent consumers through and call the rest reuse.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from wsgate.stores import (
    MemoryRefreshFamilies,
    RedisRefreshFamilies,
    RefreshFamilyStore,
    Rotation,
    SqliteRefreshFamilies,
    StoreUnavailable,
)

LATER = time.time() + 3600


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def families(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RefreshFamilyStore]:
    make: Callable[[], RefreshFamilyStore]
    if request.param == "memory":
        make = MemoryRefreshFamilies
    elif request.param == "sqlite":
        make = lambda: SqliteRefreshFamilies(tmp_path / "families.db")  # noqa: E731
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"wsgate-test-{uuid.uuid4().hex}"
        make = lambda: RedisRefreshFamilies(url, prefix=prefix)  # noqa: E731
    store = make()
    try:
        yield store
    finally:
        await store.aclose()


async def test_rotation_moves_the_family_on(families: RefreshFamilyStore) -> None:
    await families.start("f1", sub="alice", jti="t0", expires_at=LATER)
    assert await families.rotate("f1", presented="t0", successor="t1", expires_at=LATER) == (
        Rotation.ROTATED
    )
    assert await families.rotate("f1", presented="t1", successor="t2", expires_at=LATER) == (
        Rotation.ROTATED
    )


async def test_a_used_token_revokes_the_family_and_its_newest_token(
    families: RefreshFamilyStore,
) -> None:
    await families.start("f1", sub="alice", jti="t0", expires_at=LATER)
    await families.rotate("f1", presented="t0", successor="t1", expires_at=LATER)
    assert await families.rotate("f1", presented="t0", successor="x", expires_at=LATER) == (
        Rotation.REUSED
    )
    # The newest token, which the thief or the user holds, is dead too.
    assert await families.rotate("f1", presented="t1", successor="t2", expires_at=LATER) == (
        Rotation.REVOKED
    )


async def test_families_are_independent_and_unknown_ones_refused(
    families: RefreshFamilyStore,
) -> None:
    await families.start("a", sub="alice", jti="a0", expires_at=LATER)
    await families.start("b", sub="alice", jti="b0", expires_at=LATER)
    await families.rotate("a", presented="a0", successor="a1", expires_at=LATER)
    await families.rotate("a", presented="a0", successor="a2", expires_at=LATER)  # reuse in a
    assert await families.rotate("b", presented="b0", successor="b1", expires_at=LATER) == (
        Rotation.ROTATED
    )
    assert await families.rotate("nope", presented="a0", successor="z", expires_at=LATER) == (
        Rotation.UNKNOWN
    )


async def test_logout_revokes_the_family(families: RefreshFamilyStore) -> None:
    await families.start("f1", sub="alice", jti="t0", expires_at=LATER)
    await families.revoke("f1")
    await families.revoke("never-started")  # ignored
    assert await families.rotate("f1", presented="t0", successor="t1", expires_at=LATER) == (
        Rotation.REVOKED
    )


async def test_an_expired_family_is_unknown(families: RefreshFamilyStore) -> None:
    await families.start("old", sub="alice", jti="t0", expires_at=time.time() + 0.3)
    await asyncio.sleep(0.6)
    assert await families.rotate("old", presented="t0", successor="t1", expires_at=LATER) == (
        Rotation.UNKNOWN
    )


async def test_concurrent_consumers_exactly_one_wins(families: RefreshFamilyStore) -> None:
    await families.start("race", sub="alice", jti="t0", expires_at=LATER)
    outcomes = await asyncio.gather(
        *(
            families.rotate("race", presented="t0", successor=f"s{i}", expires_at=LATER)
            for i in range(50)
        )
    )
    # One consumes; the first loser finds a used token and revokes the family; the rest
    # find it revoked. Nobody else gets a successor.
    assert outcomes.count(Rotation.ROTATED) == 1
    assert outcomes.count(Rotation.REUSED) == 1
    assert outcomes.count(Rotation.REVOKED) == 48


async def test_two_sqlite_stores_on_one_file_race_safely(tmp_path: Path) -> None:
    """Two processes' worth of stores (each its own connection and thread) on one file."""
    first = SqliteRefreshFamilies(tmp_path / "shared.db")
    second = SqliteRefreshFamilies(tmp_path / "shared.db")
    try:
        await first.start("f", sub="alice", jti="t0", expires_at=LATER)
        outcomes = await asyncio.gather(
            *(
                store.rotate("f", presented="t0", successor=f"s{i}", expires_at=LATER)
                for i, store in enumerate([first, second] * 10)
            )
        )
    finally:
        await first.aclose()
        await second.aclose()
    assert outcomes.count(Rotation.ROTATED) == 1


async def test_invalid_arguments_are_refused(families: RefreshFamilyStore) -> None:
    with pytest.raises(ValueError):
        await families.start("", sub="alice", jti="t0", expires_at=LATER)
    with pytest.raises(ValueError):
        await families.start("f", sub="alice", jti="t0", expires_at=float("nan"))


async def test_closed_stores_fail_closed(families: RefreshFamilyStore) -> None:
    await families.aclose()
    with pytest.raises(StoreUnavailable):
        await families.rotate("f", presented="t0", successor="t1", expires_at=LATER)


async def test_memory_store_is_bounded() -> None:
    store = MemoryRefreshFamilies(max_families=10)
    for i in range(25):
        await store.start(f"f{i}", sub="alice", jti="t", expires_at=LATER + i)
    assert len(store) == 10
    # The soonest to expire were evicted; an evicted family is refused, never accepted.
    assert await store.rotate("f0", presented="t", successor="u", expires_at=LATER) == (
        Rotation.UNKNOWN
    )
    assert await store.rotate("f24", presented="t", successor="u", expires_at=LATER) == (
        Rotation.ROTATED
    )


async def test_redis_down_fails_closed() -> None:
    store = RedisRefreshFamilies("redis://127.0.0.1:1/0", timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await store.start("f", sub="alice", jti="t0", expires_at=LATER)
        with pytest.raises(StoreUnavailable):
            await store.rotate("f", presented="t0", successor="t1", expires_at=LATER)
    finally:
        await store.aclose()
