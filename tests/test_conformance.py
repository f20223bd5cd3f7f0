"""The official Engine.IO and Socket.IO protocol test suites, run against wsgate's fixtures.

The suites are the ``test-suite/`` folders of ``socketio/engine.io-protocol``
and ``socketio/socket.io-protocol`` at pinned commits (never committed here),
put into ``.cache/protocol-suites/`` (git-ignored) with their npm packages,
then run with mocha against ``python -m wsgate.conformance``. Where from, in
this order: a local git copy of each repository under the folder named by
``WSGATE_PROTOCOL_SUITES`` (``<folder>/socketio+engine.io-protocol`` holding
a git directory, as the ``fetch`` tool leaves them; ``.ci/run`` sets it where
such copies exist), else a download from GitHub. The suites hard-code
``http://localhost:3000``: the copy here points at a free port instead.
Without Node.js/npm, or with neither source reachable, the test skips (also
in CI: the suites are outside tests, and the page docs/decisions/engine.md
records their last full run).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from conftest import missing_service
from support import free_port

SUITES = {
    "engineio": ("socketio/engine.io-protocol", "f21de7b00ed09b3bbad2807db718ea5d6bc36aba", 24),
    "socketio": ("socketio/socket.io-protocol", "4f633dd6a4445492d57af3b27ddd2d336014f1f1", 32),
}
"""Protocol -> (repository, commit, how many tests its suite has)."""

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "protocol-suites"
COMPLETE = ".wsgate-installed"

pytestmark = pytest.mark.timeout(300)


def _suite(protocol: str) -> Path:
    """The suite's folder with its npm packages installed (downloaded when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing_service("Node.js and npm are not installed")
    repo, commit, _ = SUITES[protocol]
    root = CACHE / f"{protocol}-{commit[:12]}"
    folder = root / "test-suite"
    if (root / COMPLETE).exists():
        return folder
    if not (folder / "test-suite.js").exists():
        content = _local_archive(repo, commit) or _download(protocol, repo, commit)
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) > 2 and parts[1] == "test-suite" and member.isfile():
                    target = folder / Path(*parts[2:])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    target.write_bytes(source.read())
    result = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        missing_service(f"npm install failed: {result.stderr[-2000:]}")
    (root / COMPLETE).write_text(commit)
    return folder


def _local_archive(repo: str, commit: str) -> bytes | None:
    """The suite's tree at ``commit`` from a local git copy, if one is there."""
    base = os.environ.get("WSGATE_PROTOCOL_SUITES")
    if not base:
        return None
    for gitdir in (
        Path(base) / repo.replace("/", "+") / "repo",
        Path(base) / repo.replace("/", "+"),
    ):
        result = subprocess.run(
            [
                "git",
                "--git-dir",
                str(gitdir),
                "archive",
                "--format=tar.gz",
                "--prefix=suite/",
                commit,
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode == 0:
            return result.stdout
    return None


def _download(protocol: str, repo: str, commit: str) -> bytes:
    url = f"https://codeload.github.com/{repo}/tar.gz/{commit}"
    try:
        archive = httpx.get(url, timeout=60, follow_redirects=True)
        archive.raise_for_status()
    except httpx.HTTPError as exc:
        pytest.skip(f"cannot download the {protocol} suite and no local copy: {exc!r}")
    return archive.content


def _wait_listening(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the fixture exited with {server.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail("the fixture did not start listening")


@pytest.mark.parametrize("protocol", sorted(SUITES))
def test_official_protocol_suite_passes(protocol: str, tmp_path: Path) -> None:
    folder = _suite(protocol)
    port = free_port()
    script = (folder / "test-suite.js").read_text(encoding="utf-8")
    assert "http://localhost:3000" in script
    (folder / f"test-suite-{port}.js").write_text(
        script.replace("http://localhost:3000", f"http://127.0.0.1:{port}"), encoding="utf-8"
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "wsgate.conformance", protocol, "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_listening(port, server)
        result = subprocess.run(
            [
                "node",
                str(folder / "node_modules" / "mocha" / "bin" / "mocha"),
                f"test-suite-{port}.js",
                "--reporter",
                "dot",
            ],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(10)
        (folder / f"test-suite-{port}.js").unlink(missing_ok=True)
    report = result.stdout + result.stderr
    passing = re.search(r"(\d+) passing", report)
    assert result.returncode == 0, report[-4000:]
    assert passing is not None and int(passing.group(1)) == SUITES[protocol][2], report[-4000:]
    assert "failing" not in report
