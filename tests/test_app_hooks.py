"""App start-up and shutdown hooks, and per-gateway on_start / on_stop, in their order."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from support import SECRET, free_port
from wsgate import App, Context, Gateway, Settings, StartupError, subscribe
from wsgate.testing import AppClient

SETTINGS = Settings(jwt_secret="a-test-secret-that-is-long-enough-0123456789")


class Recorded(Gateway):
    """Records its hooks in a shared log; ``fail_start`` makes its on_start raise."""

    def __init__(self, name: str, log: list[str], *, fail_start: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail_start = fail_start

    async def on_start(self) -> None:
        if self.fail_start:
            raise OSError("cannot reach the feed server")
        self.log.append(f"start {self.name}")

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.name}")

    async def on_disconnect(self, ctx: Context, reason: str) -> None:
        self.log.append(f"disconnect {self.name} {reason}")


def gateway_in(namespace: str) -> type[Recorded]:
    class OnNamespace(Recorded, namespace=namespace):
        @subscribe("ping")
        async def ping(self, ctx: Context) -> str:
            return "pong"

    return OnNamespace


First, Second, Third = gateway_in("/a"), gateway_in("/b"), gateway_in("/c")


def hook(log: list[str], name: str, *, fail: bool = False) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        if fail:
            raise ConnectionError("database refused the connection")
        log.append(name)

    run.__qualname__ = name
    return run


async def test_start_and_stop_hooks_run_in_their_order() -> None:
    log: list[str] = []
    app = App(
        [First("a", log), Second("b", log), Third("c", log)],
        SETTINGS,
        on_startup=[hook(log, "startup 1"), hook(log, "startup 2")],
        on_shutdown=[hook(log, "shutdown 1"), hook(log, "shutdown 2")],
    )
    async with AppClient(app) as client:
        assert log == ["startup 1", "startup 2", "start a", "start b", "start c"]
        async with client.websocket(sub="amy", namespace="/b") as amy:
            assert await amy.call("ping") == "pong"
            log.clear()
            await client.__aexit__(None, None, None)
            await amy.wait_closed()
    # Live connections are closed (on_disconnect) before any gateway stops,
    # gateways stop in reverse order, and the App's on_shutdown hooks run last.
    assert log == [
        "disconnect b server_shutdown",
        "stop c",
        "stop b",
        "stop a",
        "shutdown 1",
        "shutdown 2",
    ]


async def test_a_failing_startup_hook_stops_the_start_with_an_error_naming_it() -> None:
    log: list[str] = []
    app = App(
        [First("a", log)],
        SETTINGS,
        on_startup=[hook(log, "open_pool"), hook(log, "warm_cache", fail=True), hook(log, "3")],
        on_shutdown=[hook(log, "shutdown")],
    )
    with pytest.raises(RuntimeError) as failed:
        async with AppClient(app):
            pass
    message = str(failed.value)
    assert "StartupError: on_startup hook warm_cache failed" in message
    assert "ConnectionError: database refused the connection" in message
    # Later hooks and gateways never started; on_shutdown is not run for a start that failed.
    assert log == ["open_pool"]


async def test_a_failing_on_start_stops_the_gateways_already_started() -> None:
    log: list[str] = []
    app = App([First("a", log), Second("b", log, fail_start=True), Third("c", log)], SETTINGS)
    with pytest.raises(StartupError, match=r"OnNamespace.on_start failed: OSError"):
        await app.startup()
    assert log == ["start a", "stop a"]
    assert app.runtime.sessions._tasks == set()


async def test_a_failing_start_stops_a_real_server_with_a_clear_error(tmp_path: Path) -> None:
    module = tmp_path / "failing_app.py"
    module.write_text(
        textwrap.dedent(
            """
            from wsgate import App, Gateway, Settings

            async def connect_database() -> None:
                raise ConnectionRefusedError("db.internal:5432 refused")

            class Chat(Gateway):
                pass

            app = App([Chat()], Settings(), on_startup=[connect_database])
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    env.update({"WSGATE_JWT_SECRET": SECRET, "PYTHONPATH": str(tmp_path)})
    port = free_port()

    async def run() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wsgate",
            "serve",
            "failing_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, output.decode(errors="replace")

    code, output = await run()
    assert code != 0, output
    assert "start-up stopped: on_startup hook connect_database failed" in output
    assert "StartupError: on_startup hook connect_database failed: ConnectionRefusedError" in output
