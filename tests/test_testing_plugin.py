"""The pytest plugin of wsgate.testing, used as a user would (tests/conftest.py loads it)."""

from __future__ import annotations

import pytest

from wsgate import App, Context, Gateway, Settings, subscribe
from wsgate.testing import AppClient


class Counter(Gateway):
    def __init__(self) -> None:
        self.count = 0

    @subscribe("inc")
    async def inc(self, ctx: Context) -> int:
        self.count += 1
        return self.count


@pytest.fixture
def wsgate_app() -> App:
    return App([Counter()], Settings(jwt_secret="plugin-test-secret-that-is-long-enough-01"))


async def test_the_fixture_gives_a_client_for_the_users_app(wsgate_client: AppClient) -> None:
    async with wsgate_client.socketio(sub="ann") as ann, wsgate_client.websocket(sub="bo") as bo:
        assert await ann.call("inc") == 1
        assert await bo.call("inc") == 2
