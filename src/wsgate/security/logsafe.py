"""Client text made safe for a text log line: no line breaks, no terminal escapes, no fake fields.

A text log is read by people (in a terminal, where an ANSI escape can hide
or rewrite what is shown) and by tools that split it into lines and fields.
Whatever a client chose (a namespace, an event name, an ``Origin``, a path)
must therefore stay inside its own field of its own line. Measured on the
demo before this module: a Socket.IO namespace, or ``/ws?namespace=`` with
``%0A``, wrote a complete fake ``connected ... sub=root namespace=/admin``
audit line, and an ANSI escape hid the real fields.

Two tools:

- :func:`field` renders one ``key=value`` value in the logfmt convention:
  a plain token stays as it is, anything with a space, ``=``, a quote, a
  backslash or a control character is quoted, with JSON escapes
  (``"a b\\n"``), so neither a line break nor a fake ``key=value`` can come
  out of it;
- :func:`escape` replaces the control characters of free text (a whole
  message) with visible escapes, for the log formatter.

Control characters are C0 and C1 (which include the 8-bit CSI ``\\x9b``),
DEL, the Unicode line and paragraph separators, and the bidirectional
overrides that reorder what a terminal shows. Hand-written: the logfmt
libraries on PyPI format whole records, not one value, and are less strict
about C1 and bidi characters.
"""

from __future__ import annotations

import json
import re

__all__ = ["escape", "field"]

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_PLAIN = re.compile(r"[!#-<>-\[\]-~]+")
"""A printable ASCII token without space, ``"``, ``=`` or ``\\``: safe unquoted."""

MAX_FIELD_CHARS = 1024
"""A client's value is cut to this many characters: one field cannot fill a log."""


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with every control character replaced by a visible ``\\xNN``/``\\uNNNN``."""
    return _CONTROL.sub(_visible, text)


def field(value: object) -> str:
    """One logfmt value: as it is when it is a plain token, else quoted with JSON escapes."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_FIELD_CHARS:
        text = text[:MAX_FIELD_CHARS] + "..."
    if _PLAIN.fullmatch(text):
        return text
    # ensure_ascii escapes every non-ASCII character (C1 and bidi included);
    # DEL is the one control character JSON leaves alone.
    return json.dumps(text, ensure_ascii=True).replace("\x7f", "\\u007f")
