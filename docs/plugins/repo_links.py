"""MkDocs hook: links from the docs to files of the repository outside ``docs/``.

The pages under ``docs/`` are read in two places: on the code host, where a
link such as ``../examples/fastapi_app.py`` opens the file, and on the site,
where that file does not exist and MkDocs (rightly, in ``--strict``) calls the
link broken. This hook keeps one text for both: such a link points to the file
on the code host when ``repo_url`` is configured, and becomes plain text
otherwise. A link to a file that does not exist in the repository is still
reported, so broken links keep failing the strict build. MkDocs has no setting
for this (its link validation only knows files inside ``docs_dir``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.plugins.wsgate.repo_links")

# [text](target) outside inline code; images and absolute or external targets are left alone.
LINK = re.compile(r"(?<![!\\])\[(?P<text>[^\]\n]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
BRANCH = "main"


def on_page_markdown(
    markdown: str, *, page: Page, config: MkDocsConfig, files: Files, **kwargs: Any
) -> str:
    """Rewrite every link of ``page`` that leaves ``docs_dir`` for a file of the repository."""
    docs_dir = Path(config.docs_dir).resolve()
    root = Path(config.config_file_path).resolve().parent
    page_dir = (docs_dir / page.file.src_uri).parent
    repo_url = (config.repo_url or "").rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        target = match.group("target")
        if "://" in target or target.startswith(("/", "mailto:")):
            return match.group(0)
        resolved = (page_dir / target).resolve()
        if resolved.is_relative_to(docs_dir):
            return match.group(0)  # MkDocs checks these itself
        if not resolved.is_relative_to(root) or not resolved.exists():
            log.warning(
                "%s links to %r, which is not a file of the repository", page.file.src_uri, target
            )
            return match.group(0)
        if not repo_url:
            return match.group("text")
        kind = "tree" if resolved.is_dir() else "blob"
        path = PurePosixPath(resolved.relative_to(root).as_posix())
        url = f"{repo_url}/{kind}/{BRANCH}/{path}{match.group('anchor') or ''}"
        return f"[{match.group('text')}]({url})"

    lines, in_fence = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
        lines.append(line if in_fence else LINK.sub(rewrite, line))
    return "\n".join(lines)
