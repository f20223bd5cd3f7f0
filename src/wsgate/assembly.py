"""The build step: an App's parts from its Settings, wired in one place.

:class:`~wsgate.App` is routing and lifespan only; everything that turns
settings into working objects (the origin policy, the JWT verifier, the
stores ``redis_url`` selects, the core, the transports) happens here, so a
reader finds the wiring of the layers in one function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wsgate.core.admission import Verifier
from wsgate.core.bus import Bus
from wsgate.core.dependencies import Injector
from wsgate.core.gateway import Gateway
from wsgate.core.handshake import served_of
from wsgate.core.interceptors import Interceptor
from wsgate.core.recovery import Recovery
from wsgate.core.registry import build_registry
from wsgate.core.runtime import Runtime
from wsgate.core.tracing import Tracing, sub_hash_key
from wsgate.errors import ConfigurationError
from wsgate.metrics import Metrics
from wsgate.security.jwt import JwtConfig, TokenIssuer, TokenVerifier
from wsgate.security.limits import ConnectionSlots
from wsgate.security.origin import OriginPolicy
from wsgate.settings import Settings
from wsgate.stores.redis import RedisRevocationStore
from wsgate.stores.redis_bus import RedisStreamBus
from wsgate.stores.redis_connector import RedisConnector
from wsgate.stores.redis_control import RedisControl
from wsgate.stores.redis_counter import RedisConnectionCounter
from wsgate.stores.redis_keys import RedisKeys
from wsgate.stores.redis_recovery import RedisRecoveryStore
from wsgate.stores.revocation import RevocationStore
from wsgate.transports.socketio import SocketIOTransport
from wsgate.transports.websocket import WebSocketTransport

Closer = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Assembly:
    """Everything an App is made of; ``closers`` are what it built and must close."""

    settings: Settings
    origins: OriginPolicy
    metrics: Metrics
    verifier: Verifier
    revocations: RevocationStore | None
    runtime: Runtime
    socketio: SocketIOTransport
    websocket: WebSocketTransport
    closers: tuple[Closer, ...]
    injector: Injector
    redis: RedisConnector | None
    gateways: tuple[Gateway, ...]


def assemble(
    gateways: Sequence[Gateway],
    settings: Settings,
    *,
    verifier: Verifier | None = None,
    revocations: RevocationStore | None = None,
    interceptors: Sequence[Interceptor] = (),
    tracer_provider: Any = None,
) -> Assembly:
    """Build the parts of an App; a setting that cannot give a secure server raises here.

    So does a gateway that cannot be planned (a handler parameter that is
    neither ctx, the body nor a ``Depends``; a dependency cycle; ...).

    ``redis_url`` selects Redis for everything shared between nodes: the
    broadcast bus, the per-user connection cap and (unless ``revocations``
    is given) the revocation store. ``tracer_provider`` is an OpenTelemetry
    ``TracerProvider`` (default: the global one, see :mod:`wsgate.core.tracing`).
    """
    try:
        origins = OriginPolicy(settings.allowed_origins)
    except ValueError as exc:
        raise ConfigurationError(f"allowed_origins: {exc}") from None
    metrics = Metrics()
    closers: list[Closer] = []
    shared_slots: ConnectionSlots | None = None
    bus: Bus | None = None
    shared_recovery: RedisRecoveryStore | None = None
    control: RedisControl | None = None
    redis: RedisConnector | None = None
    if settings.redis_url:
        # One connector for the node: one bounded pool, one health prober
        # (one outage log). Each store retains it; the last one closed closes
        # it. A Redis revocation store given for the same Redis lends its own.
        if (
            isinstance(revocations, RedisRevocationStore)
            and revocations.connector.url == settings.redis_url
            and revocations.keys.prefix
            == RedisKeys.for_url(settings.redis_url, settings.redis_prefix).prefix
        ):
            redis = revocations.connector
        else:
            redis = RedisConnector(
                settings.redis_url,
                prefix=settings.redis_prefix,
                pool_size=settings.redis_pool_size,
                timeout=settings.redis_timeout,
            )
        if revocations is None:
            redis_revocations = RedisRevocationStore(redis)
            closers.append(redis_revocations.aclose)
            revocations = redis_revocations
        shared_slots = RedisConnectionCounter(
            redis, settings.max_connections_per_user, lease=settings.connection_lease
        )
        bus = RedisStreamBus(redis)
        control = RedisControl(redis)
        if settings.recovery_window > 0:
            shared_recovery = RedisRecoveryStore(redis)
            closers.append(shared_recovery.aclose)
    if verifier is None:
        own = TokenVerifier(jwt_config(settings, require_jti=revocations is not None))
        closers.append(own.aclose)
        verifier = own
    injector = Injector()
    runtime = Runtime(
        build_registry(gateways, injector=injector, interceptors=interceptors),
        verifier=verifier,
        origins=origins,
        metrics=metrics,
        allow_query_token=settings.allow_query_token,
        revocations=revocations,
        rate_limit=settings.rate_limit,
        max_message_bytes=settings.max_message_bytes,
        connection_slots=shared_slots,
        max_connections_per_user=settings.max_connections_per_user,
        max_pending_handshakes=settings.max_pending_handshakes,
        max_pending_handshakes_per_address=settings.max_pending_handshakes_per_address,
        max_rooms_per_connection=settings.max_rooms_per_connection,
        connect_timeout=settings.connect_timeout,
        leeway=settings.jwt_leeway,
        expiry_grace=settings.expiry_grace,
        recovery=Recovery(
            window=settings.recovery_window,
            max_packets=settings.recovery_max_packets,
            max_bytes=settings.recovery_max_bytes,
            shared=shared_recovery,
        ),
        tracing=Tracing(
            provider=tracer_provider,
            sub_key=sub_hash_key(settings.trace_sub_key_text(), settings.secret_text()),
        ),
        control=control,
    )
    if bus is not None:
        runtime.fanout.use_bus(bus)

    def cors_allowed(origin: str, scope: Any) -> bool:
        return origins.is_allowed(origin, served=served_of(scope))

    return Assembly(
        settings=settings,
        origins=origins,
        metrics=metrics,
        verifier=verifier,
        revocations=revocations,
        runtime=runtime,
        socketio=SocketIOTransport(runtime.port, origin_allowed=cors_allowed),
        websocket=WebSocketTransport(runtime.port),
        closers=tuple(closers),
        injector=injector,
        gateways=tuple(gateways),
        redis=redis,
    )


def read_text(path: Any, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None


def jwt_config(settings: Settings, *, require_jti: bool = False) -> JwtConfig:
    """The verifier's configuration; no key at all is a start-up error, never an open server."""
    if not (settings.jwt_secret or settings.jwt_public_key_file or settings.jwt_jwks_url):
        raise ConfigurationError(
            "no JWT key configured: set WSGATE_JWT_SECRET, WSGATE_JWT_PUBLIC_KEY_FILE "
            "or WSGATE_JWT_JWKS_URL (or the matching --jwt-* flag)"
        )
    return JwtConfig(
        secret=settings.secret_text(),
        public_key_pem=(
            read_text(settings.jwt_public_key_file, "public key file")
            if settings.jwt_public_key_file
            else None
        ),
        private_key_pem=(
            read_text(settings.jwt_private_key_file, "private key file")
            if settings.jwt_private_key_file
            else None
        ),
        jwks_url=settings.jwt_jwks_url,
        algorithms=settings.jwt_algorithms,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway,
        require_jti=require_jti,
        max_lifetime=settings.max_token_lifetime,
        max_refresh_lifetime=settings.max_refresh_token_lifetime,
    )


def token_issuer(settings: Settings) -> TokenIssuer:
    """Signs tokens with the key and claims of ``settings`` (HMAC secret or private key).

    Tokens it issues verify on an App built from the same settings.
    """
    return TokenIssuer(jwt_config(settings))
