"""Cookie header parsing: tolerant of what browsers send, never tripped up by garbage."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.security.cookies import parse_cookie_header


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", {}),
        ("a=1", {"a": "1"}),
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ("a=1;b=2", {"a": "1", "b": "2"}),
        ("  a = 1 ;\tb=2\t", {"a": "1", "b": "2"}),
        # First occurrence wins (browsers send the most specific path first).
        ("access_token=good; access_token=tossed", {"access_token": "good"}),
        # Optional quotes are removed once; nothing else is decoded.
        ('a="1"', {"a": "1"}),
        ('a=""', {"a": ""}),
        ('a="', {"a": '"'}),
        ('a=""x""', {"a": '"x"'}),
        ('a="\\101"', {"a": "\\101"}),
        ("a=%41", {"a": "%41"}),
        # Only the first "=" separates name and value (base64 padding survives).
        ("t=YWJj==; u=a=b", {"t": "YWJj==", "u": "a=b"}),
        # Pairs without "=" and nameless pairs are skipped, the rest still parse.
        ("a=1; b=2; c", {"a": "1", "b": "2"}),
        ("flag; a=1", {"a": "1"}),
        ("=x; a=1", {"a": "1"}),
        (";;; a=1 ;;", {"a": "1"}),
        ("a=", {"a": ""}),
        # What SimpleCookie chokes on or misreads.
        ("a=1; bad name=2; c=3", {"a": "1", "bad name": "2", "c": "3"}),
        ("a=1; [x]=2; c=3", {"a": "1", "[x]": "2", "c": "3"}),
        ("path=/; expires=x; secure=1", {"path": "/", "expires": "x", "secure": "1"}),
        ('a={"x":1}; c=3', {"a": '{"x":1}', "c": "3"}),
        ("a=1, b=2", {"a": "1, b=2"}),
        ("a=\u00e9; c=3", {"a": "\u00e9", "c": "3"}),
    ],
)
def test_parse(header: str, expected: dict[str, str]) -> None:
    assert parse_cookie_header(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "a=1; b=2; c",  # one pair without "=" loses the whole header
        "a=1; bad name=2; c=3",  # one name with a space loses the whole header
    ],
)
def test_simplecookie_really_drops_the_whole_header(header: str) -> None:
    """Keeps the module docstring honest: the reason not to use SimpleCookie."""
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    assert dict(jar) == {}
    assert parse_cookie_header(header)["a"] == "1"


def test_simplecookie_lets_the_last_duplicate_win() -> None:
    jar: SimpleCookie = SimpleCookie()
    jar.load("a=1; a=2")
    assert jar["a"].value == "2"
    assert parse_cookie_header("a=1; a=2") == {"a": "1"}


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_never_raises(header: str) -> None:
    parsed = parse_cookie_header(header)
    assert all(isinstance(k, str) and k and isinstance(v, str) for k, v in parsed.items())


# RFC 6265 section 4.1.1: cookie-name is an RFC 2616 token, cookie-value is
# cookie-octets, optionally in double quotes.
_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_COOKIE_OCTETS = "".join(
    chr(c)
    for c in [0x21, *range(0x23, 0x2C), *range(0x2D, 0x3B), *range(0x3C, 0x5C), *range(0x5D, 0x7F)]
)
_names = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=20)
_values = st.text(alphabet=_COOKIE_OCTETS, max_size=40)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(_names, _values, st.booleans()), max_size=8),
    st.sampled_from(["; ", ";"]),
)
def test_round_trip(pairs: list[tuple[str, str, bool]], separator: str) -> None:
    header = separator.join(f'{n}="{v}"' if quoted else f"{n}={v}" for n, v, quoted in pairs)
    expected: dict[str, str] = {}
    for name, value, _quoted in pairs:
        expected.setdefault(name, value)
    assert parse_cookie_header(header) == expected
