"""The documentation site builds with warnings as errors, and documents the whole public API.

One ``mkdocs build --strict`` per module (about 10 s: griffe reads the
sources, mkdocstrings renders the reference) into a temporary directory;
the other tests read the HTML it wrote. A warning of any kind (a broken
link, a missing snippet, a docstring griffe cannot parse, a cross-reference
to nothing) fails the build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import wsgate
import wsgate.testing
from wsgate import Settings

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(240)  # one build on a loaded CI machine; about 10 s here


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml")]
    done = subprocess.run(
        [*command, "-d", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=230,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "WARNING" not in output, output[-5000:]
    return out


class _Text(HTMLParser):
    """The ids and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(value for name, value in attrs if name == "id" and value)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def page(site: Path, path: str) -> _Text:
    parsed = _Text()
    parsed.feed((site / path / "index.html").read_text())
    return parsed


def test_every_public_name_has_its_entry_in_the_reference(site: Path) -> None:
    api = page(site, "reference/api").ids
    missing = [n for n in wsgate.__all__ if n != "__version__" and f"wsgate.{n}" not in api]
    assert not missing
    testing = page(site, "reference/testing").ids
    assert not [n for n in wsgate.testing.__all__ if f"wsgate.testing.{n}" not in testing]
    assert "wsgate.testing.pytest_plugin.wsgate_client" in testing


def test_every_settings_field_is_documented_with_its_description(site: Path) -> None:
    api = page(site, "reference/api")
    text = " ".join(" ".join(api.parts).split())
    for name, field in Settings.model_fields.items():
        assert f"wsgate.Settings.{name}" in api.ids, name
        assert field.description, name
        assert " ".join(field.description.split()) in text, name


def test_no_restructuredtext_markup_reaches_the_reference(site: Path) -> None:
    """Docstrings use Sphinx roles and ``::``: docs/plugins/sphinx_roles.py makes them Markdown."""
    role = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj):`?")
    pages = sorted((site / "reference").rglob("index.html"))
    assert len(pages) >= 2
    for html in pages:
        parsed = _Text()
        parsed.feed(html.read_text())
        text = "".join(parsed.parts)
        assert not role.search(text), (html, role.search(text))
        assert not re.search(r"(?m)^\s*::\s*$", text), html


def test_readme_sections_and_cli_help_are_included(site: Path) -> None:
    gateways = " ".join(page(site, "gateways").parts)
    assert "too_many_connections" in gateways  # the README's table of codes
    settings = " ".join(page(site, "reference/settings").parts)
    assert "WSGATE_MAX_PENDING_HANDSHAKES_PER_ADDRESS" in settings
    cli = " ".join(page(site, "reference/cli").parts)
    for command in ("demo", "serve", "token", "users add", "revoke"):
        assert f"usage: wsgate {command}" in cli, command
    changelog = " ".join(page(site, "changelog").parts)
    assert "0.1.0" in changelog and "Unreleased" in changelog


def test_links_out_of_the_docs_folder_are_not_left_broken(site: Path) -> None:
    """integration.md links ../examples/fastapi_app.py, which is no page of the site."""
    html = (site / "integration" / "index.html").read_text()
    assert "fastapi_app.py" in html
    assert 'href="../examples' not in html and 'href="../../examples' not in html
