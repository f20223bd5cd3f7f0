"""The demo's own settings: the library's, plus what only the demo's login and users need."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from wsgate import Settings


class DemoSettings(Settings):
    """``Settings`` plus the demo's user database and cookie login (``WSGATE_*`` too)."""

    database: Path = Field(
        default=Path("wsgate-demo.db"), description="SQLite file: demo users, revocations"
    )
    secure_cookies: bool = Field(default=False, description="mark cookies Secure (behind TLS)")
    access_token_ttl: float = Field(
        default=900.0, gt=0, description="demo login: access token life, seconds"
    )
    refresh_token_ttl: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="demo login: refresh token life, seconds"
    )
