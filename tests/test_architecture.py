"""The layering rules of ARCHITECTURE.md, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wsgate

SRC = Path(wsgate.__file__).parent


def wsgate_imports(path: Path) -> list[str]:
    """Every ``wsgate...`` module ``path`` imports (absolute imports, the only kind used)."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wsgate"):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("wsgate"))
    return found


def files(folder: str) -> list[Path]:
    return sorted((SRC / folder).rglob("*.py"))


@pytest.mark.parametrize("path", files("transports"), ids=lambda p: p.name)
def test_transports_see_only_the_core_port(path: Path) -> None:
    allowed = ("wsgate.core.port", "wsgate.codes", "wsgate.transports")
    outside = [m for m in wsgate_imports(path) if not m.startswith(allowed)]
    assert outside == [], f"{path.name} reaches past the port: {outside}"


@pytest.mark.parametrize("path", [*files("demo"), SRC / "cli.py"], ids=lambda p: p.name)
def test_demo_and_cli_use_only_the_public_api(path: Path) -> None:
    allowed = {"wsgate", "wsgate.stores", "wsgate.testing"}
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
