"""Assembles the demo: gateways, SQLite users and revocations, cookie login, the page."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from wsgate import App, RedisRevocationStore, RevocationStore, SqliteRevocationStore
from wsgate.demo.auth_routes import DemoAuth
from wsgate.demo.gateways import Admin, Chat
from wsgate.demo.settings import DemoSettings
from wsgate.demo.showcase import Showcase
from wsgate.stores import (
    RedisRefreshFamilies,
    RefreshFamilyStore,
    SqliteRefreshFamilies,
    UserStore,
)

STATIC = Path(__file__).parent / "static"

PAGE_HEADERS = {
    # The page runs only its own scripts and talks only to its own origin.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


def revocation_store(settings: DemoSettings) -> RevocationStore:
    """Redis when configured (several nodes share revocations), else the SQLite file."""
    if settings.redis_url:
        return RedisRevocationStore(
            settings.redis_url, prefix=settings.redis_prefix, timeout=settings.redis_timeout
        )
    return SqliteRevocationStore(settings.database)


def refresh_families(settings: DemoSettings, revocations: RevocationStore) -> RefreshFamilyStore:
    """Refresh-token families where the revocations are: Redis when configured, else SQLite."""
    if isinstance(revocations, RedisRevocationStore):
        return RedisRefreshFamilies(revocations.connector)  # one pool, one prefix
    return SqliteRefreshFamilies(settings.database)


def create_app(settings: DemoSettings) -> App:
    """The demo App for ``settings`` (which must already hold a key)."""
    users = UserStore(settings.database)
    revocations = revocation_store(settings)
    families = refresh_families(settings, revocations)
    auth = DemoAuth(users, revocations, settings, families)
    app = App(
        [Chat(), Admin()],
        settings,
        revocations=revocations,
        on_shutdown=[users.aclose, revocations.aclose, families.aclose, auth.aclose],
        routes=[
            Route("/", page, methods=["GET"]),
            *auth.routes(),
            *Showcase(auth).routes(),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
    )
    auth.bind(app)
    return app
