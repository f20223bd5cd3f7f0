"""The ``wsgate`` command as a user runs it: real subprocesses, real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from clients import Refused, connect
from support import SECRET, make_token, wsgate_process
from wsgate import App, ConfigurationError, Settings
from wsgate.demo.gateways import Chat

ENV = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
OTHER_SECRET = "another-secret-that-is-long-enough-0123456789"


def wsgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsgate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, **(env or {})},
        check=False,
    )


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    database = tmp_path / "cli.db"
    env = {"WSGATE_JWT_SECRET": SECRET}
    async with wsgate_process("demo", "--database", str(database), env=env) as (url, _):
        yield url, database


async def test_token_command_mints_tokens_the_demo_accepts(demo: tuple[str, Path]) -> None:
    url, _ = demo
    minted = wsgate("token", "--sub", "dave", "--role", "admin", env={"WSGATE_JWT_SECRET": SECRET})
    assert minted.returncode == 0, minted.stderr
    async with connect("socketio", url, token=minted.stdout.strip(), namespace="/admin") as c:
        assert await c.call("whoami") == {"sub": "dave", "roles": ["admin"]}
    # The flag wins over the environment: this one is signed with another key.
    other = wsgate(
        "token", "--sub", "dave", "--jwt-secret", OTHER_SECRET, env={"WSGATE_JWT_SECRET": SECRET}
    )
    assert other.returncode == 0, other.stderr
    with pytest.raises(Refused) as refused:
        async with connect("socketio", url, token=other.stdout.strip()):
            pass
    assert refused.value.code == "unauthorized"


async def test_users_add_then_login(demo: tuple[str, Path]) -> None:
    url, database = demo
    added = wsgate(
        "users", "add", "erin", "--password", "pw-erin-123", "--role", "admin",
        "--database", str(database),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "pw-erin-123" not in added.stdout
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{url}/auth/login", json={"username": "erin", "password": "pw-erin-123"}
        )
    assert resp.status_code == 200 and resp.json()["roles"] == ["admin"]


async def test_demo_without_a_key_generates_one_and_seeds_users(tmp_path: Path) -> None:
    async with wsgate_process("demo", "--database", str(tmp_path / "fresh.db")) as (url, lines):
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/")).status_code == 200
    out = "\n".join(lines)
    assert "generated a random HMAC secret" in out
    assert "created user 'alice'" in out and "created user 'admin'" in out


async def test_demo_flags_override_env(tmp_path: Path) -> None:
    env = {"WSGATE_JWT_SECRET": SECRET, "WSGATE_ALLOWED_ORIGINS": "https://env.example"}
    args = (
        "demo",
        "--database",
        str(tmp_path / "o.db"),
        "--allowed-origins",
        "https://flag.example",
    )
    async with wsgate_process(*args, env=env) as (url, _), httpx.AsyncClient() as http:
        flag = await http.get(f"{url}/healthz", headers={"Origin": "https://flag.example"})
        env_origin = await http.get(f"{url}/healthz", headers={"Origin": "https://env.example"})
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


def test_bad_config_is_a_clear_cli_error() -> None:
    result = wsgate("token", "--sub", "x", "--jwt-algorithms", "none", "--jwt-secret", SECRET)
    assert result.returncode == 2
    assert "none" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("trusted", "expected"), [(None, "127.0.0.1"), ("127.0.0.1", "203.0.113.9")]
)
async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    tmp_path: Path, trusted: str | None, expected: str
) -> None:
    args = ["demo", "--database", str(tmp_path / "p.db")]
    if trusted:
        args += ["--trusted-proxies", trusted]
    async with wsgate_process(*args, env={"WSGATE_JWT_SECRET": SECRET}) as (url, lines):
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        with pytest.raises(Refused):  # the refusal's audit line names the remote address
            async with connect("socketio", url, token="forged", headers=headers):
                pass
    refused = [line for line in lines if " refused " in line]
    assert refused, lines
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
    env = {"WSGATE_JWT_SECRET": SECRET}
    async with wsgate_process("serve", "myrealtime:app", env=env, cwd=str(tmp_path)) as (url, _):
        async with connect("socketio", url, token=make_token(sub="quinn")) as c:
            assert await c.call("hello") == "hello quinn"
