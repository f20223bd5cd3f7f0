"""Shared fixtures: optional services skip on a developer's machine, fail in CI."""

from __future__ import annotations

import os
import socket

import pytest

# wsgate.testing's fixture (wsgate_client), loaded as a user's conftest.py would; and the
# check that no token or sid issued in the run reaches any log record (tests/leakcheck.py).
pytest_plugins = ["wsgate.testing.pytest_plugin", "leakcheck"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_service(reason: str) -> None:
    """Skip locally, fail in CI: CI must never pass by skipping what it was meant to test."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis on 127.0.0.1 (WSGATE_TEST_REDIS_URL overrides); db 15 keeps tests apart."""
    url = os.environ.get("WSGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    if not _port_open("127.0.0.1", 6379) and "WSGATE_TEST_REDIS_URL" not in os.environ:
        missing_service("Redis is not running on 127.0.0.1:6379")
    return url


@pytest.fixture(params=__import__("clients").TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Every transport-level security test runs once per transport."""
    return str(request.param)
