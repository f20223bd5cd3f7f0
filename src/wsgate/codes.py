"""Every code a client can see, and every reason a connection ends, in one place.

Codes are wire data: clients branch on them (``unavailable`` means "retry,
your token may be fine"; ``unauthorized`` means "get a new token"), so they
are a closed set written once here rather than string literals scattered
over the layers. Both are ``StrEnum``: a member *is* its string, so it goes on
the wire, into a log line or a metric label as it is.

The plain WebSocket transport maps :class:`Code` and :class:`CloseReason`
to close codes (``wsgate.transports.websocket.CLOSE_CODES``); Socket.IO
carries the code itself (``connect_error`` data ``{"code": C}``, error objects).
"""

from __future__ import annotations

from enum import StrEnum, unique

__all__ = ["REFUSAL_CODES", "CloseReason", "Code"]


@unique
class Code(StrEnum):
    """The ``code`` of an error object or of a refused connection."""

    BAD_REQUEST = "bad_request"
    """400: the body (or the frame) is not what the event takes."""
    UNAUTHORIZED = "unauthorized"
    """401: no token, or a token that failed verification."""
    TOKEN_EXPIRED = "token_expired"
    """401: the token's ``exp`` has passed."""
    TOKEN_REVOKED = "token_revoked"
    """401: the token (or every token of its ``sub``) was revoked."""
    FORBIDDEN = "forbidden"
    """403: a role, a guard, the origin or the namespace refused."""
    NOT_FOUND = "not_found"
    """404: no handler for the event."""
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """413: the message (or the CONNECT packet) is over ``max_message_bytes``."""
    RATE_LIMITED = "rate_limited"
    """429: too many events from this connection."""
    TOO_MANY_CONNECTIONS = "too_many_connections"
    """429 at connect: connections per user, or handshakes in flight."""
    INTERNAL_ERROR = "internal_error"
    """500: a handler crashed; details are in the server log only."""
    UNAVAILABLE = "unavailable"
    """503: the server cannot check or deliver now (a store or Redis is down): retry later."""


REFUSAL_CODES: frozenset[Code] = frozenset(
    {
        Code.UNAUTHORIZED,
        Code.TOKEN_EXPIRED,
        Code.TOKEN_REVOKED,
        Code.FORBIDDEN,
        Code.TOO_MANY_CONNECTIONS,
        Code.UNAVAILABLE,
        Code.PAYLOAD_TOO_LARGE,
    }
)
"""The codes a refused connection can carry (the contract's ``connect_error`` list)."""


@unique
class CloseReason(StrEnum):
    """Why a live connection ended; the ``reason`` of audit lines and ``on_disconnect``."""

    CLIENT_DISCONNECT = "client_disconnect"
    """The client closed its connection."""
    TRANSPORT_CLOSE = "transport_close"
    """The socket broke (network error, abnormal close, missed heartbeat)."""
    SERVER_DISCONNECT = "server_disconnect"
    """The application closed it (``ctx.disconnect()``)."""
    SERVER_SHUTDOWN = "server_shutdown"
    """The App is stopping (close 1001 on ``/ws``)."""
    TOKEN_EXPIRED = "token_expired"
    """The token expired without an ``auth:refresh`` (``auth:expired`` was sent first)."""
    TOKEN_REVOKED = "token_revoked"
    """The token was revoked (``auth:revoked`` was sent first)."""
    SLOW_CONSUMER = "slow_consumer"
    """The client stopped reading while messages piled up for it."""
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """A ``/ws`` frame over ``max_message_bytes`` (close 1009)."""
    TIMEOUT = "timeout"
    """No authentication within ``connect_timeout``."""
