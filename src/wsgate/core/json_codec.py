"""orjson where it gives the same answer as the standard library, the standard library elsewhere.

orjson is several times faster both ways, and both transports use it on
every frame. One difference would be silent: orjson reads an integer beyond
64 bits as a float (``18446744073709551616`` becomes ``1.8446744073709552e19``),
so text holding a run of 19 or more digits is parsed by the standard library.
Everything else orjson refuses raises, and each caller decides what that
means for its protocol.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def has_long_integer(text: str | bytes) -> bool:
    """Whether ``text`` may hold an integer orjson would turn into a float."""
    if isinstance(text, bytes):
        return _LONG_DIGITS_BYTES.search(text) is not None
    return _LONG_DIGITS.search(text) is not None


def loads_strict(text: str | bytes) -> Any:
    """Parse RFC 8259 JSON exactly (no NaN/Infinity); raises ValueError when it is not JSON."""
    if has_long_integer(text):
        return json.loads(text, parse_constant=_reject_constant)
    return orjson.loads(text)  # orjson.JSONDecodeError is a ValueError
