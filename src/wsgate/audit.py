"""One structured log line per security-relevant event, and the log format switch.

The audit logger is a plain :mod:`logging` logger (``wsgate.audit``) so it
goes wherever the application sends its logs. Fields are passed through
``extra`` and a token is never among them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

audit_logger = logging.getLogger("wsgate.audit")


def audit(action: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``action`` with the given fields (``None`` values are dropped)."""
    data = {key: value for key, value in fields.items() if value is not None}
    if not audit_logger.isEnabledFor(level):
        return
    text = " ".join(f"{key}={data[key]}" for key in data)
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


def _handler(fmt: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
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


__all__ = ["JsonFormatter", "audit", "audit_logger", "configure_logging", "ensure_logging"]
