"""``App``: one ASGI application serving the gateways and the HTTP routes beside them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from wsgate.core.bus import RedisBus
from wsgate.core.gateway import Gateway
from wsgate.core.registry import build_registry
from wsgate.core.runtime import Runtime, Verifier
from wsgate.errors import ConfigurationError
from wsgate.metrics import Metrics
from wsgate.security.jwt import JwtConfig, TokenIssuer, TokenVerifier
from wsgate.security.limits import Limits, LimitSettings
from wsgate.security.origin import OriginPolicy
from wsgate.settings import Settings
from wsgate.stores.redis_counter import RedisConnectionCounter
from wsgate.stores.revocation import RevocationStore
from wsgate.transports.socketio import SocketIOTransport
from wsgate.transports.websocket import WebSocketTransport

log = logging.getLogger("wsgate.app")

SOCKETIO_PATH = "/socket.io"


class App:
    """An ASGI app: ``uvicorn module:app`` runs it, Starlette/FastAPI can mount it.

    Construction validates the settings: a server without a usable key, or
    with an origin list that cannot be parsed, does not start.
    """

    def __init__(
        self,
        gateways: Sequence[Gateway],
        settings: Settings | None = None,
        *,
        routes: Sequence[BaseRoute] = (),
        middleware: Sequence[Middleware] = (),
        verifier: Verifier | None = None,
        revocations: RevocationStore | None = None,
        on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        try:
            self.origins = OriginPolicy(self.settings.effective_origins())
        except ValueError as exc:
            raise ConfigurationError(f"allowed_origins: {exc}") from None
        self.metrics = Metrics()
        self._own_verifier = verifier is None
        self.revocations = revocations
        self._on_shutdown = tuple(on_shutdown)
        self.verifier: Verifier = verifier or TokenVerifier(
            jwt_config(self.settings, require_jti=revocations is not None)
        )
        # With Redis the per-user connection cap holds across every node; its
        # lease renewal starts and stops with the runtime, like the bus.
        shared_slots = (
            RedisConnectionCounter(self.settings.redis_url, self.settings.max_connections_per_user)
            if self.settings.redis_url
            else None
        )
        self.runtime = Runtime(
            build_registry(gateways),
            verifier=self.verifier,
            origins=self.origins,
            metrics=self.metrics,
            allow_query_token=self.settings.allow_query_token,
            revocations=revocations,
            limits=Limits(
                LimitSettings(
                    rate_limit=self.settings.rate_limit,
                    max_message_bytes=self.settings.max_message_bytes,
                    max_connections_per_user=self.settings.max_connections_per_user,
                    max_pending_handshakes=self.settings.max_pending_handshakes,
                ),
                connections=shared_slots,
            ),
            leeway=self.settings.jwt_leeway,
            expiry_grace=self.settings.expiry_grace,
        )
        self.server = self.runtime.server
        self.server.max_rooms_per_connection = self.settings.max_rooms_per_connection
        if self.settings.redis_url:
            self.server.use_bus(RedisBus(self.settings.redis_url))
        self.socketio = SocketIOTransport(
            self.runtime,
            origins=self.origins,
            connect_timeout=self.settings.connect_timeout,
            max_message_bytes=self.settings.max_message_bytes,
        )
        self.websocket = WebSocketTransport(
            self.runtime,
            connect_timeout=self.settings.connect_timeout,
            max_message_bytes=self.settings.max_message_bytes,
        )
        builtin: list[BaseRoute] = [
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/metrics", self._metrics_endpoint, methods=["GET"]),
        ]
        self.http = Starlette(
            routes=[*builtin, *routes],
            middleware=[
                Middleware(
                    _PolicyCORSMiddleware,  # type: ignore[arg-type]  # starlette's stub is too narrow
                    policy=self.origins,
                    allow_credentials=True,
                    allow_methods=["GET", "POST"],
                    allow_headers=["content-type", "authorization"],
                ),
                *middleware,
            ],
            lifespan=self._lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = _route_path(scope)
            if path == SOCKETIO_PATH or path.startswith(SOCKETIO_PATH + "/"):
                if not self._origin_acceptable(scope):
                    await _deny(scope, receive, send)
                    return
                if path != scope["path"]:
                    scope = {**scope, "path": path}
                await self.socketio.asgi(scope, receive, send)
                return
            if scope["type"] == "websocket" and path == self.settings.ws_path:
                # The same origin rule as Socket.IO, before the socket is accepted.
                if not self._origin_acceptable(scope):
                    await _deny(scope, receive, send)
                    return
                await self.websocket(scope, receive, send)
                return
        await self.http(scope, receive, send)

    def _origin_acceptable(self, scope: Scope) -> bool:
        """A present Origin must be allowed; a missing one is judged by the token later."""
        for name, value in scope.get("headers") or ():
            if name.lower() == b"origin":
                return self.origins.is_allowed(value.decode("latin-1"))
        return True

    def token_issuer(self) -> TokenIssuer:
        """Signs tokens with this App's key and claims (HMAC secret or private key)."""
        return TokenIssuer(jwt_config(self.settings))

    async def disconnect_token(self, jti: str, reason: str = "token_revoked") -> int:
        """Close every live connection on this node that holds the token ``jti``.

        The revocation follower would do it too once the store announces the
        revocation; calling this right after revoking makes it immediate here.
        Each client gets ``auth:revoked`` (or ``auth:expired``) before the close.
        """
        doomed = [c for c in self.server.connections.values() if c.principal.jti == jti]
        closed = 0
        for connection in doomed:
            if await self.runtime.sessions.end(connection, reason):
                closed += 1
        return closed

    async def _metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with self.lifespan():
            yield

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Start and stop what the App owns; call it from a host app's lifespan when mounted.

        Without it the revocation follower still starts, on the first
        connection; the lifespan starts it at once and stops it cleanly.
        """
        self.runtime.start()
        try:
            yield
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop background work, then run the ``on_shutdown`` callbacks (e.g. close stores)."""
        await self.runtime.aclose()
        for callback in self._on_shutdown:
            try:
                await callback()
            except Exception:
                log.exception("an on_shutdown callback failed")
        if self._own_verifier:
            closer = getattr(self.verifier, "aclose", None)
            if closer is not None:
                await closer()


class _PolicyCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling, judged by the same origin policy as the sockets."""

    def __init__(self, app: ASGIApp, *, policy: OriginPolicy, **kwargs: Any) -> None:
        super().__init__(app, allow_origins=(), **kwargs)
        self.policy = policy

    def is_allowed_origin(self, origin: str) -> bool:
        return self.policy.is_allowed(origin)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette keeps the full path and sets root_path)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


async def _deny(scope: Scope, receive: Receive, send: Send) -> None:
    """HTTP 403 before any Engine.IO handling, for polling and websocket alike."""
    log.warning("refused a handshake from a disallowed origin")
    if scope["type"] == "websocket":
        # Closing before accept makes the ASGI server answer the upgrade with 403.
        await send({"type": "websocket.close", "code": 1008})
        return
    response = PlainTextResponse("Origin not allowed", status_code=403)
    await response(scope, receive, send)


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
        secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
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
    )
