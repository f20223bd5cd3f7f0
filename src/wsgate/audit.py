"""One structured log line per security-relevant event, and the log format switch.

The audit logger is a plain :mod:`logging` logger (``wsgate.audit``) so it
goes wherever the application sends its logs. Fields are passed through
``extra`` and a token is never among them.

Many fields are chosen by the client (a namespace, an origin, an event
name), so the text line renders each value with
:func:`wsgate.security.logsafe.field` (logfmt quoting): a value cannot end
the line, start a fake field or carry a terminal escape, whatever logging
configuration the application has. The formatter wsgate installs
(:class:`TextFormatter`) also escapes what other loggers (uvicorn's access
log: the request path) write.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from wsgate.security.logsafe import escape, field

audit_logger = logging.getLogger("wsgate.audit")


def audit(action: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``action`` with the given fields (``None`` values are dropped)."""
    data = {key: value for key, value in fields.items() if value is not None}
    if not audit_logger.isEnabledFor(level):
        return
    text = " ".join(f"{key}={field(data[key])}" for key in data)
    audit_logger.log(level, "%s %s", action, text, extra={"wsgate": {"action": action, **data}})


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        structured = getattr(record, "wsgate", None)
        if isinstance(structured, dict):
            body.update(structured)
        else:
            body["message"] = record.getMessage()
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines in which nothing a client sent can start a line or a terminal escape.

    The message is escaped whole (:func:`~wsgate.security.logsafe.escape`):
    a library that logs a client's path or header as it came (uvicorn's
    access log decodes ``%0A`` in the path) cannot forge a line either. A
    traceback keeps its lines, escaped and indented, so that every line that
    starts at the margin is a real record.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # The record is shared with other handlers: escaped for this line only.
        message = record.message
        record.message = escape(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message

    def formatException(self, ei: Any) -> str:
        return _indent(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indent(super().formatStack(stack_info))


def _indent(text: str) -> str:
    return "\n".join("  " + escape(line) for line in text.splitlines())


def _handler(fmt: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """One line to send every log line (wsgate's and the rest) to stderr, with time and logger.

    ``fmt`` is ``text`` or ``json``. The CLI calls it; call it yourself
    under another server if you want wsgate's format for everything.
    """
    root = logging.getLogger()
    root.handlers[:] = [_handler(fmt)]
    root.setLevel(level.upper())


def ensure_logging(level: str = "info", fmt: str = "text") -> bool:
    """Give wsgate's loggers a handler when the host application configured none.

    Under a plain ASGI server (``uvicorn module:app``) only the server's own
    loggers have handlers: wsgate's INFO audit lines would be dropped and its
    warnings printed by ``logging.lastResort`` without time or logger. The
    App calls this at start-up; it does nothing when the root logger or the
    ``wsgate`` logger already has a handler (the host's choice wins).
    Returns True when it configured something.
    """
    wsgate_logger = logging.getLogger("wsgate")
    if logging.getLogger().handlers or wsgate_logger.handlers:
        return False
    wsgate_logger.addHandler(_handler(fmt))
    wsgate_logger.setLevel(level.upper())
    return True


__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "audit",
    "audit_logger",
    "configure_logging",
    "ensure_logging",
]
