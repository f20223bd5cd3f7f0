"""Where shared state lives: revocations, refresh-token families and demo users.

Two small interfaces (:class:`RevocationStore`, :class:`RefreshFamilyStore`),
each with three implementations: in-process memory, a SQLite file (the
embedded default, shared with the ``wsgate`` CLI) and Redis (several nodes).
This layer imports nothing from the core or the transports.
"""

from wsgate.stores.memory import MemoryRevocationStore
from wsgate.stores.redis import RedisRevocationStore
from wsgate.stores.redis_bus import RedisStreamBus
from wsgate.stores.redis_connector import RedisConnector
from wsgate.stores.redis_counter import RedisConnectionCounter
from wsgate.stores.redis_keys import RedisKeys
from wsgate.stores.refresh_families import (
    MemoryRefreshFamilies,
    RefreshFamilyStore,
    Rotation,
)
from wsgate.stores.refresh_redis import RedisRefreshFamilies
from wsgate.stores.refresh_sqlite import SqliteRefreshFamilies
from wsgate.stores.revocation import (
    Revocation,
    RevocationStore,
    RevocationWatch,
    StoreUnavailable,
)
from wsgate.stores.sqlite import SqliteRevocationStore
from wsgate.stores.users import User, UserStore

__all__ = [
    "MemoryRefreshFamilies",
    "MemoryRevocationStore",
    "RedisConnectionCounter",
    "RedisConnector",
    "RedisKeys",
    "RedisRefreshFamilies",
    "RedisRevocationStore",
    "RedisStreamBus",
    "RefreshFamilyStore",
    "Revocation",
    "RevocationStore",
    "RevocationWatch",
    "Rotation",
    "SqliteRefreshFamilies",
    "SqliteRevocationStore",
    "StoreUnavailable",
    "User",
    "UserStore",
]
