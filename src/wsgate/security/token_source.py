"""Where a connection's token comes from, and which source is judged.

The order is fixed by the contract: the Socket.IO handshake ``auth`` object,
then ``Authorization: Bearer``, then the access-token cookie, and the query
string only when the application enabled it (query strings end up in access
logs, proxies and browser history). The first source *present* is the one
judged: a malformed token there is refused, never replaced by a later source.
Falling through would let an attacker who controls one source (a cookie
tossed from a sibling subdomain, say) win over another that failed, and
would hide broken clients behind a second credential.

A token must be an RFC 6750 ``b64token`` (letters, digits and ``-._~+/``,
then ``=`` padding) of at most 8192 characters, whatever the source. Every
JWT fits; anything else (spaces, control characters, non-ASCII, megabytes
of text) is refused here, before it reaches a log line or the JWT library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from wsgate.errors import TokenError

__all__ = [
    "MAX_TOKEN_LENGTH",
    "QUERY_TOKEN_PARAMS",
    "FoundToken",
    "extract_token",
    "query_token_present",
]

MAX_TOKEN_LENGTH = 8192
QUERY_TOKEN_PARAMS = ("token", "access_token")
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

TokenSource = Literal["auth", "header", "cookie", "query"]


@dataclass(frozen=True, slots=True)
class FoundToken:
    """A well-formed token and where it was found; not yet verified.

    The token is left out of ``repr`` so that logging a ``FoundToken`` never
    writes a credential to the log.
    """

    source: TokenSource
    token: str = field(repr=False)


def _malformed() -> TokenError:
    return TokenError("unauthorized", "Invalid token", "malformed")


def _judge(source: TokenSource, token: object) -> FoundToken:
    if (
        not isinstance(token, str)
        or len(token) > MAX_TOKEN_LENGTH
        or _B64TOKEN.fullmatch(token) is None
    ):
        raise _malformed()
    return FoundToken(source, token)


def _bearer(value: str) -> str:
    """The token of an ``Authorization: Bearer`` value (RFC 6750 section 2.1).

    The scheme is case-insensitive (RFC 9110), any other scheme is malformed
    here: a gateway that only knows bearer tokens must not shrug off
    ``Basic`` credentials and go on to a cookie.
    """
    scheme, _, rest = value.strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        raise _malformed()
    return rest.lstrip(" ")


def query_token_present(query: Mapping[str, str] | None) -> bool:
    """True when the query string carries a token parameter.

    Lets a caller with query tokens disabled log "query token refused" instead
    of a bare "missing token", so the client's developer learns why.
    """
    return query is not None and any(name in query for name in QUERY_TOKEN_PARAMS)


def extract_token(
    *,
    auth: object,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    query: Mapping[str, str] | None = None,
    allow_query: bool = False,
    cookie_name: str = "access_token",
) -> FoundToken | None:
    """Find the connection's token in the first source present.

    ``auth`` is the handshake payload: None, or a mapping without ``"token"``,
    counts as absent; any other type is malformed. ``headers`` keys are
    lower-case. Returns None when no source is present (including a query
    token while ``allow_query`` is off: see :func:`query_token_present`).

    Raises :class:`~wsgate.errors.TokenError` (``unauthorized``, reason
    ``malformed``) when the first source present holds no usable token.
    """
    if auth is not None:
        if not isinstance(auth, Mapping):
            raise _malformed()
        if "token" in auth:
            return _judge("auth", auth["token"])
    authorization = headers.get("authorization")
    if authorization is not None:
        return _judge("header", _bearer(authorization))
    if cookie_name in cookies:
        return _judge("cookie", cookies[cookie_name])
    if allow_query and query is not None:
        for name in QUERY_TOKEN_PARAMS:
            if name in query:
                return _judge("query", query[name])
    return None
