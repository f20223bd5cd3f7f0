"""Every knob of a wsgate server, from the environment (``WSGATE_*``) or from code.

Settings are validated once, at start-up: a server that cannot be secure
(no key, ``none`` among the algorithms, an origin list that is not a list of
origins) refuses to start rather than running open. Every field has a
keyword ``default=`` so that ``Settings()`` type-checks under mypy and
pyright alike (pyright does not read a positional default of ``Field``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from wsgate.stores.redis_keys import PREFIX_PATTERN

CommaList = Annotated[tuple[str, ...], NoDecode]


def _split_commas(value: Any) -> Any:
    """Environment variables hold ``a,b,c``; code may pass a list or tuple."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """The library's settings; each field is ``WSGATE_<NAME>`` and ``--<name>`` of the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="WSGATE_", extra="forbid", frozen=True, validate_default=True
    )

    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on")

    jwt_secret: SecretStr | str | None = Field(default=None, description="HMAC key (HS256/384/512)")
    """HMAC key (HS256/384/512).

    Given as ``str`` or ``SecretStr``; always held as a ``SecretStr`` (never in a repr).
    """
    jwt_public_key_file: Path | None = Field(
        default=None, description="PEM public key for the RS, PS, ES and EdDSA algorithms"
    )
    jwt_private_key_file: Path | None = Field(
        default=None, description="PEM private key that signs tokens (asymmetric mode)"
    )
    jwt_jwks_url: str | None = Field(default=None, description="JWKS endpoint, keys chosen by kid")
    jwt_algorithms: CommaList | None = Field(
        default=None, description="comma list of accepted algorithms (never none)"
    )
    jwt_issuer: str | None = Field(default=None, description="required iss claim when set")
    jwt_audience: str | None = Field(default=None, description="required aud claim when set")
    jwt_leeway: float = Field(default=0.0, ge=0, le=300, description="clock skew allowed, seconds")
    max_token_lifetime: float = Field(
        default=86_400.0,
        gt=0,
        description="longest access token accepted: exp - iat (exp - now without iat), seconds",
    )
    max_refresh_token_lifetime: float = Field(
        default=30 * 86_400.0, gt=0, description="longest refresh token accepted, seconds"
    )

    allowed_origins: CommaList = Field(
        default=(),
        description="exact origins and https://*.example.com wildcards; default: the origin served",
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, le=300, description="seconds from TCP open to a completed connect"
    )
    max_message_bytes: int = Field(default=65536, ge=64, description="largest accepted message")
    ws_path: str = Field(
        default="/ws", pattern=r"^/[^?#]*$", description="path of the plain WebSocket endpoint"
    )
    rate_limit: float = Field(default=50.0, gt=0, description="events per second per connection")
    max_connections_per_user: int = Field(default=20, ge=1, description="live connections per sub")
    max_rooms_per_connection: int = Field(
        default=100, ge=1, description="rooms one connection may be in at once"
    )
    max_pending_handshakes: int = Field(
        default=1000, ge=1, description="handshakes in flight before new ones are refused"
    )
    max_pending_handshakes_per_address: int = Field(
        default=100, ge=1, description="handshakes in flight from one client address (IPv6: /64)"
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=8192,
        le=1 << 20,
        description="largest HTTP request head under wsgate serve/demo; larger: 431 and close",
    )
    max_headers: int = Field(
        default=100,
        ge=16,
        le=1000,
        description="most header fields in one HTTP request under wsgate serve/demo; more: 431",
    )
    recovery_window: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="seconds a dropped Socket.IO client may come back for what it missed; 0: off",
    )
    recovery_max_packets: int = Field(
        default=1000, ge=1, le=1_000_000, description="broadcasts kept for recovery per node"
    )
    recovery_max_bytes: int = Field(
        default=4_000_000,
        ge=1024,
        le=1 << 31,
        description="bytes of broadcasts kept for recovery per node (about, JSON size)",
    )
    redis_url: str | None = Field(
        default=None, description="share fan-out, revocation and connection caps via Redis"
    )
    redis_prefix: str | None = Field(
        default=None,
        pattern=PREFIX_PATTERN,
        description="namespace of all Redis keys and channels (default: wsgate.dbN, N the URL db)",
    )
    redis_pool_size: int = Field(
        default=64, ge=1, le=10000, description="Redis connections per node; more callers wait"
    )
    redis_timeout: float = Field(
        default=2.0, gt=0, le=60, description="seconds a Redis command (or pool wait) may take"
    )
    connection_lease: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="seconds a node's per-user connection slot lives unless renewed (Redis)",
    )

    allow_query_token: bool = Field(
        default=False, description="accept ?token= on the handshake (leaks into logs: off)"
    )
    trusted_proxies: CommaList = Field(
        default=(), description="proxy IPs whose X-Forwarded-* headers are trusted"
    )
    expiry_grace: float = Field(
        default=0.0, ge=0, le=60, description="seconds after exp a client may still auth:refresh"
    )
    trace_sub_key: SecretStr | str | None = Field(
        default=None,
        description="key of the sub hash in tracing spans (default: derived from jwt_secret)",
    )
    """key of the sub hash in tracing spans (default: derived from jwt_secret).

    Given as ``str`` or ``SecretStr``; always held as a ``SecretStr`` (never in a repr).
    """
    metrics_token: SecretStr | str | None = Field(
        default=None,
        description="bearer token GET /metrics requires; unset: loopback clients only",
    )
    """bearer token GET /metrics requires; unset: loopback clients only.

    Sent as ``Authorization: Bearer <token>``, at least 16 characters. Unset,
    ``/metrics`` answers only clients on a loopback address whose request no
    proxy relayed. Given as ``str`` or ``SecretStr``; always held
    as a ``SecretStr`` (never in a repr).
    """
    asyncapi_path: str | None = Field(
        default=None,
        pattern=r"^/[^?#]*$",
        description="serve the AsyncAPI document of the gateways at this path (off when unset)",
    )
    log_format: Literal["text", "json"] = Field(default="text", description="log line format")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="log level of wsgate's loggers"
    )

    @field_validator("jwt_algorithms", "allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("jwt_secret", "trace_sub_key", "metrics_token", mode="after")
    @classmethod
    def _hide_secret(cls, value: SecretStr | str | None) -> SecretStr | None:
        return SecretStr(value) if isinstance(value, str) else value

    def secret_text(self) -> str | None:
        """The HMAC key as text, or None."""
        secret = self.jwt_secret
        return secret.get_secret_value() if isinstance(secret, SecretStr) else secret

    def metrics_token_text(self) -> str | None:
        """The bearer token of ``/metrics`` as text, or None (loopback clients only)."""
        token = self.metrics_token
        return token.get_secret_value() if isinstance(token, SecretStr) else token

    def trace_sub_key_text(self) -> str | None:
        """The key of ``wsgate.sub_hash`` in spans as text, or None (see wsgate.core.tracing)."""
        key = self.trace_sub_key
        return key.get_secret_value() if isinstance(key, SecretStr) else key

    @field_validator("jwt_algorithms")
    @classmethod
    def _no_none_algorithm(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(alg.lower() == "none" for alg in value):
            raise ValueError("the 'none' algorithm can never be accepted")
        return value

    def own_origins(self) -> tuple[str, ...]:
        """The origins of pages served at ``host:port`` (what ``wsgate demo`` announces).

        The App itself judges by the address each request actually reached
        (see :func:`wsgate.security.origin.served_origins`), so that the
        default holds under any server and port; this is for messages.
        """
        if self.host in {"0.0.0.0", "::", ""}:
            return (f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"http://{host}:{self.port}",)
