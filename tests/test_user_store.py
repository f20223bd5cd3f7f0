"""The demo user store: argon2id hashes, validated names, no user enumeration by timing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher, Type

from wsgate.stores import SqliteRevocationStore, StoreUnavailable, User, UserStore


class CountingHasher(PasswordHasher):
    """Cheap parameters keep the tests fast; counting proves the dummy verification runs."""

    def __init__(self, time_cost: int = 1) -> None:
        super().__init__(time_cost=time_cost, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "users.db"


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
async def users(db_path: Path, hasher: CountingHasher) -> AsyncIterator[UserStore]:
    store = UserStore(db_path, hasher=hasher)
    yield store
    await store.aclose()


def stored_row(path: Path, name: str) -> tuple[Any, ...]:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT password_hash, roles FROM wsgate_users WHERE name = ?", (name,)
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    return tuple(row)


async def test_add_then_authenticate(users: UserStore) -> None:
    added = await users.add("alice", "correct horse", roles=["admin", "chat:write", "admin"])

    assert added == User("alice", ("admin", "chat:write")), "duplicates dropped, order kept"
    assert await users.authenticate("alice", "correct horse") == added
    assert await users.get("alice") == added


async def test_wrong_password_and_unknown_user_look_the_same(
    users: UserStore, hasher: CountingHasher
) -> None:
    await users.add("alice", "correct horse")

    hasher.verified = 0
    assert await users.authenticate("alice", "wrong") is None
    assert hasher.verified == 1
    assert await users.authenticate("mallory", "correct horse") is None
    assert hasher.verified == 2, "an unknown user still costs one verification"
    assert await users.get("mallory") is None


async def test_password_is_stored_as_an_argon2id_hash(users: UserStore, db_path: Path) -> None:
    await users.add("alice", "correct horse", roles=["admin"])

    password_hash, roles = stored_row(db_path, "alice")
    assert password_hash.startswith("$argon2id$")
    assert "correct horse" not in password_hash
    assert roles == '["admin"]'


async def test_add_replaces_password_and_roles(users: UserStore) -> None:
    await users.add("alice", "old password", roles=["admin"])
    replaced = await users.add("alice", "new password")

    assert replaced == User("alice", ())
    assert await users.authenticate("alice", "old password") is None
    assert await users.authenticate("alice", "new password") == User("alice", ())


async def test_users_survive_a_restart(db_path: Path, hasher: CountingHasher) -> None:
    first = UserStore(db_path, hasher=hasher)
    await first.add("alice", "pw", roles=["admin"])
    await first.aclose()

    second = UserStore(db_path, hasher=hasher)
    try:
        assert await second.authenticate("alice", "pw") == User("alice", ("admin",))
    finally:
        await second.aclose()


async def test_hash_is_upgraded_when_parameters_change(db_path: Path) -> None:
    old = UserStore(db_path, hasher=CountingHasher(time_cost=1))
    await old.add("alice", "pw")
    await old.aclose()
    old_hash, _ = stored_row(db_path, "alice")

    new = UserStore(db_path, hasher=CountingHasher(time_cost=2))
    try:
        assert await new.authenticate("alice", "pw") == User("alice", ())
        new_hash, _ = stored_row(db_path, "alice")
        assert new_hash != old_hash
        assert ",t=2," in new_hash
        assert await new.authenticate("alice", "pw") == User("alice", ())
    finally:
        await new.aclose()


async def test_wrong_password_does_not_upgrade_the_hash(db_path: Path) -> None:
    old = UserStore(db_path, hasher=CountingHasher(time_cost=1))
    await old.add("alice", "pw")
    await old.aclose()
    old_hash, _ = stored_row(db_path, "alice")

    new = UserStore(db_path, hasher=CountingHasher(time_cost=2))
    try:
        assert await new.authenticate("alice", "wrong") is None
        assert stored_row(db_path, "alice")[0] == old_hash
    finally:
        await new.aclose()


@pytest.mark.parametrize(
    "name", ["", "a" * 65, "alice smith", "alice\n", "ålice", "alice/..", "a:b", "<script>"]
)
async def test_invalid_names_are_refused(users: UserStore, name: str) -> None:
    with pytest.raises(ValueError):
        await users.add(name, "pw")
    assert await users.authenticate(name, "pw") is None
    assert await users.get(name) is None


async def test_valid_name_edges_are_accepted(users: UserStore) -> None:
    for name in ["a", "a" * 64, "A.b_c-9"]:
        assert (await users.add(name, "pw")).name == name


@pytest.mark.parametrize("password", ["", "x" * 1025])
async def test_invalid_passwords_are_refused(
    users: UserStore, hasher: CountingHasher, password: str
) -> None:
    with pytest.raises(ValueError):
        await users.add("alice", password)
    await users.add("alice", "pw")
    hasher.verified = 0
    assert await users.authenticate("alice", password) is None
    assert hasher.verified == 0, "an out-of-range password is never hashed"


async def test_longest_password_is_accepted(users: UserStore) -> None:
    password = "é" * 1024  # code points, not bytes
    await users.add("alice", password)
    assert await users.authenticate("alice", password) == User("alice", ())


@pytest.mark.parametrize(
    "roles", [[""], ["a" * 65], ["ad min"], ["admin\n"], ["a/b"], "admin", [7]]
)
async def test_invalid_roles_are_refused(users: UserStore, roles: Any) -> None:
    with pytest.raises(ValueError):
        await users.add("alice", "pw", roles=roles)
    assert await users.get("alice") is None


async def test_corrupt_roles_fail_closed(users: UserStore, db_path: Path) -> None:
    await users.add("alice", "pw", roles=["admin"])
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE wsgate_users SET roles = ? WHERE name = 'alice'", ('"admin"',))
    conn.close()

    with pytest.raises(StoreUnavailable):
        await users.authenticate("alice", "pw")


async def test_only_argon2id_is_accepted(db_path: Path) -> None:
    with pytest.raises(ValueError):
        UserStore(db_path, hasher=PasswordHasher(type=Type.I))


async def test_closed_store_fails_closed(users: UserStore) -> None:
    await users.add("alice", "pw")
    await users.aclose()
    with pytest.raises(StoreUnavailable):
        await users.authenticate("alice", "pw")
    with pytest.raises(StoreUnavailable):
        await users.get("alice")


async def test_users_and_revocations_share_one_file(users: UserStore, db_path: Path) -> None:
    revocations = SqliteRevocationStore(db_path)
    try:
        await users.add("alice", "pw", roles=["admin"])
        await revocations.revoke_sub("alice", expires_at=time.time() + 60)
        assert await users.authenticate("alice", "pw") == User("alice", ("admin",))
        assert await revocations.is_revoked(sub="alice", jti=None, issued_at=None)
    finally:
        await revocations.aclose()


async def test_default_hasher_is_argon2id_with_library_defaults(db_path: Path) -> None:
    store = UserStore(db_path)
    try:
        await store.add("alice", "pw")
        assert await store.authenticate("alice", "pw") == User("alice", ())
    finally:
        await store.aclose()
    password_hash, _ = stored_row(db_path, "alice")
    assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
