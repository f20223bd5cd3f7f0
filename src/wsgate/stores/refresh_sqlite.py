"""Refresh-token families in a SQLite file (the demo's ``wsgate-demo.db``).

Atomic across every process that opens the file: :meth:`rotate` runs in one
``BEGIN IMMEDIATE`` transaction (SQLite's write lock is taken before the row
is read), so two servers, or twenty requests of one, can never both see the
same token as current.
"""

from __future__ import annotations

import os
import sqlite3
import time

from wsgate.stores.refresh_families import FamilyState, Rotation, check_family_args
from wsgate.stores.revocation import check_value
from wsgate.stores.sqlite_thread import DEFAULT_BUSY_TIMEOUT, SqliteThreadStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wsgate_refresh_families (
    family TEXT PRIMARY KEY NOT NULL,
    sub TEXT NOT NULL,
    current_jti TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS wsgate_refresh_families_expiry
    ON wsgate_refresh_families (expires_at);
"""


class SqliteRefreshFamilies(SqliteThreadStore):
    """Families as rows of ``wsgate_refresh_families``; expired rows are purged at each login."""

    _thread_name = "wsgate-refresh"
    _what = "refresh family store"
    _schema = _SCHEMA

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> None:
        super().__init__(os.fspath(path), busy_timeout)

    async def start(self, family: str, *, sub: str, jti: str, expires_at: float) -> None:
        check_family_args(family, jti, expires_at)
        check_value(sub, "sub")
        await self._call(self._start, family, sub, jti, expires_at)

    async def rotate(
        self, family: str, *, presented: str, successor: str, expires_at: float
    ) -> Rotation:
        check_family_args(family, successor, expires_at)
        return await self._call(self._rotate, family, presented, successor, expires_at)

    async def revoke(self, family: str) -> None:
        await self._call(self._revoke, family)

    # Everything below runs on the store thread.

    def _start(self, family: str, sub: str, jti: str, expires_at: float) -> None:
        db = self._db()
        with _immediate(db):
            db.execute("DELETE FROM wsgate_refresh_families WHERE expires_at < ?", (time.time(),))
            db.execute(
                "INSERT OR REPLACE INTO wsgate_refresh_families"
                " (family, sub, current_jti, state, expires_at) VALUES (?, ?, ?, ?, ?)",
                (family, sub, jti, FamilyState.ACTIVE.value, expires_at),
            )

    def _rotate(self, family: str, presented: str, successor: str, expires_at: float) -> Rotation:
        db = self._db()
        with _immediate(db):
            row = db.execute(
                "SELECT current_jti, state, expires_at FROM wsgate_refresh_families"
                " WHERE family = ?",
                (family,),
            ).fetchone()
            if row is None or row[2] < time.time():
                return Rotation.UNKNOWN
            current, state, stored_expiry = row
            if state != FamilyState.ACTIVE.value:
                return Rotation.REVOKED
            keep_until = max(stored_expiry, expires_at)
            if current == presented:
                db.execute(
                    "UPDATE wsgate_refresh_families SET current_jti = ?, expires_at = ?"
                    " WHERE family = ?",
                    (successor, keep_until, family),
                )
                return Rotation.ROTATED
            db.execute(
                "UPDATE wsgate_refresh_families SET state = ?, expires_at = ? WHERE family = ?",
                (FamilyState.REVOKED.value, keep_until, family),
            )
            return Rotation.REUSED

    def _revoke(self, family: str) -> None:
        self._db().execute(
            "UPDATE wsgate_refresh_families SET state = ? WHERE family = ?",
            (FamilyState.REVOKED.value, family),
        )


class _immediate:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
