"""``wsgate.typed_client``: Python calls typed by the handlers themselves.

Checked twice: at run time over every client it wraps (wsgate.testing's
Socket.IO and /ws clients in memory, python-socketio against a real server),
and at type-check time by ``mypy --strict`` on a user's code and on misuses
that must be rejected line by line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import socketio

from conftest import missing_service
from support import free_port, make_token, serve, settings_for
from wsgate import App, Settings, subscribe
from wsgate.demo.gateways import (
    Admin,
    Announcement,
    Chat,
    Message,
    RoomBody,
    SayBody,
    TextBody,
)
from wsgate.testing import AppClient
from wsgate.typed_client import RemoteError, TypedClient

TYPED = Path(__file__).parent / "typed"
SECRET = "typed-client-secret-long-enough-0123456789"


@pytest.fixture
def app() -> App:
    return App([Chat(), Admin()], Settings(jwt_secret=SECRET))


@pytest.mark.parametrize("transport", ["socketio", "websocket"])
async def test_calls_return_validated_acks_and_raise_error_objects(
    app: App, transport: str
) -> None:
    async with AppClient(app) as client:
        connect = client.socketio if transport == "socketio" else client.websocket
        async with connect(sub="alice") as alice, connect(sub="bob") as bob:
            typed = TypedClient(alice)
            echoed = await typed.call(Chat.echo, TextBody(text="hé"))
            assert isinstance(echoed, TextBody) and echoed.text == "hé"
            assert await typed.call(Chat.whoami) == {"sub": "alice", "roles": []}
            assert await typed.call(Chat.ping) == "pong"
            assert await typed.call(Chat.join, RoomBody(room="lobby")) == {"room": "lobby"}
            await TypedClient(bob).call(Chat.join, RoomBody(room="lobby"))
            said = await TypedClient(bob).call(Chat.say, SayBody(room="lobby", text="hi"))
            assert said == {"delivered": True}
            assert await typed.next_push("message", Message) == {
                "room": "lobby",
                "from": "bob",
                "text": "hi",
            }
            with pytest.raises(RemoteError) as denied:
                await typed.call(Chat.broadcast, TextBody(text="x"))
            assert (denied.value.status, denied.value.code) == (403, "forbidden")
            # A body the server refuses (built without validation): 400 naming the field.
            with pytest.raises(RemoteError) as invalid:
                await typed.call(Chat.echo, TextBody.model_construct(text=""))
            assert invalid.value.status == 400 and "text" in invalid.value.fields


async def test_an_ack_that_does_not_match_the_return_type_is_refused(app: App) -> None:
    """The ack is validated, not cast: a wrong shape raises instead of lying to the caller."""

    class Liar(Chat):
        @subscribe("whoami")
        async def whoami(self, ctx):  # type: ignore[no-untyped-def,override]
            return {"sub": 42}

    from pydantic import ValidationError

    async with AppClient(App([Liar()], Settings(jwt_secret=SECRET))) as client:
        async with client.socketio(sub="alice") as sio:
            with pytest.raises(ValidationError):
                await TypedClient(sio).call(Chat.whoami)


async def test_only_subscribed_handlers_can_be_called(app: App) -> None:
    async with AppClient(app) as client, client.socketio(sub="alice") as sio:
        with pytest.raises(TypeError, match="not an @subscribe handler"):
            await TypedClient(sio).call(len)  # type: ignore[call-overload]


async def test_over_python_socketio_against_a_real_server() -> None:
    port = free_port()
    async with serve(App([Chat(), Admin()], settings_for(port)), port) as url:
        sio = socketio.AsyncClient(reconnection=False)
        pushes: list[object] = []
        sio.on("announcement", pushes.append, namespace="/admin")
        await sio.connect(
            url,
            auth={"token": make_token("root", roles=["admin"])},
            namespaces=["/admin"],
            transports=["websocket"],
            wait_timeout=5,
        )
        try:
            typed = TypedClient(sio, namespace="/admin")
            who = await typed.call(Chat.whoami)
            assert who == {"sub": "root", "roles": ["admin"]}
            assert await typed.call(Chat.broadcast, TextBody(text="news")) == {"delivered": True}
            with pytest.raises(RemoteError) as missing:
                await typed.call(Chat.echo, TextBody(text="echo is not served on /admin"))
            assert missing.value.code == "not_found"
        finally:
            await sio.disconnect()
        assert [Announcement(text="news")] == pushes


def mypy(tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if tool is None:
        missing_service("mypy is not installed")
    shutil.copy(TYPED / name, tmp_path / name)
    return subprocess.run(
        [str(tool), "--strict", "--no-incremental", "--show-error-codes", name],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )


def test_mypy_accepts_typed_calls(tmp_path: Path) -> None:
    result = mypy(tmp_path, "typed_ok.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_rejects_each_misuse(tmp_path: Path) -> None:
    result = mypy(tmp_path, "typed_misuse.py")
    lines = (TYPED / "typed_misuse.py").read_text().splitlines()
    marked = {n for n, line in enumerate(lines, 1) if line.endswith("# expect-error")}
    reported = {int(n) for n in re.findall(r"^typed_misuse\.py:(\d+): error", result.stdout, re.M)}
    assert len(marked) >= 6
    assert reported == marked, result.stdout
