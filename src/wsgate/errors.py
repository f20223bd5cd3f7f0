"""The exception hierarchy every layer speaks.

Errors are data on the wire: a client only ever sees ``status``, ``code`` and a
message written for it, never the text of an arbitrary exception. Anything that
is not a :class:`GatewayError` becomes a generic 500 in the exception filter.
"""

from __future__ import annotations

from typing import Any


class WsgateError(Exception):
    """Root of every exception wsgate raises on purpose."""


class ConfigurationError(WsgateError):
    """The settings cannot give a secure server; raised at start-up, never at run time."""


class GatewayError(WsgateError):
    """An error that is safe to show to the client as ``{"status", "code", "message"}``."""

    status: int = 500
    code: str = "internal_error"
    default_message: str = "Internal server error"

    def __init__(self, message: str | None = None, *, fields: dict[str, str] | None = None) -> None:
        self.message = message or self.default_message
        self.fields = fields
        super().__init__(self.message)

    def to_payload(self) -> dict[str, Any]:
        """The contract's error object, ready to send."""
        body: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.fields is not None:
            body["fields"] = self.fields
        return {"error": body}


class BadRequest(GatewayError):
    status, code, default_message = 400, "bad_request", "Invalid message body"


class Unauthorized(GatewayError):
    status, code, default_message = 401, "unauthorized", "Authentication required"


class Forbidden(GatewayError):
    status, code, default_message = 403, "forbidden", "Forbidden"


class NotFound(GatewayError):
    status, code, default_message = 404, "not_found", "Unknown event"


class PayloadTooLarge(GatewayError):
    status, code, default_message = 413, "payload_too_large", "Message too large"


class TooManyRequests(GatewayError):
    status, code, default_message = 429, "rate_limited", "Too many events"


class InternalError(GatewayError):
    status, code, default_message = 500, "internal_error", "Internal server error"


class ConnectionRefused(WsgateError):
    """A handshake that must not become a connection.

    ``code`` is one of the contract's refusal codes (``unauthorized``,
    ``token_expired``, ``token_revoked``, ``forbidden``,
    ``too_many_connections``); ``message`` is shown to the client and must not
    hold a token, key material or exception text.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class TokenError(ConnectionRefused):
    """A token that failed verification; ``code`` is ``unauthorized`` or ``token_expired``.

    ``reason`` is a short machine-friendly word for logs and metrics
    (``expired``, ``bad_signature``, ``missing_claim``...), never the token.
    """

    def __init__(self, code: str, message: str, reason: str) -> None:
        super().__init__(code, message)
        self.reason = reason
