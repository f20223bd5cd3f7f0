"""MkDocs hook: the ``wsgate`` command's ``--help`` pages, written into the CLI reference.

A page holding the line ``<!-- wsgate-cli-help -->`` gets, in its place, the
help of ``wsgate`` and of every subcommand, as argparse prints it from
``wsgate.cli.build_parser()``: the reference can never disagree with the
command. The maintained plugins that render argparse parsers are either at
version 0.0.1 or made for ``rich-argparse``; this is the few lines they would
save.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from mkdocs.structure.pages import Page

MARKER = "<!-- wsgate-cli-help -->"
WIDTH = "80"


def on_page_markdown(markdown: str, *, page: Page, **kwargs: Any) -> str:
    """Replace the marker with one section per command."""
    if MARKER not in markdown:
        return markdown
    from wsgate.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps to the terminal; a build has none
    try:
        parser = build_parser()
        sections = [_section("wsgate", parser), *_subcommands("wsgate", parser)]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return markdown.replace(MARKER, "\n\n".join(sections))


def _subcommands(prefix: str, parser: argparse.ArgumentParser) -> list[str]:
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(_section(f"{prefix} {name}", sub))
                found.extend(_subcommands(f"{prefix} {name}", sub))
    return found


def _section(name: str, parser: argparse.ArgumentParser) -> str:
    return f"## `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```"
