"""docs/security.md names only tests that exist: every ``file.py::name`` it cites is defined.

The page maps each item of the OWASP cheat sheet and three RFCs to the test
that proves it; a renamed or deleted test must not leave a row pointing at
nothing. Rows whose test is still to come say ``TODO(lead)`` instead.

Definitions are found with a regular expression, not ``ast``: CPython
3.11.7's ``ast`` can be left broken by a traceback logged earlier in the
same process (gh-106905; see tests/test_architecture.py).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITED = re.compile(r"`(test_\w+\.py)::(test_\w+)`")


def defined_tests(path: Path) -> set[str]:
    if not path.exists():
        return set()
    text = path.read_text(encoding="utf-8")
    return set(re.findall(r"^(?:async )?def (test_\w+)\(", text, re.MULTILINE))


def test_every_test_the_security_page_cites_exists() -> None:
    page = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    cited = CITED.findall(page)
    assert len(cited) > 50, "the page cites tests as `test_file.py::test_name`"
    found: dict[str, set[str]] = {}
    missing = []
    for file, name in cited:
        if file not in found:
            found[file] = defined_tests(ROOT / "tests" / file)
        if name not in found[file]:
            missing.append(f"{file}::{name}")
    assert missing == []
