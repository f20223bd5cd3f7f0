"""What the demo page's "try it" panel needs from the server, and nothing a real app would.

``GET /demo/limits`` tells the page the message size and rate limit it runs
under, so its oversized message is just over the limit and its flood just
past the burst, whatever the server was started with.

``POST /auth/expired-sample`` gives a signed-in user a token for their own
``sub`` and roles that has already expired, so the page can show a replayed
token being refused with ``token_expired``. The page cannot use its own
token for that: the cookie is HttpOnly, and waiting out a real token's life
is no demo. The sample is harmless by construction: every verifier refuses
it, and ``auth:refresh`` and ``/auth/refresh`` refuse it too (an expired
access token, never a refresh token).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wsgate.demo.auth_routes import (
    ACCESS_COOKIE,
    cookies_of,
    error,
    login_disabled,
    store_down,
)
from wsgate.stores import StoreUnavailable

if TYPE_CHECKING:
    from wsgate.demo.auth_routes import DemoAuth

SAMPLE_TTL = 0.001
"""The shortest life the issuer accepts (it refuses ttl <= 0), rounded up to the next second."""

MAX_SAMPLE_WAIT = 5.0
"""Longest the endpoint waits for its sample to expire (past ``exp`` plus the leeway)."""


class Showcase:
    """The two demo-only routes of the page's "try it" panel."""

    def __init__(self, auth: DemoAuth) -> None:
        self.auth = auth

    def routes(self) -> list[Route]:
        return [
            Route("/demo/limits", self.limits, methods=["GET"]),
            Route("/auth/expired-sample", self.expired_sample, methods=["POST"]),
        ]

    async def limits(self, request: Request) -> Response:
        settings = self.auth.app.settings
        return JSONResponse(
            {"max_message_bytes": settings.max_message_bytes, "rate_limit": settings.rate_limit}
        )

    async def expired_sample(self, request: Request) -> Response:
        """``{"token", "expired_at"}``: a validly signed access token, already expired.

        The issuer signs only tokens with a positive life (a guard worth
        keeping for every real caller), so the sample gets the shortest one
        and is handed out once it has run out, leeway included: at most
        ``1 + jwt_leeway`` seconds of waiting.
        """
        if refused := self.auth.cross_origin(request):
            return refused
        issuer = self.auth.issuer
        if issuer is None:
            return login_disabled()
        leeway = self.auth.app.settings.jwt_leeway
        if leeway + 1 > MAX_SAMPLE_WAIT:
            return error(
                503, "sample_unavailable", "jwt_leeway is too long to wait out for a sample"
            )
        cookies = cookies_of(request)
        try:
            principal = await self.auth.valid(cookies.get(ACCESS_COOKIE), "access")
        except StoreUnavailable:
            return store_down()
        if principal is None:
            return error(401, "unauthorized", "Sign in first")
        token, sample = issuer.issue(principal.sub, roles=sorted(principal.roles), ttl=SAMPLE_TTL)
        assert sample.expires_at is not None  # the issuer always sets exp
        # Verifiers accept a token while now <= exp + leeway: wait until just past that.
        wait = sample.expires_at + leeway - time.time() + 0.05
        if wait > 0:
            await asyncio.sleep(wait)
        return JSONResponse({"token": token, "expired_at": math.floor(sample.expires_at)})
