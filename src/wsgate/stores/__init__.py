"""Where shared state lives: revocations and demo users.

One small interface (:class:`RevocationStore`), three implementations:
in-process memory, a SQLite file (the embedded default, shared with the
``wsgate`` CLI) and Redis (several nodes). This layer imports nothing from
the core or the transports.
"""

from wsgate.stores.memory import MemoryRevocationStore
from wsgate.stores.redis import RedisRevocationStore
from wsgate.stores.redis_bus import RedisStreamBus
from wsgate.stores.redis_connector import RedisConnector
from wsgate.stores.redis_counter import RedisConnectionCounter
from wsgate.stores.redis_keys import RedisKeys
from wsgate.stores.revocation import (
    Revocation,
    RevocationStore,
    RevocationWatch,
    StoreUnavailable,
)
from wsgate.stores.sqlite import SqliteRevocationStore
from wsgate.stores.users import User, UserStore

__all__ = [
    "MemoryRevocationStore",
    "RedisConnectionCounter",
    "RedisConnector",
    "RedisKeys",
    "RedisRevocationStore",
    "RedisStreamBus",
    "Revocation",
    "RevocationStore",
    "RevocationWatch",
    "SqliteRevocationStore",
    "StoreUnavailable",
    "User",
    "UserStore",
]
