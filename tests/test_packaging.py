"""The sdist and the wheel: ``python -m build`` and ``twine check`` pass; they hold what they must.

One build per module (about 5 s): without build isolation, so that the test
needs no network and no fresh environment; the backend pyproject.toml's
``[build-system]`` names is in the test extra, and ``build`` refuses to run if
it is not satisfied.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

import wsgate

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "src" / "wsgate" / "demo" / "static"

pytestmark = pytest.mark.timeout(180)  # a build on a loaded CI machine; about 5 s here


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def only(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_twine_check_passes_on_both(dist: Path) -> None:
    artifacts = [only(dist, "*.whl"), only(dist, "*.tar.gz")]
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, artifacts)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_wheel_holds_the_package_its_data_and_nothing_else(dist: Path) -> None:
    names = zipfile.ZipFile(only(dist, "*.whl")).namelist()
    assert "wsgate/py.typed" in names
    assert "wsgate/testing/__init__.py" in names
    assert "wsgate/testing/pytest_plugin.py" in names
    static = {p.name for p in STATIC.iterdir() if p.is_file()}
    assert {"index.html", "socket.io.min.js", "style.css", "app.js"} <= static
    for name in static:
        assert f"wsgate/demo/static/{name}" in names, name
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"wsgate", f"wsgate-{wsgate.__version__}.dist-info"}, tops
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/") or ".venv" in n]


def test_wheel_metadata_is_complete(dist: Path) -> None:
    wheel = zipfile.ZipFile(only(dist, "*.whl"))
    meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = HeaderParser().parsestr(wheel.read(meta_name).decode())
    assert meta["Name"] == "wsgate"
    assert meta["Version"] == wsgate.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta["Author"] or meta["Author-email"]
    assert "websocket" in meta["Keywords"].split(",")
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    # the README is the long description, as the package index shows it
    assert "secure by default" in meta.get_payload()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel.namelist())
    entry_points = wheel.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert "wsgate = wsgate.cli:main" in entry_points


def test_sdist_holds_readme_license_changelog_and_no_environment(dist: Path) -> None:
    sdist = only(dist, "*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    for required in ("README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml"):
        assert required in names, required
    assert "src/wsgate/py.typed" in names
    assert "src/wsgate/demo/static/socket.io.min.js" in names
    assert not [n for n in names if n.startswith(("tests/", ".venv", ".git", "bench/results"))]
