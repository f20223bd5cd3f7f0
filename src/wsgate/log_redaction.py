"""No credential in the server's own log lines: query strings, credential headers, frames.

The libraries under a wsgate server log what they see. Measured on the demo
before this module: uvicorn's access log (and its ``"WebSocket /path"``
lines) wrote whole query strings at INFO, so a refused ``?token=`` was in
the log, and so was the Engine.IO ``sid`` of every polling request, which
is a session credential (a second client read a victim's replies with a sid
taken from the log); at DEBUG the ``websockets`` handshake parser, which
uvicorn runs with its ``uvicorn.error`` logger, wrote every request header,
``Authorization`` and ``Cookie`` included, and every frame (a ``/ws`` auth
message carries its token).

:class:`RedactingFilter`, on those loggers, rewrites a record's arguments
before any handler formats it:

- a request target keeps its path and the names of its query parameters;
  values are replaced by ``…``, except ``EIO`` and ``transport`` (a protocol
  version and a word, useful to read and never secret);
- a header line ``< Name: value`` / ``> Name: value`` of a credential header
  keeps its name only;
- a frame (``< TEXT '...'``) is logged as its opcode and length.

:func:`install_redaction` puts it on the loggers; :func:`wsgate.run` (so
``wsgate serve`` and ``wsgate demo``) calls it. Call it yourself when you
run an App under your own uvicorn.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = [
    "REDACTED_LOGGERS",
    "RedactingFilter",
    "install_redaction",
    "redact_target",
]

REDACTED = "…"

KEPT_QUERY_KEYS = frozenset({"EIO", "transport"})
"""Query parameters whose values stay readable in logs."""

CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "sec-websocket-protocol",  # browsers' only header: some clients carry tokens in it
        "x-api-key",
        "x-auth-token",
    }
)

REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error", "websockets.server", "websockets.client")
"""Loggers that write what clients sent (a filter applies to records of its own logger only)."""

_HEADER_MESSAGES = frozenset({"< %s: %s", "> %s: %s"})
_FRAME_MESSAGES = frozenset({"< %s", "> %s"})


def redact_target(target: str) -> str:
    """``/path?a=1&sid=xyz`` -> ``/path?a=…&sid=…`` (``EIO`` and ``transport`` kept)."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        parts.append(item if key in KEPT_QUERY_KEYS else key + (f"={REDACTED}" if eq else ""))
    return f"{path}?{'&'.join(parts)}"


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, str) and arg.startswith("/") and "?" in arg:
        return redact_target(arg)
    return arg


def _frame_summary(frame: Any) -> Any:
    opcode = getattr(frame, "opcode", None)
    data = getattr(frame, "data", None)
    if opcode is None or not isinstance(data, bytes | bytearray | memoryview):
        return frame
    return f"{getattr(opcode, 'name', opcode)} [{len(data)} bytes]"


class RedactingFilter(logging.Filter):
    """Rewrites a record's arguments so that no query value, credential header or frame shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args:
            return True
        msg = record.msg
        if msg in _HEADER_MESSAGES and len(args) == 2:
            name = str(args[0])
            if name.lower() in CREDENTIAL_HEADERS:
                record.args = (name, REDACTED)
            return True
        if msg in _FRAME_MESSAGES and len(args) == 1:
            record.args = (_frame_summary(args[0]),)
            return True
        record.args = tuple(_redact_arg(arg) for arg in args)
        return True


def install_redaction(loggers: tuple[str, ...] = REDACTED_LOGGERS) -> None:
    """Put one :class:`RedactingFilter` on each of ``loggers`` (idempotent)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
