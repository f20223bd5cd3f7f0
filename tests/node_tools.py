"""npm packages the tests run: installed once per package.json into .cache/, never committed.

Skips on a machine without Node.js and npm, fails in CI (``missing_service``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from conftest import missing_service

MANIFEST = Path(__file__).parent / "node" / "package.json"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "node-tests"
COMPLETE = ".wsgate-installed"


def install() -> Path:
    """``node_modules`` holding tests/node/package.json's packages (installed when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing_service("Node.js and npm are not installed")
    digest = hashlib.sha256(MANIFEST.read_bytes()).hexdigest()[:16]
    root = CACHE / digest
    modules = root / "node_modules"
    if (root / COMPLETE).exists():
        return modules
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(MANIFEST, root / "package.json")
    result = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        missing_service(f"npm install failed: {result.stderr[-2000:]}")
    (root / COMPLETE).write_text(digest)
    return modules
