"""Which browser origins may open a connection.

A browser attaches the user's cookies to a cross-site WebSocket or polling
request, and WebSockets are not covered by CORS: the ``Origin`` header is the
only thing that tells a gateway a page on ``evil.com`` is trying to talk to it
with the user's session (cross-site WebSocket hijacking). So the check must be
exact, and it is written by hand on purpose: ``urllib.parse.urlsplit`` is made
to be lenient (it silently drops tabs and newlines, accepts userinfo, paths,
out-of-range ports until ``.port`` is read, and any non-ASCII text), which is the
opposite of what an allow-list needs. Browsers send the serialised origin of
RFC 6454 (``scheme://host[:port]``, lower-case, punycode, no default port).
Other spellings of the *same* origin (upper case, an explicit default port) are
accepted because they cannot name another site; anything that is not a plain
origin (a path, a query, userinfo, whitespace, non-ASCII text, a trailing dot)
is refused rather than repaired.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

__all__ = ["OriginPolicy", "served_origins"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# One DNS label: letters, digits, hyphens inside (punycode "xn--" labels included).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# WHATWG URL: a host whose last label looks like a number is parsed as IPv4.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# A dotted-quad octet without leading zeros (which some parsers read as octal).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_PORT = re.compile(r"[0-9]{1,5}")
# Long enough for a 253-character host, an IPv6 literal and a port; bounds the work.
_MAX_ORIGIN_LENGTH = 300
# Remembered origin verdicts per policy (see OriginPolicy.is_allowed).
_MAX_VERDICTS = 256


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    def serialise(self) -> str:
        if _DEFAULT_PORTS[self.scheme] == self.port:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


def _parse_host(host: str) -> str | None:
    """The canonical host, or None when it is not a plain DNS name or IP literal."""
    if host.startswith("["):
        if not host.endswith("]") or "%" in host:  # no zone ids in an origin
            return None
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # Only the canonical dotted quad: "0177.0.0.1", "127.1" and "0x7f.0.0.1"
        # are other spellings that browsers never send.
        return host if _IPV4.fullmatch(host) else None
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None  # empty labels catch "a..b" and the trailing-dot "a.b."
    return host


def _parse(origin: str) -> _Origin | None:
    """Parse a serialised origin; None for anything a browser would not send.

    Case is folded only after the text is known to be ASCII, because
    ``str.lower`` maps some non-ASCII letters onto ASCII ones (the Kelvin sign
    U+212A becomes "k").
    """
    if len(origin) > _MAX_ORIGIN_LENGTH or not origin.isascii():
        return None
    scheme, sep, authority = origin.lower().partition("://")
    if not sep or scheme not in _DEFAULT_PORTS:
        return None
    if authority.startswith("["):
        end = authority.find("]") + 1
        host, rest = authority[:end], authority[end:]
        if not end or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_or_empty = authority.partition(":")
        port_text = port_text_or_empty if colon else None
    canonical_host = _parse_host(host) if host else None
    if canonical_host is None:
        return None
    if port_text is None:
        port = _DEFAULT_PORTS[scheme]
    elif _PORT.fullmatch(port_text) and 0 < int(port_text) <= 65535:
        port = int(port_text)
    else:
        return None
    return _Origin(scheme, canonical_host, port)


class OriginPolicy:
    """An allow-list of exact origins and ``scheme://*.domain`` wildcards.

    ``https://*.example.com`` allows ``https://a.example.com`` and
    ``https://a.b.example.com`` on the default port, never ``example.com``
    itself (list it too if it is meant), ``evilexample.com`` or
    ``example.com.evil.net``. Entries are normalised (case, default port), so
    ``HTTPS://App.Example.com:443`` and ``https://app.example.com`` are the same
    entry. A malformed entry raises :class:`ValueError` at start-up: a typo in
    the allow-list must stop the server, not silently deny or allow.
    """

    __slots__ = ("_allowed", "_exact", "_verdicts", "_wildcards")

    def __init__(self, allowed: Sequence[str]) -> None:
        if isinstance(allowed, str):
            raise TypeError("allowed must be a sequence of origins, not one string")
        exact: set[_Origin] = set()
        wildcards: set[_Origin] = set()
        shown: dict[str, None] = {}
        for raw in allowed:
            entry = raw.strip()
            if "*" in entry and entry != "*":
                origin = _parse_wildcard(entry)
                wildcards.add(origin)
                shown[origin.serialise().replace("://", "://*.", 1)] = None
            else:
                origin = _parse_entry(entry)
                exact.add(origin)
                shown[origin.serialise()] = None
        self._exact = frozenset(exact)
        self._wildcards = tuple(wildcards)
        self._allowed = tuple(shown)
        # Verdicts already reached, by (origin, served): the policy never changes after
        # this, so a verdict is a pure function of its key. Every connect asks twice (the
        # HTTP layer, then admission) with the same few origins; parsing each time was
        # ~1.5% of a connect's CPU. Bounded: cleared when full, so hostile origins cost
        # memory only up to the bound.
        self._verdicts: dict[tuple[str, tuple[str, ...]], bool] = {}

    @property
    def allowed(self) -> tuple[str, ...]:
        """The normalised entries, in the order given, without duplicates."""
        return self._allowed

    @property
    def follows_served_origin(self) -> bool:
        """True when no origin was configured: the origin the request reached is the one allowed."""
        return not self._allowed

    def is_allowed(self, origin: str | None, *, served: Sequence[str] = ()) -> bool:
        """True only for an origin on the list; missing, ``null`` or malformed is False.

        A policy built from an empty list allows exactly the origins in
        ``served`` (from :func:`served_origins`: the address the request
        actually reached), so the default follows the port really served,
        under any ASGI server. Whether a *missing* Origin is acceptable (a
        non-browser client) is the caller's decision, made together with the
        token; this method only answers whether a browser origin is allowed.
        """
        if not origin:
            return False
        key = (origin, tuple(served))
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._judge(origin, key[1])
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def _judge(self, origin: str, served: tuple[str, ...]) -> bool:
        """The verdict itself (what :meth:`is_allowed` remembers)."""
        parsed = _parse(origin)
        if parsed is None:
            return False
        if not self._allowed:
            return any(parsed == _parse(own) for own in served)
        if parsed in self._exact:
            return True
        return any(
            parsed.scheme == pattern.scheme
            and parsed.port == pattern.port
            and parsed.host.endswith("." + pattern.host)
            for pattern in self._wildcards
        )

    def __repr__(self) -> str:
        return f"OriginPolicy({list(self._allowed)!r})"


@lru_cache(maxsize=64)
def served_origins(scheme: str, server: tuple[str, int | None] | None) -> tuple[str, ...]:
    """The origin a browser shows for pages served at ``server`` (the ASGI scope's address).

    Memoised: a pure function of the listening address, asked on every request
    (twice per Socket.IO connect), and ``ipaddress`` parsing was ~3.8% of a
    connect's CPU. A server listens on few addresses, so the bound is never hit.

    Exactly that address: another name for it (``localhost`` for
    ``127.0.0.1``) may resolve elsewhere (``::1``, where another process can
    listen on the same port), so it is not assumed; list it in
    ``allowed_origins`` if it is meant. No address (a unix socket) gives
    nothing: configure ``allowed_origins``.
    """
    if server is None or server[1] is None:
        return ()
    host, port = server
    web_scheme = "https" if scheme in ("https", "wss") else "http"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return (f"{web_scheme}://{host}:{port}",)
    if isinstance(address, ipaddress.IPv6Address):
        return (f"{web_scheme}://[{address.compressed}]:{port}",)
    return (f"{web_scheme}://{address}:{port}",)


def _parse_entry(entry: str) -> _Origin:
    if entry == "*":
        raise ValueError(
            "'*' is refused as an allowed origin: it would let any web site open "
            "authenticated sockets with its visitors' cookies (cross-site WebSocket "
            "hijacking); list the origins, or use a 'https://*.example.com' wildcard"
        )
    if entry.lower() == "null":
        raise ValueError(
            "'null' is refused as an allowed origin: sandboxed iframes, file: pages "
            "and redirects all send it, so it would admit any attacker's page"
        )
    if not entry.isascii():
        raise ValueError(
            f"allowed origin {entry!r}: write internationalised hosts in their punycode "
            "(xn--) form, which is what browsers send"
        )
    origin = _parse(entry)
    if origin is None:
        raise ValueError(
            f"allowed origin {entry!r} is malformed: expected scheme://host[:port] with "
            "scheme http or https and no path, query, userinfo or trailing '/'"
        )
    return origin


def _parse_wildcard(entry: str) -> _Origin:
    scheme, sep, rest = entry.partition("://")
    if not sep or not rest.startswith("*.") or "*" in rest[2:]:
        raise ValueError(
            f"allowed origin {entry!r}: a wildcard must be the whole leftmost label, "
            "as in 'https://*.example.com'"
        )
    base = _parse_entry(f"{scheme}://{rest[2:]}")
    if base.host.startswith("[") or _IPV4.fullmatch(base.host):
        raise ValueError(f"allowed origin {entry!r}: an IP address has no subdomains")
    if "." not in base.host:
        raise ValueError(
            f"allowed origin {entry!r}: a wildcard over a single label ('*.com', "
            "'*.localhost') would admit unrelated sites; name the domain"
        )
    return base
