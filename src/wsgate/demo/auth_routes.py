"""The demo's cookie login: ``POST /auth/login``, ``/auth/refresh``, ``/auth/logout``
and ``GET /auth/session``.

Cookies are HttpOnly (scripts cannot read the token) and SameSite=Lax (a
cross-site form post does not carry them); the refresh cookie is scoped to
``/auth`` so it never travels with a socket handshake. Requests from a
disallowed ``Origin`` are refused, whatever their cookies.

``/auth/refresh`` also returns the new access token in its body: the page
cannot read its HttpOnly cookie, and ``auth:refresh`` on a live socket needs
the token itself (docs/decisions/demo-page.md says why this is safe enough).
``GET /auth/session`` answers 200 whether or not anyone is signed in, so the
page's probe at load leaves no 401 in the browser console.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wsgate import (
    ConfigurationError,
    Handshake,
    Principal,
    RevocationStore,
    StoreUnavailable,
    TokenError,
    TokenIssuer,
)
from wsgate.demo.settings import DemoSettings
from wsgate.stores import UserStore

if TYPE_CHECKING:
    from wsgate import App

log = logging.getLogger("wsgate.demo.auth")

ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"
MAX_LOGIN_BODY = 4096


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "code": code, "message": message}}, status)


def spell_samesite(response: Response) -> Response:
    """``SameSite=Lax`` as RFC 6265bis and the contract spell it (Starlette writes ``lax``).

    Browsers compare case-insensitively; clients and checks that read the
    header literally should see the standard spelling.
    """
    response.raw_headers = [
        (name, value.replace(b"SameSite=lax", b"SameSite=Lax") if name == b"set-cookie" else value)
        for name, value in response.raw_headers
    ]
    return response


def store_down() -> JSONResponse:
    """Fail closed, in the contract's error shape, when users or revocations cannot answer."""
    return error(503, "unavailable", "Try again later")


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` bytes (nothing more is read).

    ``request.body()`` would buffer whatever a client sends before any size
    check: an unauthenticated endpoint must not let anyone fill the memory.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def cookies_of(request: Request) -> dict[str, str]:
    """The request's cookies, read as the gateways read them (the first duplicate wins)."""
    return dict(Handshake.from_asgi_scope(request.scope, transport="http").cookies)


def login_disabled() -> JSONResponse:
    return error(503, "login_unavailable", "Login is disabled: this server only verifies tokens")


class DemoAuth:
    """Login, refresh and logout for the demo's SQLite users."""

    def __init__(
        self, users: UserStore, revocations: RevocationStore, settings: DemoSettings
    ) -> None:
        self.users = users
        self.revocations = revocations
        self.settings = settings
        self._app: App | None = None
        self._issuer: TokenIssuer | None = None

    def bind(self, app: App) -> None:
        """Use ``app``'s settings, key and verifier (the App is built after its routes)."""
        self._app = app
        try:
            self._issuer = app.token_issuer()
        except ConfigurationError as exc:
            # Verify-only keys (a public key or JWKS without a private key):
            # tokens come from the identity provider, so the demo cannot log in.
            log.warning("demo login disabled: %s", exc)
            self._issuer = None

    @property
    def issuer(self) -> TokenIssuer | None:
        """Signs the demo's tokens; None when the server only verifies (no signing key)."""
        return self._issuer

    @property
    def app(self) -> App:
        assert self._app is not None, "DemoAuth.bind(app) was not called"
        return self._app

    def routes(self) -> list[Route]:
        return [
            Route("/auth/login", self.login, methods=["POST"]),
            Route("/auth/refresh", self.refresh, methods=["POST"]),
            Route("/auth/logout", self.logout, methods=["POST"]),
            Route("/auth/session", self.session, methods=["GET"]),
        ]

    async def session(self, request: Request) -> Response:
        """Who the cookies say is signed in; 200 either way (the page probes it at load).

        Signed out, ``refreshable`` tells the page whether ``POST
        /auth/refresh`` would succeed, so it never makes a request it knows
        will be refused.
        """
        if refused := self.cross_origin(request):
            return refused
        cookies = cookies_of(request)
        try:
            principal = await self.valid(cookies.get(ACCESS_COOKIE), "access")
            if principal is not None:
                return JSONResponse(
                    {
                        "signed_in": True,
                        "sub": principal.sub,
                        "roles": sorted(principal.roles),
                        "expires_at": principal.expires_at,
                    }
                )
            refreshable = await self.valid(cookies.get(REFRESH_COOKIE), "refresh") is not None
        except StoreUnavailable:
            return store_down()
        return JSONResponse({"signed_in": False, "refreshable": refreshable})

    async def valid(self, token: str | None, use: Literal["access", "refresh"]) -> Principal | None:
        """The principal of ``token`` when it verifies and is not revoked, else None.

        Raises :class:`StoreUnavailable` when revocation cannot be checked now.
        """
        if not token:
            return None
        try:
            principal = await self.app.verifier.verify(token, use=use)
        except TokenError:
            return None
        return None if await self._revoked(principal) else principal

    async def login(self, request: Request) -> Response:
        if refused := self.cross_origin(request):
            return refused
        if self._issuer is None:
            return login_disabled()
        body = await read_capped(request, MAX_LOGIN_BODY)
        if body is None:
            return error(413, "payload_too_large", "Request too large")
        try:
            creds = Credentials.model_validate(json.loads(body or b"null"))
        except (ValueError, ValidationError):
            return error(400, "bad_request", 'Expected JSON {"username", "password"}')
        try:
            user = await self.users.authenticate(creds.username, creds.password)
        except StoreUnavailable:
            return store_down()
        if user is None:
            log.info("login failed for a user name of length %d", len(creds.username))
            return error(401, "unauthorized", "Invalid username or password")
        return self._session_response(request, user.name, user.roles)

    async def refresh(self, request: Request) -> Response:
        if refused := self.cross_origin(request):
            return refused
        if self._issuer is None:
            return login_disabled()
        token = cookies_of(request).get(REFRESH_COOKIE)
        if not token:
            return error(401, "unauthorized", "No refresh token")
        try:
            principal = await self.app.verifier.verify(token, use="refresh")
            if await self._revoked(principal):
                return error(401, "token_revoked", "Refresh token revoked")
        except TokenError as exc:
            return error(401, exc.code, exc.message)
        except StoreUnavailable:
            return store_down()
        try:
            user = await self.users.get(principal.sub)
            if user is None:
                return error(401, "unauthorized", "Unknown user")
            # Rotate: the used refresh token is revoked, a new one is issued.
            await self._revoke(principal)
        except StoreUnavailable:
            return store_down()
        return self._session_response(request, user.name, user.roles, token_in_body=True)

    async def logout(self, request: Request) -> Response:
        if refused := self.cross_origin(request):
            return refused
        cookies = cookies_of(request)
        revoked = 0
        unrevoked = 0
        presented: tuple[tuple[str | None, Literal["access", "refresh"]], ...] = (
            (cookies.get(ACCESS_COOKIE), "access"),
            (cookies.get(REFRESH_COOKIE), "refresh"),
        )
        for token, use in presented:
            if not token:
                continue
            try:
                principal = await self.app.verifier.verify(token, use=use)
            except TokenError:
                continue  # an expired or foreign token has nothing left to revoke
            try:
                await self._revoke(principal)
                revoked += 1
            except StoreUnavailable:
                # Never half done: this node's sockets are cut and the
                # cookies cleared all the same, and the answer says the
                # token itself is still valid elsewhere until it expires.
                unrevoked += 1
            if use == "access" and principal.jti:
                await self.app.disconnect_token(principal.jti, reason="token_revoked")
        if unrevoked:
            response = error(
                503,
                "unavailable",
                "Signed out on this device (cookies cleared, sockets here closed), but the "
                "token could not be revoked everywhere now; sign out again later",
            )
        else:
            response = JSONResponse({"logged_out": True, "revoked": revoked})
        secure = self._secure(request)
        response.delete_cookie(
            ACCESS_COOKIE, path="/", secure=secure, httponly=True, samesite="lax"
        )
        response.delete_cookie(
            REFRESH_COOKIE, path="/auth", secure=secure, httponly=True, samesite="lax"
        )
        return spell_samesite(response)

    def _session_response(
        self,
        request: Request,
        sub: str,
        roles: tuple[str, ...],
        *,
        token_in_body: bool = False,
    ) -> Response:
        """Both cookies; with ``token_in_body`` also ``access_token`` (for ``auth:refresh``)."""
        assert self._issuer is not None
        settings = self.settings
        access, principal = self._issuer.issue(sub, roles=roles, ttl=settings.access_token_ttl)
        refresh, _ = self._issuer.issue(
            sub, roles=roles, ttl=settings.refresh_token_ttl, use="refresh"
        )
        body: dict[str, object] = {
            "sub": sub,
            "roles": list(roles),
            "expires_at": principal.expires_at,
        }
        if token_in_body:
            body["access_token"] = access
        response = JSONResponse(body)
        secure = self._secure(request)
        response.set_cookie(
            ACCESS_COOKIE,
            access,
            max_age=int(settings.access_token_ttl),
            path="/",
            httponly=True,
            samesite="lax",
            secure=secure,
        )
        response.set_cookie(
            REFRESH_COOKIE,
            refresh,
            max_age=int(settings.refresh_token_ttl),
            path="/auth",
            httponly=True,
            samesite="lax",
            secure=secure,
        )
        return spell_samesite(response)

    def _secure(self, request: Request) -> bool:
        return self.settings.secure_cookies or request.url.scheme == "https"

    def cross_origin(self, request: Request) -> Response | None:
        """A 403 for a request whose ``Origin`` is present and not allowed, else None."""
        origin = request.headers.get("origin")
        if origin is not None and not self.app.origin_allowed(origin, request.scope):
            return error(403, "forbidden", "Origin not allowed")
        return None

    async def _revoked(self, principal: Principal) -> bool:
        return await self.revocations.is_revoked(
            sub=principal.sub, jti=principal.jti, issued_at=principal.issued_at
        )

    async def _revoke(self, principal: Principal) -> None:
        if principal.jti:
            expires = principal.expires_at or time.time() + 86400
            await self.revocations.revoke_jti(principal.jti, expires_at=expires + 60)
