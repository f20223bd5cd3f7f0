"""Who may read ``GET /metrics``: a bearer token when one is set, else loopback clients only.

Metrics tell an attacker how many users are online, which events exist, how
often tokens fail and when the server is struggling; the attack session
read them from anywhere the port was reachable. Two ways to protect them,
decided by one setting:

- ``metrics_token`` set: every scrape must carry ``Authorization: Bearer
  <token>`` (compared in constant time), from any address. For a Prometheus
  on another host.
- unset (the default): only a client on a loopback address (``127.0.0.0/8``,
  ``::1``) that no proxy relayed. "Loopback" is judged by the client's
  address, never by the address the server is bound to: a server bound to
  ``0.0.0.0`` or ``127.0.0.2`` still answers a scraper on the same machine
  and no one else. A request carrying ``Forwarded``, ``X-Forwarded-For`` or
  ``X-Real-IP`` is refused even from loopback: a reverse proxy on the same
  host connects from 127.0.0.1 on behalf of the whole internet.

Why not a separate listening address: wsgate runs under any ASGI server, and
only the App sees every request whichever server runs it; a second listener
would exist only under ``wsgate serve``. Users who want one can mount the App
behind their own routing and set ``metrics_token``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from enum import StrEnum, unique

__all__ = ["MetricsAccess", "MetricsVerdict"]

RELAY_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})


@unique
class MetricsVerdict(StrEnum):
    """The answer to one scrape."""

    ALLOWED = "allowed"
    TOKEN_MISSING = "token_missing"
    """A token is configured and the request has none, or another one: 401."""
    NOT_LOOPBACK = "not_loopback"
    """No token configured and the client is not on loopback (or was relayed): 403."""


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; False for anything unparseable."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class MetricsAccess:
    """Judges scrapes of ``/metrics`` (see the module docstring for the rule and why)."""

    def __init__(self, token: str | None) -> None:
        if token is not None and len(token) < 16:
            # A short token can be guessed over the network; fail at start-up, not later.
            raise ValueError("metrics_token must be at least 16 characters")
        self._expected = f"Bearer {token}".encode() if token else None

    @property
    def needs_token(self) -> bool:
        return self._expected is not None

    def judge(
        self, client_host: str | None, headers: Iterable[tuple[bytes, bytes]]
    ) -> MetricsVerdict:
        """The verdict for a request from ``client_host`` with raw ASGI ``headers``."""
        if self._expected is not None:
            given = b""
            for name, value in headers:
                if name.lower() == b"authorization":
                    given = value
                    break
            if hmac.compare_digest(given, self._expected):
                return MetricsVerdict.ALLOWED
            return MetricsVerdict.TOKEN_MISSING
        if not is_loopback(client_host):
            return MetricsVerdict.NOT_LOOPBACK
        if any(name.lower() in RELAY_HEADERS for name, _ in headers):
            return MetricsVerdict.NOT_LOOPBACK
        return MetricsVerdict.ALLOWED
