"""A pytest plugin: no token or Engine.IO sid that the run issued may appear in any log record.

It remembers every credential the test run sees being made: each JWT
signed in this process (PyJWT's ``encode``: the tests' ``make_token``, the
demo's login and refresh, ``wsgate.testing``), each Engine.IO ``sid`` a
python-engineio client was given, and whatever a test passes to
:func:`remember` (tokens a server subprocess issued, sids read off the wire).

It reads every log record of the run: ``logging.Logger.handle`` is wrapped,
so records of loggers that do not propagate (uvicorn's) are read too, and
:func:`observe` takes text from elsewhere (a server subprocess's output, see
``support.wsgate_process``). From each text it keeps the tokens that could
be credentials (runs of 16+ base64url characters, and whole JWTs); a test
fails in its teardown when one of them is a remembered credential, and the
session fails at the end for a credential remembered only after its leak
was logged (a server may log a sid before the client learns it).

A JWT-shaped string in a log is a failure even when this run did not issue
it: no log line has a reason to hold one.

Only the levels a logger is enabled for make records: set
``WSGATE_LEAKCHECK_DEBUG=1`` to run every logger at DEBUG (slower); the
DEBUG paths of the servers wsgate starts are covered by
``test_no_credential_in_logs.py`` either way.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["leaks_in", "observe", "remember"]

_RUN = re.compile(r"[A-Za-z0-9_-]{16,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
MAX_SEEN = 1_000_000
"""Distinct candidate strings kept for the end-of-session check (bounded memory)."""

_secrets: set[str] = set()
_seen: dict[str, str] = {}
_found: list[str] = []
"""Leaks not yet reported: (where, what) descriptions."""


def remember(secret: str | None) -> None:
    """Treat ``secret`` (a token or a sid) as a credential for the rest of the run."""
    if not secret or not isinstance(secret, str):
        return
    _secrets.add(secret)
    if secret.count(".") == 2:
        signature = secret.rsplit(".", 1)[1]
        if len(signature) >= 16:
            _secrets.add(signature)


def leaks_in(text: str) -> list[str]:
    """The remembered credentials (and JWT-shaped strings) that ``text`` holds."""
    found = [f"a JWT ({jwt[:12]}...)" for jwt in _JWT.findall(text)]
    found += [f"credential {run[:6]}..." for run in _RUN.findall(text) if run in _secrets]
    return found


def observe(text: str, where: str) -> None:
    """Read ``text`` as a log line from ``where``."""
    for leak in leaks_in(text):
        _found.append(f"{where}: {leak} in {text[:200]!r}")
    if len(_seen) < MAX_SEEN:
        runs = _RUN.findall(text)
        if runs:
            line = f"{where}: {text[:160]!r}"  # one string per record, shared by its runs
            for run in runs:
                _seen.setdefault(run, line)


def _record_text(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a broken record: its parts are still worth reading
        text = f"{record.msg!r} {record.args!r}"
    structured = getattr(record, "wsgate", None)
    if structured is not None:
        text += f" {structured!r}"
    if record.exc_info and record.exc_info[1] is not None:
        text += " " + "".join(traceback.format_exception(record.exc_info[1]))
    return text


_original_handle = logging.Logger.handle


def _handle(self: logging.Logger, record: logging.LogRecord) -> None:
    observe(_record_text(record), f"log record of {record.name}")
    _original_handle(self, record)


def _remember_jwt(original: Any) -> Any:
    def encode(*args: Any, **kwargs: Any) -> Any:
        token = original(*args, **kwargs)
        remember(token)
        return token

    return encode


def _remember_sid(original: Any) -> Any:
    async def connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await original(self, *args, **kwargs)
        remember(getattr(self, "sid", None))
        return result

    return connect


def pytest_configure(config: pytest.Config) -> None:
    import engineio.async_client
    import jwt.api_jws

    logging.Logger.handle = _handle  # type: ignore[method-assign]
    jwt.api_jws.PyJWS.encode = _remember_jwt(jwt.api_jws.PyJWS.encode)  # type: ignore[method-assign]
    client = engineio.async_client.AsyncClient
    for name in ("_connect_polling", "_connect_websocket"):
        if hasattr(client, name):
            setattr(client, name, _remember_sid(getattr(client, name)))
    if os.environ.get("WSGATE_LEAKCHECK_DEBUG"):
        logging.getLogger().setLevel(logging.DEBUG)


def _take_found() -> list[str]:
    found = list(dict.fromkeys(_found))
    _found.clear()
    return found


@pytest.fixture(autouse=True)
def _no_credential_logged() -> Iterator[None]:
    """Fails the test (in teardown) whose log records held a credential."""
    yield
    found = _take_found()
    if found:
        pytest.fail("credential in a log record:\n" + "\n".join(found[:10]), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Credentials remembered after their leak was logged (a sid logged before it was known)."""
    late = [f"credential {s[:6]}... in {_seen[s]}" for s in _secrets & _seen.keys()]
    late += _take_found()
    if late:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "leakcheck: credentials in log records:\n" + "\n".join(late[:20])
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
