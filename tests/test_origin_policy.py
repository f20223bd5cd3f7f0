"""The origin allow-list: exact matches, wildcards, and the spellings that try to slip past."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.security.origin import OriginPolicy

LOCAL = "http://127.0.0.1:8000"


@pytest.fixture
def policy() -> OriginPolicy:
    return OriginPolicy(
        [
            LOCAL,
            "https://app.example.org",
            "https://*.example.com",
            "https://kit.example.net",
            "https://xn--bcher-kva.example",
            "http://[::1]:8000",
        ]
    )


@pytest.mark.parametrize(
    "origin",
    [
        LOCAL,
        "https://app.example.org",
        "https://a.example.com",
        "https://a.b.example.com",
        "https://xn--bcher-kva.example",
        "http://[::1]:8000",
        # Same origin, other spelling: case and an explicit default port name no other site.
        "HTTP://127.0.0.1:8000",
        "https://APP.Example.ORG",
        "https://app.example.org:443",
        "http://[0:0::1]:8000",
    ],
)
def test_allowed(policy: OriginPolicy, origin: str) -> None:
    assert policy.is_allowed(origin)


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "",
        "null",
        "NULL",
        # Lookalikes of the exact entry.
        "http://127.0.0.1:8000.evil.com",
        "http://127.0.0.1:80001",
        "http://127.0.0.1:8001",
        "http://127.0.0.1",
        "https://127.0.0.1:8000",
        "http://127.0.0.1:",
        "http://127.0.0.1:0",
        "http://127.0.0.1:+8000",
        "http://127.0.0.1:8000:8000",
        "http://localhost:8000",
        "http://0177.0.0.1:8000",
        "http://127.1:8000",
        "http://0x7f.0.0.1:8000",
        "http://2130706433:8000",
        "127.0.0.1:8000",
        "//127.0.0.1:8000",
        "ws://127.0.0.1:8000",
        # Smuggled in a query, a path, a fragment, userinfo.
        "http://evil.com?http://127.0.0.1:8000",
        "http://evil.com/http://127.0.0.1:8000",
        "http://evil.com#http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8000/path",
        "http://127.0.0.1:8000?x",
        "http://127.0.0.1:8000#x",
        "http://127.0.0.1:8000@evil.com",
        "http://evil.com@127.0.0.1:8000",
        "http://user:pass@127.0.0.1:8000",
        "http://127.0.0.1%3a8000",
        "http://127.0.0.1\\@evil.com",
        # Whitespace and control characters (urlsplit would drop the tab and newline).
        " http://127.0.0.1:8000",
        "http://127.0.0.1:8000 ",
        "http://127.0.0.1:8000\n",
        "http://127.0.0.1:8000\r\nX-Evil: 1",
        "http://127.0.\t0.1:8000",
        "http://127.0.0.1:8000\x00",
        # Wildcard: the parent itself, neighbours, suffix tricks, other scheme or port.
        "https://example.com",
        "https://evilexample.com",
        "https://evil-example.com",
        "https://example.com.evil.net",
        "https://a.example.com.evil.net",
        "https://a.example.com.",
        "https://example.com.",
        "https://.example.com",
        "https://a..example.com",
        "https://-a.example.com",
        "https://a_b.example.com",
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://*.example.com",
        # Trailing-dot and case tricks on the exact entry.
        "https://app.example.org.",
        "https://app.example.org..",
        # Unicode: homoglyphs, the unicode form of an allowed punycode host, and
        # the Kelvin sign that str.lower() turns into an ASCII "k".
        "https://\u0430pp.example.org",  # Cyrillic a
        "https://app.example.\u043erg",  # Cyrillic o
        "https://b\u00fccher.example",
        "https://\u212ait.example.net",
        "https://a.example.com\u3002",  # ideographic full stop
        "http://\uff11\uff12\uff17.0.0.1:8000",  # fullwidth digits
        "http://127.0.0.1:\u0668000",  # Arabic-Indic digit eight
        # IPv6 oddities.
        "http://[::1%25eth0]:8000",
        "http://[::1]8000",
        "http://[::1:8000",
        "http://::1:8000",
        "http://[::1]:8000]",
        # Sheer size.
        "https://" + "a." * 200 + "example.com",
    ],
)
def test_refused(policy: OriginPolicy, origin: str | None) -> None:
    assert not policy.is_allowed(origin)


def test_kelvin_sign_would_fold_to_an_allowed_host() -> None:
    """The attack the ASCII check exists for: case folding alone would allow it."""
    attack = "https://\u212ait.example.net"
    assert attack.lower() == "https://kit.example.net"
    assert not OriginPolicy(["https://kit.example.net"]).is_allowed(attack)


def test_entries_are_normalised() -> None:
    policy = OriginPolicy(
        [
            "HTTPS://App.Example.com:443",
            " http://127.0.0.1:80 ",
            "https://app.example.com",
            "https://*.Example.net",
            "http://[0:0::1]:8000",
        ]
    )
    assert policy.allowed == (
        "https://app.example.com",
        "http://127.0.0.1",
        "https://*.example.net",
        "http://[::1]:8000",
    )
    assert policy.is_allowed("https://app.example.com")
    assert policy.is_allowed("http://127.0.0.1")
    assert policy.is_allowed("http://127.0.0.1:80")
    assert not policy.is_allowed("http://127.0.0.1:8000")


def test_wildcard_with_an_explicit_port_allows_that_port_only() -> None:
    policy = OriginPolicy(["https://*.example.com:8443"])
    assert policy.is_allowed("https://a.example.com:8443")
    assert not policy.is_allowed("https://a.example.com")


def test_empty_policy_allows_nothing() -> None:
    policy = OriginPolicy([])
    assert policy.allowed == ()
    assert not policy.is_allowed(LOCAL)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("*", "cross-site WebSocket hijacking"),
        ("null", "sandboxed iframes"),
        ("https://*example.com", "whole leftmost label"),
        ("https://a.*.example.com", "whole leftmost label"),
        ("https://*.*.example.com", "whole leftmost label"),
        ("*.example.com", "whole leftmost label"),
        ("https://*.com", "single label"),
        ("https://*.127.0.0.1", "IP address"),
        ("https://*.[::1]", "IP address"),
        ("https://b\u00fccher.example", "punycode"),
        ("https://app.example.com/", "malformed"),
        ("https://app.example.com/path", "malformed"),
        ("https://user@app.example.com", "malformed"),
        ("https://app.example.com.", "malformed"),
        ("ftp://app.example.com", "malformed"),
        ("app.example.com", "malformed"),
        ("http://127.0.0.1:99999", "malformed"),
        ("http://127.0.0.1:", "malformed"),
        ("", "malformed"),
    ],
)
def test_malformed_entries_raise(entry: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        OriginPolicy([entry])


def test_one_string_is_not_a_list() -> None:
    """OriginPolicy("https://a.com") would otherwise iterate characters."""
    with pytest.raises(TypeError):
        OriginPolicy("https://app.example.com")


# -- properties ---------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
# A last label that looks like a number is an IPv4 spelling, not a DNS name.
_host = (
    st.lists(_label, min_size=2, max_size=4)
    .map(".".join)
    .filter(lambda host: not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", host.rsplit(".", 1)[-1]))
)
_origin = st.builds(
    lambda scheme, host, port: f"{scheme}://{host}" + (f":{port}" if port else ""),
    st.sampled_from(["http", "https"]),
    _host,
    st.one_of(st.none(), st.integers(1, 65535)),
)


def _canonical(origin: str) -> str:
    return OriginPolicy([origin]).allowed[0]


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_is_allowed_never_raises(text: str) -> None:
    assert OriginPolicy([LOCAL, "https://*.example.com"]).is_allowed(text) in {True, False}


@settings(max_examples=200)
@given(origin=_origin, prefix=st.text(max_size=12), suffix=st.text(max_size=12))
def test_affixes_never_widen_an_exact_entry(origin: str, prefix: str, suffix: str) -> None:
    policy = OriginPolicy([origin])
    assert policy.is_allowed(origin)
    tampered = prefix + origin + suffix
    # The only text that may pass is a respelling of the very same origin
    # (an explicit default port such as ":443" appended, say).
    assert not policy.is_allowed(tampered) or _canonical(tampered) == _canonical(origin)


@settings(max_examples=200)
@given(base=_host, sub=_label, suffix=st.text(min_size=1, max_size=12))
def test_wildcard_allows_subdomains_and_nothing_glued_on(base: str, sub: str, suffix: str) -> None:
    policy = OriginPolicy([f"https://*.{base}"])
    assert policy.is_allowed(f"https://{sub}.{base}")
    assert not policy.is_allowed(f"https://{base}")
    assert not policy.is_allowed(f"https://{sub}{base}")  # no dot: a neighbour
    glued = f"https://{sub}.{base}{suffix}"
    assert not policy.is_allowed(glued) or _canonical(glued) == f"https://{sub}.{base}"
