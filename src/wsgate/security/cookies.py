"""Reading the ``Cookie`` request header.

Why not :class:`http.cookies.SimpleCookie`: it implements the old RFC 2109
grammar for ``Set-Cookie`` and fails badly on what browsers really send in
``Cookie``. One pair it dislikes throws away the rest of the header, and a pair
without ``=`` or a name with a space throws away *all* of it, so a stray
cookie set by another app on the same domain would silently log the user out
(``a=1; b=2; c`` parses to nothing). It also treats cookies named like
attributes (``path``, ``expires``, ``secure``...) as attributes and drops them,
decodes ``\\101``-style octal escapes that RFC 6265 does not have, and lets the
*last* duplicate win. Starlette's ``cookie_parser`` is tolerant but also keeps
the last duplicate and relies on a private ``http.cookies`` helper.

Here, per RFC 6265 section 5.4, the *first* duplicate wins: browsers send the
cookie with the longest path first, then the oldest, so the first one is the
most specific for the request.
"""

from __future__ import annotations

__all__ = ["parse_cookie_header"]

# RFC 6265 OWS around pairs is spaces and tabs only (not every Unicode space).
_OWS = " \t"


def parse_cookie_header(value: str) -> dict[str, str]:
    """Parse a ``Cookie`` header into ``{name: value}``; never raises.

    Pairs are split on ``;``. A pair without ``=`` or with an empty name is
    skipped, the first occurrence of a name wins, and one pair of surrounding
    double quotes is removed from a value. Nothing else is decoded: a value is
    kept as sent, and judging it (a token, say) is the caller's job.
    """
    cookies: dict[str, str] = {}
    for pair in value.split(";"):
        name, sep, raw = pair.partition("=")
        name = name.strip(_OWS)
        if not sep or not name or name in cookies:
            continue
        cookie_value = raw.strip(_OWS)
        if len(cookie_value) >= 2 and cookie_value[0] == cookie_value[-1] == '"':
            cookie_value = cookie_value[1:-1]
        cookies[name] = cookie_value
    return cookies
