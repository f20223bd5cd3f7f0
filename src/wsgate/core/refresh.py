"""``auth:refresh``: a live connection moves to a new token without reconnecting.

The new token is judged exactly as at connect (signature, claims, ``use``
access, revocation, the namespace's connect roles and guards) and must name
the same ``sub``: a refresh may extend or re-scope a session, never hand it
to someone else. Any failure leaves the connection on its old token, with
its old expiry timer still running.

It is built in, on every namespace, ahead of the gateway's handlers: a
gateway that subscribes ``auth:refresh`` itself is refused at start-up
rather than silently shadowing the check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from wsgate.codes import Code
from wsgate.core.connection import Connection
from wsgate.core.pipeline import Reply
from wsgate.core.sessions import Sessions, audit_connection
from wsgate.errors import (
    BadRequest,
    ConnectionRefused,
    Forbidden,
    GatewayError,
    Unauthorized,
    Unavailable,
)
from wsgate.principal import Principal

REFRESH_EVENT = "auth:refresh"

Verify = Callable[[str], Awaitable[Principal]]
"""Full token verification as at connect (signature, claims, revocation); raises on refusal."""

CheckConnect = Callable[[Connection, Principal], Awaitable[None]]
"""The namespace's connect roles and guards for ``principal``; raises on refusal."""


def unauthorized(code: str, message: str) -> Unauthorized:
    """A 401 whose ``code`` tells the client why (``token_expired``, ``token_revoked``...)."""
    return Unauthorized(message, code=code)


def verification_error(refusal: ConnectionRefused) -> GatewayError:
    """The error object for a refused token: 503 when it could not be checked, else 401."""
    if refusal.code is Code.UNAVAILABLE:
        return Unavailable(refusal.message)
    return unauthorized(refusal.code, refusal.message)


class Refresher:
    """Runs ``auth:refresh`` for one App."""

    def __init__(self, verify: Verify, check_connect: CheckConnect, sessions: Sessions) -> None:
        self._verify = verify
        self._check_connect = check_connect
        self._sessions = sessions

    async def __call__(self, connection: Connection, payload: Any) -> Reply:
        """``{"expires_at": ...}``, or an error object; never raises."""
        try:
            principal = await self._refresh(connection, payload)
        except GatewayError as exc:
            audit_connection("refresh_refused", connection, level=logging.WARNING, reason=exc.code)
            return Reply(exc.to_payload(), True)
        audit_connection("refreshed", connection, expires_at=principal.expires_at)
        return Reply({"expires_at": principal.expires_at}, False)

    async def _refresh(self, connection: Connection, payload: Any) -> Principal:
        if not isinstance(payload, dict) or not isinstance(payload.get("token"), str):
            raise BadRequest(fields={"token": "Field required (a string)"})
        if not connection.live:
            raise unauthorized(Code.UNAUTHORIZED, "Session is closing")
        try:
            principal = await self._verify(payload["token"])
        except ConnectionRefused as refusal:
            raise verification_error(refusal) from None
        if principal.sub != connection.principal.sub:
            raise unauthorized(Code.UNAUTHORIZED, "Token belongs to another user")
        try:
            await self._check_connect(connection, principal)
        except ConnectionRefused as refusal:
            if refusal.code is Code.UNAVAILABLE:
                raise Unavailable(refusal.message) from None
            raise Forbidden(refusal.message) from None
        if not connection.live:
            raise unauthorized(Code.UNAUTHORIZED, "Session is closing")
        try:
            # Verified again (a cache hit) so that a revocation that landed
            # while the guards ran is not missed before the swap.
            principal = await self._verify(payload["token"])
        except ConnectionRefused as refusal:
            raise verification_error(refusal) from None
        connection.principal = principal
        self._sessions.arm(connection)
        return principal
