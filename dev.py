#!/usr/bin/env python3
"""The two set-up commands of the README, needing nothing but Python 3.11+.

    python3 dev.py demo         # install into .venv, then run `wsgate demo` on 127.0.0.1:8000
    python3 dev.py test         # install into .venv (with test extras), then lint, type-check, test
    python3 dev.py test-lowest  # the tests again, every runtime dependency at its lowest allowed
    python3 dev.py bench        # install, then bench/run.py (pass --quick etc.; needs Node.js + npm)
    python3 dev.py docs         # install, then serve the docs site on http://127.0.0.1:8001/
                                # (`python3 dev.py docs build` writes it to site/)

A stamp file holding a hash of pyproject.toml skips reinstalling when nothing
changed, so both commands are fast the second time.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def run(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


LOWEST_VENV = ROOT / ".venv-lowest"


def python_of(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts" if os.name == "nt" else "bin") / (
        "python.exe" if os.name == "nt" else "python"
    )


def lowest_constraints() -> str:
    """``name==X`` for every runtime dependency declared ``>=X``: its lowest allowed version.

    Only the direct dependencies are held low (as ``uv --resolution
    lowest-direct`` does); what they need resolves as usual. CI runs the
    tests against these and against the newest versions, so a lower bound in
    pyproject.toml is a promise that is checked.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?(.*)", requirement)
        lower = re.search(r">=\s*([0-9][^,;\s]*)", match.group(3)) if match else None
        if match is None or lower is None:
            sys.exit(f"dependency without a lower bound: {requirement!r}")
        pins.append(f"{match.group(1)}=={lower.group(1)}")
    return "\n".join(pins) + "\n"


def ensure_installed(extras: str, venv_dir: Path = VENV, constraints: str = "") -> Path:
    if sys.version_info < (3, 11):
        sys.exit(f"wsgate needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    python = python_of(venv_dir)
    if not python.exists():
        print(f"creating {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + extras.encode() + constraints.encode()
    ).hexdigest()
    stamp = venv_dir / f".wsgate-installed-{extras or 'base'}"
    if stamp.exists() and stamp.read_text() == digest:
        return python
    run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    target = f".[{extras}]" if extras else "."
    if constraints:
        pinned = venv_dir / "lowest-constraints.txt"
        pinned.write_text(constraints)
        run(python, "-m", "pip", "install", "--quiet", "-e", target, "-c", pinned)
    else:
        run(python, "-m", "pip", "install", "--quiet", "-e", target)
    stamp.write_text(digest)
    return python


def demo(args: list[str]) -> None:
    ensure_installed("")
    if not any(a.startswith("--port") for a in args):
        args = ["--port", "8000", *args]
    if not any(a.startswith("--host") for a in args):
        args = ["--host", "127.0.0.1", *args]
    os.execv(str(PYTHON), [str(PYTHON), "-m", "wsgate", "demo", *args])


def test(args: list[str]) -> None:
    ensure_installed("test")
    linted = ("src", "tests", "bench", "examples", "docs/plugins")
    run(PYTHON, "-m", "ruff", "check", *linted)
    run(PYTHON, "-m", "ruff", "format", "--check", *linted)
    run(PYTHON, "-m", "mypy", "src")
    run(PYTHON, "-m", "mypy", "--strict", "docs/plugins")
    run(PYTHON, "-m", "pytest", *(args or ["-q"]))


def test_lowest(args: list[str]) -> None:
    """The test suite with every runtime dependency at the lowest version pyproject allows."""
    constraints = lowest_constraints()
    python = ensure_installed("test", LOWEST_VENV, constraints)
    print("lowest allowed runtime dependencies:\n" + constraints, flush=True)
    run(python, "-m", "pytest", *(args or ["-q"]))


def bench(args: list[str]) -> None:
    ensure_installed("bench")
    run(PYTHON, "bench/run.py", *args)


def docs(args: list[str]) -> None:
    """The documentation site (mkdocs.yml): served with live reload, or built with ``build``."""
    ensure_installed("docs")
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # Material's banner about MkDocs 2.0
    if args[:1] == ["build"]:
        run(PYTHON, "-m", "mkdocs", "build", "--strict", *args[1:])
    else:
        run(PYTHON, "-m", "mkdocs", "serve", "--dev-addr", "127.0.0.1:8001", *args)


def main() -> None:
    commands = {
        "demo": demo,
        "test": test,
        "test-lowest": test_lowest,
        "bench": bench,
        "docs": docs,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    try:
        commands[sys.argv[1]](sys.argv[2:])
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)


if __name__ == "__main__":
    main()
