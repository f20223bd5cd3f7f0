"""The ``wsgate`` command as a user runs it: real subprocesses, real sockets."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from clients import Refused, connect
from conftest import missing_service
from support import SECRET, free_port, make_token, stop_process, wait_healthy, wsgate_process
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


async def test_replacing_a_user_ends_the_sessions_of_the_old_password(
    demo: tuple[str, Path],
) -> None:
    """A password reset or a lost role must not leave old tokens working (socket, refresh)."""
    url, database = demo
    where = ("--database", str(database))
    created = wsgate(
        "users", "add", "frank", "--password", "pw-old-1234", "--role", "admin", *where
    )
    assert created.returncode == 0, created.stderr
    assert "revoked" not in created.stdout  # a new user has no earlier tokens
    async with httpx.AsyncClient(base_url=url, headers={"Origin": url}) as http:
        old = await http.post("/auth/login", json={"username": "frank", "password": "pw-old-1234"})
        assert old.status_code == 200
        access, refresh = old.cookies["access_token"], old.cookies["refresh_token"]
        async with connect("websocket", url, token=access, namespace="/admin") as live:
            assert (await live.call("whoami"))["roles"] == ["admin"]
            reset = wsgate("users", "add", "frank", "--password", "pw-new-1234", *where)
            assert reset.returncode == 0, reset.stderr
            assert "revoked every token of frank" in reset.stdout
            assert await live.wait_closed(timeout=10) == "4401"
        http.cookies.clear()
        refreshed = await http.post("/auth/refresh", headers={"Cookie": f"refresh_token={refresh}"})
        assert refreshed.status_code == 401
        login = {"username": "frank", "password": "pw-old-1234"}
        assert (await http.post("/auth/login", json=login)).status_code == 401
        new = await http.post("/auth/login", json={**login, "password": "pw-new-1234"})
        assert new.status_code == 200 and new.json()["roles"] == []
    async with connect("websocket", url, token=new.cookies["access_token"]) as fresh:
        assert await fresh.call("whoami") == {"sub": "frank", "roles": []}


def test_replacing_a_user_while_revocations_are_unreachable_says_what_to_do(
    tmp_path: Path,
) -> None:
    where = ("--database", str(tmp_path / "u.db"))
    assert wsgate("users", "add", "gail", "--password", "pw-gail-1234", *where).returncode == 0
    unreachable = ("--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--redis-timeout", "1")
    reset = wsgate("users", "add", "gail", "--password", "pw-gail-5678", *where, *unreachable)
    assert reset.returncode == 1
    assert "user gail saved" in reset.stdout
    lines = reset.stderr.strip().splitlines()
    assert len(lines) == 1 and "wsgate revoke --sub gail" in lines[0], reset.stderr


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


def test_token_command_adds_claims_as_json_or_text() -> None:
    minted = wsgate(
        "token",
        "--sub",
        "erin",
        "--claim",
        'boards=["tea", "cake"]',
        "--claim",
        "team=blue",
        "--claim",
        "level=3",
        env={"WSGATE_JWT_SECRET": SECRET},
    )
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["boards"] == ["tea", "cake"] and claims["team"] == "blue"
    assert claims["level"] == 3 and claims["sub"] == "erin"
    refused = wsgate("token", "--sub", "erin", "--claim", "novalue")
    assert refused.returncode == 2 and "KEY=VALUE" in refused.stderr
    reserved = wsgate(
        "token", "--sub", "erin", "--claim", "sub=mallory", env={"WSGATE_JWT_SECRET": SECRET}
    )
    assert reserved.returncode == 2 and "may not set sub" in reserved.stderr


PLAIN_APP = """
from wsgate import App, Context, Gateway, Settings, public, subscribe

class Hello(Gateway):
    @public
    @subscribe("ping")
    async def ping(self, ctx: Context) -> str:
        return "pong"

app = App([Hello()], Settings(jwt_secret={secret!r}))
"""


async def test_under_plain_uvicorn_the_served_port_is_the_default_origin_and_logs_show(
    tmp_path: Path,
) -> None:
    """No wsgate CLI: ``uvicorn module:app --port N``, with Settings' port left at 8000."""
    (tmp_path / "plainapp.py").write_text(PLAIN_APP.format(secret=SECRET))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "plainapp:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        cwd=tmp_path,
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
        own = {"Origin": url}
        async with connect("websocket", url, token=make_token("ann"), headers=own) as client:
            assert await client.call("ping") == "pong"
        with pytest.raises(Refused) as refused:
            async with connect(
                "websocket", url, token=make_token(), headers={"Origin": "http://127.0.0.1:8000"}
            ):
                pass
        assert refused.value.code == "forbidden"
    finally:
        await stop_process(proc)
    assert proc.stdout is not None
    output = (await proc.stdout.read()).decode()
    connected = [line for line in output.splitlines() if " connected " in line]
    assert connected, output
    # Time, level and logger on every wsgate line, though uvicorn configured only its own.
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO wsgate\.audit: connected", connected[0]
    )
    refused_lines = [line for line in output.splitlines() if "origin_not_allowed" in line]
    assert refused_lines and "origin=http://127.0.0.1:8000" in refused_lines[0]


README_SNIPPET = """
from wsgate import App, Settings
from wsgate.testing import AppClient

settings = Settings()
app = App([], settings=Settings(jwt_secret="x" * 40))
client = AppClient(app)
"""


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_settings_type_check_as_the_readme_uses_them(tmp_path: Path, checker: str) -> None:
    """``Settings()`` with no arguments is valid to mypy and pyright (Pylance)."""
    if shutil.which(checker, path=str(Path(sys.executable).parent)) is None:
        missing_service(f"{checker} is not installed")
    source = tmp_path / "snippet.py"
    source.write_text(README_SNIPPET)
    tool = str(Path(sys.executable).parent / checker)
    if checker == "mypy":
        args = [tool, "--strict", str(source)]
    else:
        args = [tool, "--pythonpath", sys.executable, str(source)]
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
