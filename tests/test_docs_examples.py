"""The README's gateway and docs/dependencies.md, run as written (and type-checked).

docs/interceptors.md is run by tests/test_interceptors.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import missing_service
from doc_examples import python_blocks, run_blocks
from wsgate.testing import AppClient

SECRET = "a-test-secret-that-is-long-enough-0123456789"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``Settings()`` of the examples reads the environment; their files go to tmp_path."""
    for name in [n for n in os.environ if n.startswith("WSGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WSGATE_JWT_SECRET", SECRET)
    monkeypatch.chdir(tmp_path)


async def test_the_readme_gateway_with_its_service_and_interceptor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = run_blocks("readme_gateway", python_blocks("README.md", section="Your own gateway"))
    async with AppClient(readme.app) as client:
        async with client.socketio(sub="alice") as alice, client.websocket(sub="bob") as bob:
            assert await alice.call("ping") == "pong"
            assert await alice.call("echo", {"text": "hi"}) == {"text": "hi"}
            assert await alice.call("greet", {"text": "Hello"}) == "Hello, alice!"
            assert await bob.call("greet", {"text": "Hi"}) == "Hi, bob!"
            denied = await alice.call("admin:broadcast", {"text": "x"})
            assert denied["error"]["status"] == 403
    printed = capsys.readouterr().out.splitlines()
    assert "hello alice" in printed
    timings = [line for line in printed if line.startswith(("ping ", "echo ", "greet "))]
    assert len(timings) == 4 and all(line.endswith(" ms") for line in timings)


async def test_a_database_session_per_event_and_a_service_per_connection() -> None:
    blocks = python_blocks("docs/dependencies.md")
    example = run_blocks("dependencies_doc", blocks)
    async with AppClient(example.app) as client:
        async with client.socketio(sub="alice", namespace="/notes") as alice:
            assert await alice.call("notes:add", {"text": "first"}) == {"id": 1}
            assert await alice.call("notes:add", {"text": "second"}) == {"id": 2}
            assert await alice.call("notes:mine") == ["first", "second"]
            bad = await alice.call("notes:add", {"text": ""})
            assert bad["error"]["status"] == 400
        async with client.websocket(sub="bob", namespace="/notes") as bob:
            assert await bob.call("notes:mine") == [], "each user's notes"
        async with client.socketio(sub="carol", namespace="/feeds") as carol:
            assert await carol.call("feeds:follow", {"name": "news"}) == ["news"]
            assert await carol.call("feeds:follow", {"name": "sport"}) == ["news", "sport"]
            assert example.feeds.followers == {"news": {carol.sid}, "sport": {carol.sid}}
        # Closed with the connection: no follower is left behind.
        for _ in range(100):
            if not any(example.feeds.followers.values()):
                break
            await asyncio.sleep(0.01)
        assert example.feeds.followers == {"news": set(), "sport": set()}
    # The documented test, with its fake session, runs as written.
    await example.test_notes_without_a_database()


async def test_the_session_rolls_back_when_the_handler_fails() -> None:
    example = run_blocks("dependencies_doc_rollback", python_blocks("docs/dependencies.md"))
    # Written in the example's own module, as a user would add a handler to it.
    extra = """
    class Failing(Notes, namespace="/failing"):
        @subscribe("notes:add-then-fail")
        async def add_then_fail(self, ctx: Context, body: NewNote, db: DbSession) -> None:
            db.add(Note(author=ctx.sub, text=body.text))
            await db.flush()
            raise RuntimeError("after the insert")

    failing_app = App([Failing()], settings=Settings())
    """
    exec(textwrap.dedent(extra), example.__dict__)
    async with AppClient(example.failing_app) as client:
        async with client.socketio(sub="dan", namespace="/failing") as dan:
            failed = await dan.call("notes:add-then-fail", {"text": "lost"})
            assert failed["error"]["status"] == 500
            assert await dan.call("notes:add", {"text": "kept"}) == {"id": 1}, "id 1 is free"
            assert await dan.call("notes:mine") == ["kept"], "the failed insert rolled back"


def test_the_examples_type_check_with_mypy_strict(tmp_path: Path) -> None:
    mypy = Path(sys.executable).parent / "mypy"
    if shutil.which(str(mypy)) is None:
        missing_service("mypy is not installed")
    files = {
        "readme_gateway.py": python_blocks("README.md", section="Your own gateway"),
        "dependencies_doc.py": python_blocks("docs/dependencies.md"),
        "interceptors_doc.py": python_blocks("docs/interceptors.md"),
    }
    for name, blocks in files.items():
        (tmp_path / name).write_text("\n".join(blocks))
    result = subprocess.run(
        [str(mypy), "--strict", "--no-incremental", *files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
