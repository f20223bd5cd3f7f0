"""The ``wsgate`` command as a user runs it: real subprocesses, real sockets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest

from clients import Refused, connect
from support import SECRET, free_port, make_token
from wsgate import App, ConfigurationError, Settings
from wsgate.demo.gateways import Chat

ENV = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}


def wsgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsgate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, **(env or {})},
        check=False,
    )


async def start_demo(
    args: Sequence[str], env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsgate",
        "demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
        env={**ENV, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    proc.kill()
    out = (await proc.communicate())[0].decode()
    raise AssertionError(f"demo did not start:\n{out}")


async def stop(proc: asyncio.subprocess.Process) -> str:
    if proc.returncode is None:
        proc.terminate()
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    return out.decode()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    database = tmp_path / "cli.db"
    proc, url = await start_demo(["--database", str(database)], env={"WSGATE_JWT_SECRET": SECRET})
    try:
        yield url, database
    finally:
        await stop(proc)


async def test_token_command_mints_tokens_the_demo_accepts(demo: tuple[str, Path]) -> None:
    url, _ = demo
    minted = wsgate("token", "--sub", "dave", "--role", "admin", env={"WSGATE_JWT_SECRET": SECRET})
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    async with connect("socketio", url, token=token, namespace="/admin") as c:
        assert await c.call("whoami") == {"sub": "dave", "roles": ["admin"]}
    other = wsgate(
        "token", "--sub", "dave", "--jwt-secret", "another-secret-that-is-32-bytes-or-more"
    )
    async with connect("socketio", url, token=token) as c:  # flag wins over env: a different key
        assert other.stdout.strip() != token and await c.call("ping") == "pong"


async def test_users_add_then_login(demo: tuple[str, Path]) -> None:
    url, database = demo
    added = wsgate(
        "users",
        "add",
        "erin",
        "--password",
        "pw-erin-123",
        "--role",
        "admin",
        "--database",
        str(database),
    )
    assert added.returncode == 0, added.stderr
    assert "pw-erin-123" not in added.stdout
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{url}/auth/login", json={"username": "erin", "password": "pw-erin-123"}
        )
    assert resp.status_code == 200 and resp.json()["roles"] == ["admin"]


async def test_demo_without_a_key_generates_one_and_seeds_users(tmp_path: Path) -> None:
    proc, url = await start_demo(["--database", str(tmp_path / "fresh.db")])
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/")).status_code == 200
    finally:
        out = await stop(proc)
    assert "generated a random HMAC secret" in out
    assert "created user 'alice'" in out and "created user 'admin'" in out


async def test_demo_flags_override_env(tmp_path: Path) -> None:
    env = {"WSGATE_JWT_SECRET": SECRET, "WSGATE_ALLOWED_ORIGINS": "https://env.example"}
    proc, url = await start_demo(
        ["--database", str(tmp_path / "o.db"), "--allowed-origins", "https://flag.example"], env
    )
    try:
        async with httpx.AsyncClient() as http:
            flag = await http.get(f"{url}/healthz", headers={"Origin": "https://flag.example"})
            env_origin = await http.get(f"{url}/healthz", headers={"Origin": "https://env.example"})
    finally:
        await stop(proc)
    assert flag.headers.get("access-control-allow-origin") == "https://flag.example"
    assert "access-control-allow-origin" not in env_origin.headers


def test_library_app_without_a_key_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError, match="no JWT key configured"):
        App([Chat()], Settings())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"jwt_secret": "short"}, "32"),
        ({"jwt_secret": SECRET, "allowed_origins": "*"}, "allowed_origins"),
        ({"jwt_secret": SECRET, "jwt_algorithms": "HS256,none"}, "none"),
    ],
)
def test_insecure_settings_refuse_to_start(settings: dict[str, str], message: str) -> None:
    with pytest.raises((ConfigurationError, ValueError), match=message):
        App([Chat()], Settings(**settings))  # type: ignore[arg-type]


def test_bad_config_is_a_clear_cli_error(tmp_path: Path) -> None:
    result = wsgate("token", "--sub", "x", "--jwt-algorithms", "none", "--jwt-secret", SECRET)
    assert result.returncode == 2
    assert "none" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("trusted", "expected"), [(None, "127.0.0.1"), ("127.0.0.1", "203.0.113.9")]
)
async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    tmp_path: Path, trusted: str | None, expected: str
) -> None:
    args = ["--database", str(tmp_path / "p.db")]
    if trusted:
        args += ["--trusted-proxies", trusted]
    proc, url = await start_demo(args, {"WSGATE_JWT_SECRET": SECRET})
    try:
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        with pytest.raises(Refused):  # the refusal's audit line names the remote address
            async with connect("socketio", url, token="forged", headers=headers):
                pass
    finally:
        out = await stop(proc)
    refused = [line for line in out.splitlines() if " refused " in line]
    assert refused, out
    assert f"remote={expected}" in refused[0]


async def test_serve_runs_a_users_app(tmp_path: Path) -> None:
    (tmp_path / "myrealtime.py").write_text(
        "from wsgate import App, Context, Gateway, Settings, subscribe\n"
        "class Hello(Gateway):\n"
        "    @subscribe('hello')\n"
        "    async def hello(self, ctx: Context) -> str:\n"
        "        return f'hello {ctx.sub}'\n"
        "app = App([Hello()], Settings())\n"
    )
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsgate",
        "serve",
        "myrealtime:app",
        "--port",
        str(port),
        cwd=tmp_path,
        env={**ENV, "WSGATE_JWT_SECRET": SECRET, "WSGATE_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                try:
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        async with connect("socketio", url, token=make_token(sub="quinn")) as c:
            assert await c.call("hello") == "hello quinn"
    finally:
        await stop(proc)
