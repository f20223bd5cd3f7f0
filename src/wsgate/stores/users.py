"""Demo users with argon2id password hashes, in a SQLite file.

The table (``wsgate_users``) can share the file with the revocation table,
as the demo does with ``wsgate-demo.db``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from wsgate.stores.revocation import StoreUnavailable
from wsgate.stores.sqlite_thread import DEFAULT_BUSY_TIMEOUT, SqliteThreadStore

log = logging.getLogger("wsgate.stores")

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ROLE = re.compile(r"[A-Za-z0-9_:-]{1,64}")
MAX_PASSWORD_CHARS = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wsgate_users (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class User:
    """A user as the login route needs it: the token's ``sub`` and ``roles``."""

    name: str
    roles: tuple[str, ...]


def check_name(name: str) -> str:
    """1..64 characters of ``[A-Za-z0-9_.-]``: safe in a token, a log line and a room name."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError("user name must be 1..64 characters of A-Z a-z 0-9 _ . -")
    return name


def check_password(password: str) -> str:
    """1..1024 characters: the upper bound keeps hashing cost bounded."""
    if not isinstance(password, str) or not 1 <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValueError(f"password must be 1..{MAX_PASSWORD_CHARS} characters")
    return password


def check_roles(roles: Sequence[str]) -> tuple[str, ...]:
    """Each role 1..64 characters of ``[A-Za-z0-9_:-]``; duplicates dropped, order kept."""
    if isinstance(roles, str):
        raise ValueError("roles must be a sequence of strings, not one string")
    for role in roles:
        if not isinstance(role, str) or not _ROLE.fullmatch(role):
            raise ValueError("each role must be 1..64 characters of A-Z a-z 0-9 _ : -")
    return tuple(dict.fromkeys(roles))


class UserStore(SqliteThreadStore):
    """Users in ``wsgate_users``; names are case-sensitive.

    Hashing runs in worker threads, at most ``max_concurrent_hashes`` at once:
    argon2id is memory-hard on purpose (64 MiB each by default), so a flood
    of logins must queue rather than exhaust memory. Database work runs on one
    dedicated thread (see :class:`wsgate.stores.sqlite_thread.SqliteThread`).
    """

    _thread_name = "wsgate-users"
    _what = "user store"
    _schema = _SCHEMA

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hasher: PasswordHasher | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        max_concurrent_hashes: int = 2,
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        if self._hasher.type is not Type.ID:
            raise ValueError("UserStore hashes with argon2id only")
        super().__init__(os.fspath(path), busy_timeout)
        self._hashing = asyncio.Semaphore(max_concurrent_hashes)
        self._dummy_hash: str | None = None

    async def add(self, name: str, password: str, roles: Sequence[str] = ()) -> User:
        """Create the user, or replace the password and roles of an existing one.

        Replacing is what ``wsgate users add`` needs to reset a demo password
        without a separate command; raises :class:`ValueError` on invalid input.
        """
        user = User(check_name(name), check_roles(roles))
        password_hash = await self._hash(check_password(password))
        await self._call(self._upsert, user, password_hash)
        return user

    async def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password matches, else ``None``.

        An unknown name still costs one verification (against a dummy hash
        made with the same parameters), so response time does not tell which
        users exist. A hash made with older parameters is upgraded on success.
        """
        try:
            check_name(name)
            check_password(password)
        except ValueError:
            return None  # no user can have this name or password: nothing to reveal
        dummy = await self._dummy()
        row = await self._call(self._load, name)
        if row is None:
            await self._verify(dummy, password)
            return None
        user, stored_hash = row
        if not await self._verify(stored_hash, password):
            return None
        if self._hasher.check_needs_rehash(stored_hash):
            await self._rehash(user, stored_hash, password)
        return user

    async def get(self, name: str) -> User | None:
        """The user called ``name``, or ``None``."""
        try:
            check_name(name)
        except ValueError:
            return None
        row = await self._call(self._load, name)
        return None if row is None else row[0]

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._hashing:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except VerificationError:
                return False
            except InvalidHashError:
                log.error("a stored password hash is not a valid argon2 hash")
                return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    async def _rehash(self, user: User, old_hash: str, password: str) -> None:
        new_hash = await self._hash(password)
        try:
            await self._call(self._replace_hash, user.name, old_hash, new_hash)
        except StoreUnavailable:
            log.warning("could not upgrade the password hash of %s", user.name)

    # Everything below runs on the store thread.

    def _upsert(self, user: User, password_hash: str) -> None:
        self._db().execute(
            "INSERT INTO wsgate_users (name, password_hash, roles, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
            " password_hash = excluded.password_hash, roles = excluded.roles,"
            " updated_at = excluded.updated_at",
            (user.name, password_hash, json.dumps(list(user.roles)), time.time()),
        )

    def _load(self, name: str) -> tuple[User, str] | None:
        row = (
            self._db()
            .execute("SELECT password_hash, roles FROM wsgate_users WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            return None
        password_hash, raw_roles = row
        try:
            roles = check_roles(json.loads(raw_roles))
        except (ValueError, TypeError) as exc:
            # Roles grant rights: never guess what a damaged row meant.
            raise sqlite3.DataError(f"user {name} has corrupt roles") from exc
        return User(name, roles), password_hash

    def _replace_hash(self, name: str, old_hash: str, new_hash: str) -> None:
        # Only if unchanged: a password set meanwhile must not be overwritten.
        self._db().execute(
            "UPDATE wsgate_users SET password_hash = ? WHERE name = ? AND password_hash = ?",
            (new_hash, name, old_hash),
        )
