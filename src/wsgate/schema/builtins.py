"""JSON schemas of what wsgate itself puts on the wire, whatever the gateways are.

The error object, ``auth:refresh`` and the session notices are built by the
core as plain dicts; their schemas are written here once, from the same
constants the core uses (:class:`wsgate.codes.Code`, the status of each
:mod:`wsgate.errors` class, the close reasons), and the tests check real
replies and pushes of a running App against them, so the document cannot
drift from the server.
"""

from __future__ import annotations

from typing import Any

from wsgate.codes import CloseReason, Code
from wsgate.core.refresh import REFRESH_EVENT
from wsgate.core.sessions import EXPIRED_EVENT, REVOKED_EVENT
from wsgate.errors import (
    MAX_MESSAGE_LENGTH,
    BadRequest,
    Forbidden,
    InternalError,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)

Schema = dict[str, Any]

REF = "#/components/schemas/"
"""Where every named schema lives (the AsyncAPI document's components)."""

EXCEPTION_EVENT = "exception"
READY_EVENT = "ready"

STATUSES: tuple[int, ...] = tuple(
    sorted(
        {
            error.status
            for error in (
                BadRequest,
                Unauthorized,
                Forbidden,
                NotFound,
                PayloadTooLarge,
                TooManyRequests,
                InternalError,
                Unavailable,
            )
        }
    )
)
"""The statuses of wsgate's own errors (an application's ``GatewayError`` may add others)."""

ERROR_OBJECT = "ErrorObject"
ERROR_REPLY = "ErrorReply"
CODE = "Code"
REFRESH_BODY = "AuthRefreshBody"
REFRESH_ACK = "AuthRefreshAck"
EXPIRED_NOTICE = "AuthExpiredNotice"
REVOKED_NOTICE = "AuthRevokedNotice"
READY = "Ready"


def ref(name: str) -> Schema:
    return {"$ref": REF + name}


def builtin_schemas() -> dict[str, Schema]:
    """The named schemas every document holds."""
    return {
        CODE: {
            "title": CODE,
            "description": "Every code a client can see (wsgate.codes.Code).",
            "type": "string",
            "enum": [str(code) for code in Code],
        },
        ERROR_OBJECT: {
            "title": ERROR_OBJECT,
            "description": "Why an event failed; never a stack trace or exception text.",
            "type": "object",
            "properties": {
                "status": {"type": "integer", "enum": list(STATUSES)},
                "code": ref(CODE),
                "message": {"type": "string", "maxLength": MAX_MESSAGE_LENGTH},
                "fields": {
                    "description": "400 only: each failing body field and why.",
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                },
            },
            "required": ["status", "code", "message"],
            "additionalProperties": False,
        },
        ERROR_REPLY: {
            "title": ERROR_REPLY,
            "description": "A failed event's ack, or the `exception` push when no ack was asked.",
            "type": "object",
            "properties": {"error": ref(ERROR_OBJECT)},
            "required": ["error"],
            "additionalProperties": False,
        },
        REFRESH_BODY: {
            "title": REFRESH_BODY,
            "type": "object",
            "properties": {"token": {"type": "string", "description": "The new access token."}},
            "required": ["token"],
        },
        REFRESH_ACK: {
            "title": REFRESH_ACK,
            "type": "object",
            "properties": {
                "expires_at": {"type": "number", "description": "The new token's exp (Unix s)."}
            },
            "required": ["expires_at"],
        },
        EXPIRED_NOTICE: {
            "title": EXPIRED_NOTICE,
            "type": "object",
            "properties": {
                "reason": {"type": "string", "const": str(CloseReason.TOKEN_EXPIRED)},
                "grace": {
                    "type": "number",
                    "description": "Seconds left to send auth:refresh before the close.",
                },
            },
            "required": ["reason"],
        },
        REVOKED_NOTICE: {
            "title": REVOKED_NOTICE,
            "type": "object",
            "properties": {"reason": {"type": "string", "const": str(CloseReason.TOKEN_REVOKED)}},
            "required": ["reason"],
        },
        READY: {
            "title": READY,
            "description": "/ws only: the first frame after a successful authentication.",
            "type": "object",
            "properties": {
                "sub": {"type": "string"},
                "expires_at": {"type": "number", "description": "The token's exp (Unix s)."},
            },
            "required": ["sub", "expires_at"],
        },
    }


BUILTIN_EVENT_DOCS: dict[str, str] = {
    REFRESH_EVENT: (
        "Move this connection to a new access token (same sub) without reconnecting; "
        "judged as at connect."
    ),
}

BUILTIN_PUSH_DOCS: dict[str, tuple[str, str]] = {
    EXPIRED_EVENT: (
        EXPIRED_NOTICE,
        "The token expired: the connection closes (after `grace` seconds) unless auth:refresh.",
    ),
    REVOKED_EVENT: (REVOKED_NOTICE, "The token was revoked: the connection closes now."),
    EXCEPTION_EVENT: (ERROR_REPLY, "An event sent without an ack failed: its error object."),
}
"""Pushes wsgate sends on every namespace: event -> (payload schema name, meaning)."""
