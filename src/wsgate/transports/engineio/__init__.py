"""wsgate's own Engine.IO v4 server (see :mod:`.server`); Socket.IO runs on top of it."""

from wsgate.transports.engineio.server import (
    EngineConfig,
    EngineHandler,
    EngineServer,
    OpenRefused,
)
from wsgate.transports.engineio.session import Session, SessionState, Transport

__all__ = [
    "EngineConfig",
    "EngineHandler",
    "EngineServer",
    "OpenRefused",
    "Session",
    "SessionState",
    "Transport",
]
