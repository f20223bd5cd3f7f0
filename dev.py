#!/usr/bin/env python3
"""The two set-up commands of the README, needing nothing but Python 3.11+.

    python3 dev.py demo   # install into .venv, then run `wsgate demo` on 127.0.0.1:8000
    python3 dev.py test   # install into .venv (with test extras), then lint, type-check, test
    python3 dev.py bench  # install, then bench/run.py (pass --quick etc.; needs Node.js + npm)

A stamp file holding a hash of pyproject.toml skips reinstalling when nothing
changed, so both commands are fast the second time.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def run(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def ensure_installed(extras: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"wsgate needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".wsgate-installed-{extras or 'base'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    target = f".[{extras}]" if extras else "."
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", target)
    stamp.write_text(digest)


def demo(args: list[str]) -> None:
    ensure_installed("")
    if not any(a.startswith("--port") for a in args):
        args = ["--port", "8000", *args]
    if not any(a.startswith("--host") for a in args):
        args = ["--host", "127.0.0.1", *args]
    os.execv(str(PYTHON), [str(PYTHON), "-m", "wsgate", "demo", *args])


def test(args: list[str]) -> None:
    ensure_installed("test")
    run(PYTHON, "-m", "ruff", "check", "src", "tests", "bench", "examples")
    run(PYTHON, "-m", "ruff", "format", "--check", "src", "tests", "bench", "examples")
    run(PYTHON, "-m", "mypy", "src")
    run(PYTHON, "-m", "pytest", *(args or ["-q"]))


def bench(args: list[str]) -> None:
    ensure_installed("bench")
    run(PYTHON, "bench/run.py", *args)


def main() -> None:
    commands = {"demo": demo, "test": test, "bench": bench}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    try:
        commands[sys.argv[1]](sys.argv[2:])
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)


if __name__ == "__main__":
    main()
