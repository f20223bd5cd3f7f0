"""The exception hierarchy every layer speaks.

Errors are data on the wire: a client only ever sees ``status``, ``code`` and a
message written for it, never the text of an arbitrary exception. Anything that
is not a :class:`GatewayError` becomes a generic 500 in the exception filter.

::

    WsgateError
    ├── ConfigurationError        settings that cannot give a secure server (start-up only)
    ├── StartupError              a start-up hook (App on_startup, Gateway.on_start) failed
    ├── GatewayError              an event failed: {"status", "code", "message"} to the client
    │   ├── BadRequest            400 bad_request (with "fields")
    │   ├── Unauthorized          401 unauthorized (token_expired / token_revoked codes too)
    │   ├── Forbidden             403 forbidden
    │   ├── NotFound              404 not_found
    │   ├── PayloadTooLarge       413 payload_too_large
    │   ├── TooManyRequests       429 rate_limited
    │   ├── InternalError         500 internal_error
    │   └── Unavailable           503 unavailable (retry: shared state unreachable)
    └── ConnectionRefused         a handshake refused, with a code from wsgate.codes.Code
        └── TokenError            the token failed verification

Codes come from :class:`wsgate.codes.Code`.
"""

from __future__ import annotations

import re
from typing import Any

from wsgate.codes import REFUSAL_CODES, Code


class WsgateError(Exception):
    """Root of every exception wsgate raises on purpose."""


class ConfigurationError(WsgateError):
    """The settings cannot give a secure server; raised at start-up, never at run time."""


class StartupError(WsgateError):
    """A start-up hook failed, so the App does not serve; the hook's exception is the cause."""


_SAFE_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_MESSAGE_LENGTH = 500
"""Characters of an error message sent to a client; longer ones are cut."""


class GatewayError(WsgateError):
    """An error that is safe to show to the client as ``{"status", "code", "message"}``.

    Subclass it for your own answers (``status`` 400-599, ``code`` a
    lower-case identifier); :meth:`to_payload` enforces that shape, so a
    mistake in a subclass can never put anything else on the wire.
    """

    status: int = 500
    code: str = Code.INTERNAL_ERROR
    default_message: str = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.fields = fields
        if code is not None:
            self.code = code
        super().__init__(self.message)

    def to_payload(self) -> dict[str, Any]:
        """The contract's error object, ready to send.

        A status outside 400-599 or a code that is not a plain identifier
        (both only reachable through a faulty subclass) becomes a 500.
        """
        status, code = self.status, self.code
        if not (type(status) is int and 400 <= status <= 599) or not (
            isinstance(code, str) and _SAFE_CODE.fullmatch(code)
        ):
            status, code = 500, Code.INTERNAL_ERROR
        message = self.message if isinstance(self.message, str) else self.default_message
        body: dict[str, Any] = {
            "status": status,
            "code": str(code),
            "message": message[:MAX_MESSAGE_LENGTH],
        }
        if self.fields:
            body["fields"] = {str(k): str(v)[:MAX_MESSAGE_LENGTH] for k, v in self.fields.items()}
        return {"error": body}


class BadRequest(GatewayError):
    status, code, default_message = 400, Code.BAD_REQUEST, "Invalid message body"


class Unauthorized(GatewayError):
    status, code, default_message = 401, Code.UNAUTHORIZED, "Authentication required"


class Forbidden(GatewayError):
    status, code, default_message = 403, Code.FORBIDDEN, "Forbidden"


class NotFound(GatewayError):
    status, code, default_message = 404, Code.NOT_FOUND, "Unknown event"


class PayloadTooLarge(GatewayError):
    status, code, default_message = 413, Code.PAYLOAD_TOO_LARGE, "Message too large"


class TooManyRequests(GatewayError):
    status, code, default_message = 429, Code.RATE_LIMITED, "Too many events"


class InternalError(GatewayError):
    status, code, default_message = 500, Code.INTERNAL_ERROR, "Internal server error"


class Unavailable(GatewayError):
    """Shared state cannot be reached now (a store, Redis): the client should retry.

    Raised, for instance, by a room message that could not be handed to the
    other nodes: the ack then says 503 instead of pretending it was delivered.
    """

    status, code, default_message = 503, Code.UNAVAILABLE, "Service unavailable; try again later"


class ConnectionRefused(WsgateError):
    """A handshake that must not become a connection: the one refusal type.

    ``code`` is one of :data:`wsgate.codes.REFUSAL_CODES` and tells the client
    what to do (``unavailable``: retry; ``unauthorized``: get a new token);
    ``message`` is shown to the client and must not hold a token, key
    material or exception text. ``reason`` is a short word for logs and
    metrics (``missing_token``, ``bad_signature``, ``max_pending_handshakes``,
    ``store_unavailable``...), the code itself when not given.
    """

    def __init__(self, code: str, message: str, reason: str | None = None) -> None:
        self.code = Code(code)
        if self.code not in REFUSAL_CODES:
            raise ValueError(f"{code!r} is not a refusal code")
        self.message = message
        self.reason = reason or str(self.code)
        super().__init__(f"{self.code}: {message}")


class TokenError(ConnectionRefused):
    """A token that failed verification; ``code`` is ``unauthorized`` or ``token_expired``.

    ``reason`` is a short machine-friendly word for logs and metrics
    (``expired``, ``bad_signature``, ``missing_claim``...), never the token.
    """

    def __init__(self, code: str, message: str, reason: str) -> None:
        super().__init__(code, message, reason)
