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


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Set up root logging for the CLI (a library user configures logging themselves)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("engineio.server", "socketio.server"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


__all__ = ["JsonFormatter", "audit", "audit_logger", "configure_logging"]
