"""The Engine.IO fixture: every message is echoed back, at ``/engine.io/``."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from wsgate.transports.engineio import EngineConfig, EngineServer, Session

REFERENCE = EngineConfig(
    ping_interval=0.3, ping_timeout=0.2, max_payload=1_000_000, cors=lambda origin, scope: True
)
"""The suites' reference configuration."""


class Echo:
    """An :class:`~wsgate.transports.engineio.EngineHandler` that echoes every message."""

    def open(self, session: Session, scope: Scope) -> None:
        return None

    async def message(self, session: Session, data: str | bytes) -> None:
        session.send(("4" + data) if isinstance(data, str) else data)

    def closing(self, session: Session, reason: str) -> None:
        return None


class EngineIOFixture:
    """ASGI app: ``/engine.io/`` is the engine, anything else 404."""

    def __init__(self) -> None:
        self.engine = EngineServer(Echo(), REFERENCE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith("/engine.io"):
            await self.engine(scope, receive, send)
            return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
