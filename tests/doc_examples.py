"""The Python examples of the README and docs/, as code the tests run and type-check.

Documentation that is not run goes stale; each example a user copies is
executed by a test exactly as written (and type-checked with mypy --strict).
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(relative: str, *, section: str | None = None) -> list[str]:
    """The ```python blocks of a Markdown file (of one ``## section`` when given)."""
    text = (ROOT / relative).read_text(encoding="utf-8")
    if section is not None:
        start = text.index(f"\n## {section}\n")
        end = text.find("\n## ", start + 1)
        text = text[start : end if end >= 0 else len(text)]
    return _BLOCK.findall(text)


def run_blocks(name: str, blocks: list[str]) -> types.ModuleType:
    """Execute ``blocks`` in order as the one module ``name`` (as a user's file would be)."""
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    # Libraries that resolve annotations through sys.modules (SQLAlchemy's
    # Mapped[...]) find the module as they would find a user's file.
    sys.modules[name] = module
    source = "\n".join(blocks)
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module
