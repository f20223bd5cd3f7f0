"""The demo's own settings: the library's, plus what only the demo's login and users need."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from wsgate import Settings, check_rate_limit


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
    login_limit_per_address: str = Field(
        default="5/minute;30/hour",
        description="demo login: attempts per client address (IPv6 /64), then 429",
    )
    login_limit_per_user: str = Field(
        default="20/minute;100/hour",
        description="demo login: attempts per user name from all addresses, then 429",
    )

    @field_validator("login_limit_per_address", "login_limit_per_user")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        return check_rate_limit(value)

    @model_validator(mode="after")
    def _ttls_within_the_maxima(self) -> Self:
        """The demo must never sign a token its own verifier would refuse as too long-lived."""
        if self.access_token_ttl > self.max_token_lifetime:
            raise ValueError("access_token_ttl is longer than max_token_lifetime")
        if self.refresh_token_ttl > self.max_refresh_token_lifetime:
            raise ValueError("refresh_token_ttl is longer than max_refresh_token_lifetime")
        return self
