"""The layering rules of ARCHITECTURE.md, checked on the source: who may import whom."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

import wsgate

SRC = Path(wsgate.__file__).parent


_IMPORTS_SCRIPT = """
import ast, json, sys
found = {}
for name in sys.argv[1:]:
    imports = []
    for node in ast.walk(ast.parse(open(name).read(), name)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wsgate"):
            imports.append(node.module)
        elif isinstance(node, ast.Import):
            imports.extend(a.name for a in node.names if a.name.startswith("wsgate"))
    found[name] = imports
print(json.dumps(found))
"""


@functools.cache
def all_imports() -> dict[str, list[str]]:
    """Every ``wsgate...`` module each source file imports (the package uses absolute imports).

    Parsed in a fresh interpreter: CPython 3.11.7's ``ast`` keeps a global
    recursion counter that a failed parse elsewhere in the process (the
    traceback module parses source lines to place its carets) can leave
    wrong, after which every ``ast.parse`` raises "AST constructor recursion
    depth mismatch" (gh-106905, fixed in later 3.11 releases).
    """
    paths = [str(path) for path in sorted(SRC.rglob("*.py"))]
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_SCRIPT, *paths],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found: dict[str, list[str]] = json.loads(result.stdout)
    return found


def wsgate_imports(path: Path) -> list[str]:
    return all_imports()[str(path)]


def files(folder: str) -> list[Path]:
    return sorted((SRC / folder).rglob("*.py"))


@pytest.mark.parametrize("path", files("transports"), ids=lambda p: p.name)
def test_transports_see_only_the_core_port(path: Path) -> None:
    allowed = ("wsgate.core.port", "wsgate.codes", "wsgate.transports")
    outside = [m for m in wsgate_imports(path) if not m.startswith(allowed)]
    assert outside == [], f"{path.name} reaches past the port: {outside}"


@pytest.mark.parametrize("path", [*files("demo"), SRC / "cli.py"], ids=lambda p: p.name)
def test_demo_and_cli_use_only_the_public_api(path: Path) -> None:
    allowed = {"wsgate", "wsgate.check", "wsgate.schema", "wsgate.stores", "wsgate.testing"}
    outside = [
        m for m in wsgate_imports(path) if m not in allowed and not m.startswith("wsgate.demo")
    ]
    assert outside == [], f"{path.name} uses internals: {outside}"


@pytest.mark.parametrize("layer", ["security", "stores"])
def test_lower_layers_never_import_upper_ones(layer: str) -> None:
    upper = ("wsgate.core", "wsgate.transports", "wsgate.app", "wsgate.demo", "wsgate.cli")
    for path in files(layer):
        wrong = [m for m in wsgate_imports(path) if m.startswith(upper)]
        assert wrong == [], f"{layer}/{path.name} imports upwards: {wrong}"


def test_the_public_api_lists_what_app_needs() -> None:
    for name in ("App", "Settings", "Verifier", "RevocationStore", "Server", "Code"):
        assert name in wsgate.__all__
    assert not hasattr(wsgate.Server, "attach") and not hasattr(wsgate.Server, "use_bus")
    assert wsgate.__version__ != "0+unknown"
