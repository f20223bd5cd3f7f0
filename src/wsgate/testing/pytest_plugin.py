"""A pytest fixture for wsgate Apps: ``wsgate_client``.

In your ``conftest.py``::

    pytest_plugins = ["wsgate.testing.pytest_plugin"]

    @pytest.fixture
    def wsgate_app() -> App:
        return App([Chat()], Settings(jwt_secret="a-test-secret-of-32-bytes-or-more"))

and in a test (with pytest-asyncio)::

    async def test_echo(wsgate_client: AppClient) -> None:
        async with wsgate_client.socketio(sub="alice") as alice:
            assert await alice.call("echo", {"text": "hi"}) == {"text": "hi"}

The fixture runs the App's lifespan around the test. It needs an async
test runner; pytest-asyncio (``asyncio_mode = "auto"``) is what wsgate's own
tests use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wsgate.app import App
from wsgate.testing import AppClient

__all__ = ["wsgate_client"]


@pytest.fixture
async def wsgate_client(wsgate_app: App) -> AsyncIterator[AppClient]:
    """An :class:`~wsgate.testing.AppClient` for your ``wsgate_app`` fixture, lifespan running."""
    async with AppClient(wsgate_app) as client:
        yield client
