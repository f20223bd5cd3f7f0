"""Griffe extension: the reST markup of wsgate's docstrings, as Markdown for mkdocstrings.

wsgate's docstrings are written for readers of the source and use Sphinx's
inline roles (``:class:`Gateway```) and ``::`` literal blocks. mkdocstrings
renders docstrings as Markdown and leaves reST as it is (its maintainer has no
plan to support it: mkdocs-api-autonav issue 37), and no maintained extension
converts roles, so this one does, the way Griffe's documentation suggests for
custom markup: at load time, before anything is rendered.

A role whose target is part of the documented API (an export of ``wsgate`` or
``wsgate.testing``, one of their public members, or one of the two documented
modules) becomes a cross-reference to that page; any other target (internal
modules, private helpers) becomes plain code, so the strict build never links
to a page that does not exist. Converting at build time rather than in the
source keeps one docstring style across the code base while other branches
keep writing it.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
# rST: "Text::" ends a paragraph that introduces a literal block; a lone "::" only introduces it.
LITERAL_INTRO = re.compile(r"(?m)(?<=\S)::$|^\s*::\n")

# The documented surfaces: (package, also documented as a page of its own).
SURFACES = ("wsgate", "wsgate.testing")
DOCUMENTED_MODULES = ("wsgate", "wsgate.testing", "wsgate.testing.pytest_plugin")


class SphinxRoles(griffe.Extension):
    """Rewrites Sphinx roles and literal-block markers in every docstring of a package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Griffe 2 calls this once the whole package is loaded."""
        if pkg.name == "wsgate":
            _convert_package(pkg)

    def on_package_loaded(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Griffe 1's name for the same hook (converting twice changes nothing)."""
        self.on_package(pkg=pkg, **kwargs)


def _convert_package(pkg: griffe.Module) -> None:
    public = _public_paths(pkg)
    for obj in _walk(pkg):
        if obj.docstring is not None:
            obj.docstring.value = _convert(obj.docstring.value, obj, pkg, public)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    """Every object defined in ``obj`` (aliases are skipped: their targets are visited)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            found.extend(_walk(member))
    return found


def _public_paths(pkg: griffe.Module) -> dict[str, str]:
    """Where each exported object is defined -> the path it is documented under."""
    public: dict[str, str] = {}
    for surface in SURFACES:
        module = pkg if surface == pkg.path else pkg.modules_collection[surface]
        for name in module.exports or ():
            member = module.members.get(str(name))
            if member is not None:
                with contextlib.suppress(griffe.AliasResolutionError, griffe.CyclicAliasError):
                    public[_defined_at(member)] = f"{surface}.{name}"
    return public


def _convert(text: str, owner: griffe.Object, pkg: griffe.Module, public: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1) == "~", match.group(2).strip()
        label = target.rsplit(".", 1)[-1] if short else target
        documented = _documented_path(target, owner, pkg, public)
        return f"[`{label}`][{documented}]" if documented else f"`{label}`"

    return LITERAL_INTRO.sub(lambda m: ":" if m.group(0) == "::" else "\n", ROLE.sub(replace, text))


def _documented_path(
    target: str, owner: griffe.Object, pkg: griffe.Module, public: dict[str, str]
) -> str | None:
    """The documented path of ``target`` as written in ``owner``'s docstring, or None."""
    path = _resolve(target, owner, pkg)
    if path is None or path in DOCUMENTED_MODULES:
        return path
    # The longest exported prefix: an exported class maps, and so do its public members.
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in public:
            rest = parts[cut:]
            if any(part.startswith("_") for part in rest):
                return None
            return ".".join([public[prefix], *rest])
    return None


def _resolve(target: str, owner: griffe.Object, pkg: griffe.Module) -> str | None:
    """The full path of ``target`` (dotted or a name in ``owner``'s scope), if it exists."""
    head, _, tail = target.partition(".")
    try:
        if head == pkg.name:
            path = target
        else:
            scope = owner if owner.is_class or owner.is_module else owner.parent
            if scope is None:
                return None
            path = scope.resolve(head) + (f".{tail}" if tail else "")
        return _defined_at(pkg.modules_collection[path])
    except (
        griffe.NameResolutionError,
        KeyError,
        griffe.AliasResolutionError,
        griffe.CyclicAliasError,
    ):
        return None


def _defined_at(obj: griffe.Object | griffe.Alias) -> str:
    """Where ``obj`` is defined, through any chain of re-exports."""
    return obj.final_target.path if isinstance(obj, griffe.Alias) else obj.path
