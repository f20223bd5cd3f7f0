"""What a client presented when it opened its connection, whatever the transport."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from wsgate.security.cookies import parse_cookie_header
from wsgate.security.origin import served_origins


@dataclass(frozen=True, slots=True)
class Handshake:
    """Headers (lower-case names), cookies, the Socket.IO ``auth`` object and the peer.

    ``remote_addr`` is the TCP peer unless the server was told to trust a
    proxy's ``X-Forwarded-For`` (uvicorn's proxy headers, off by default).
    ``served`` holds the origins of the address the request reached (the
    default allowed origin when none is configured).
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    auth: Any = field(default=None, repr=False)  # may hold the token: never in a repr or log
    remote_addr: str | None = None
    transport: str = "unknown"
    served: tuple[str, ...] = ()

    @property
    def origin(self) -> str | None:
        return self.headers.get("origin")

    @classmethod
    def from_asgi_scope(
        cls, scope: Mapping[str, Any], *, auth: Any = None, transport: str
    ) -> Handshake:
        """Build from an ASGI scope; repeated headers are joined as RFC 9110 allows."""
        headers = join_headers(scope.get("headers") or ())
        query_string = scope.get("query_string") or b""
        query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        client = scope.get("client")
        return cls(
            headers=headers,
            cookies=parse_cookie_header(headers.get("cookie", "")),
            query=query,
            auth=auth,
            remote_addr=client[0] if client else None,
            transport=transport,
            served=served_of(scope),
        )


def join_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case header names; repeats joined with ``, `` (``; `` for cookies)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in headers:
            separator = "; " if name == "cookie" else ", "
            headers[name] = headers[name] + separator + value
        else:
            headers[name] = value
    return headers


def served_of(scope: Mapping[str, Any]) -> tuple[str, ...]:
    """The origins of the address an ASGI request reached (see ``served_origins``)."""
    server = scope.get("server")
    return served_origins(str(scope.get("scheme", "http")), tuple(server) if server else None)
