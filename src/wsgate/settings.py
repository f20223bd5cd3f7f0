"""Every knob of a wsgate server, from the environment (``WSGATE_*``) or from code.

Settings are validated once, at start-up: a server that cannot be secure
(no key, ``none`` among the algorithms, an origin list that is not a list of
origins) refuses to start rather than running open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[tuple[str, ...], NoDecode]


def _split_commas(value: Any) -> Any:
    """Environment variables hold ``a,b,c``; code may pass a list or tuple."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """The contract's settings table; each field is ``WSGATE_<NAME>`` and ``--<name>``."""

    model_config = SettingsConfigDict(
        env_prefix="WSGATE_", extra="forbid", frozen=True, validate_default=True
    )

    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on")

    jwt_secret: SecretStr | None = Field(None, description="HMAC key (HS256/384/512)")
    jwt_public_key_file: Path | None = Field(
        None, description="PEM public key for RS*/PS*/ES*/EdDSA verification"
    )
    jwt_private_key_file: Path | None = Field(
        None, description="PEM private key the demo's login signs with (asymmetric mode)"
    )
    jwt_jwks_url: str | None = Field(None, description="JWKS endpoint, keys chosen by kid")
    jwt_algorithms: CommaList | None = Field(
        None, description="comma list of accepted algorithms (never none)"
    )
    jwt_issuer: str | None = Field(None, description="required iss claim when set")
    jwt_audience: str | None = Field(None, description="required aud claim when set")
    jwt_leeway: float = Field(0.0, ge=0, le=300, description="clock skew allowed, seconds")

    allowed_origins: CommaList = Field(
        (), description="exact origins and https://*.example.com wildcards; default own origin"
    )
    connect_timeout: float = Field(
        10.0, gt=0, le=300, description="seconds from TCP open to a completed connect"
    )
    max_message_bytes: int = Field(65536, ge=64, description="largest accepted message")
    ws_path: str = Field(
        "/ws", pattern=r"^/[^?#]*$", description="path of the plain WebSocket endpoint"
    )
    rate_limit: float = Field(50.0, gt=0, description="events per second per connection")
    max_connections_per_user: int = Field(20, ge=1, description="live connections per sub")
    max_rooms_per_connection: int = Field(
        100, ge=1, description="rooms one connection may be in at once"
    )
    max_pending_handshakes: int = Field(
        1000, ge=1, description="handshakes in flight before new ones are refused"
    )
    database: Path = Field(Path("wsgate-demo.db"), description="SQLite file: users, revocations")
    redis_url: str | None = Field(
        None, description="share fan-out, revocation and connection caps via Redis"
    )
    secure_cookies: bool = Field(False, description="mark cookies Secure (behind TLS)")

    allow_query_token: bool = Field(
        False, description="accept ?token= on the handshake (leaks into logs: off)"
    )
    trusted_proxies: CommaList = Field(
        (), description="proxy IPs whose X-Forwarded-* headers are trusted"
    )
    access_token_ttl: float = Field(900.0, gt=0, description="demo login: access token life")
    refresh_token_ttl: float = Field(
        7 * 24 * 3600.0, gt=0, description="demo login: refresh token life"
    )
    expiry_grace: float = Field(
        0.0, ge=0, le=60, description="seconds after exp a client may still auth:refresh"
    )
    log_format: Literal["text", "json"] = Field("text", description="log line format")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="")

    _split = field_validator("jwt_algorithms", "allowed_origins", "trusted_proxies", mode="before")(
        _split_commas
    )

    @field_validator("jwt_algorithms")
    @classmethod
    def _no_none_algorithm(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(alg.lower() == "none" for alg in value):
            raise ValueError("the 'none' algorithm can never be accepted")
        return value

    def own_origins(self) -> tuple[str, ...]:
        """The origin a browser shows for pages this server serves itself.

        A wildcard bind address is not an origin; browsers reach such a server
        as localhost, so that is what is allowed (fail closed, not open).
        """
        if self.host in {"0.0.0.0", "::", ""}:
            return (f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"http://{host}:{self.port}",)

    def effective_origins(self) -> tuple[str, ...]:
        """The allowed origins, or the server's own when none were configured."""
        return self.allowed_origins or self.own_origins()
