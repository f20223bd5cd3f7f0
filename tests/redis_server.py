"""A redis-server of the test's own on a free port, to stop, hang and restart at will.

The shared Redis on 6379 must never be stopped by a test; fault tests start
their own. Stopped and signalled only through the PID this helper started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from support import free_port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server is not installed")
    return found


class RedisServer:
    """One redis-server process; ``persistent`` turns on the append-only file."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--maxclients",
            "10000",
        ]
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once; waited for below)
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await self.wait_up()

    async def wait_up(self, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        client = Redis.from_url(self.url(), socket_timeout=1, socket_connect_timeout=1)
        try:
            while True:
                try:
                    if await client.ping():
                        return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Terminate (SIGTERM, then SIGKILL after 10 s) and wait."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a hung server cannot exit
            proc.terminate()
        for _ in range(200):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        proc.kill()
        proc.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def hang(self) -> None:
        """SIGSTOP: the port still accepts TCP connections, nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def own_redis(workdir: Path, *, persistent: bool = False) -> AsyncIterator[RedisServer]:
    server = RedisServer(workdir, persistent=persistent)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
