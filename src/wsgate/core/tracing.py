"""OpenTelemetry spans for connects, events and broadcasts: on with an SDK, free without.

``pip install wsgate[otel]`` brings the OpenTelemetry API (a small package,
no exporter); configuring an SDK (a ``TracerProvider`` set globally, or
passed as ``App(..., tracer_provider=...)``) turns the spans on:

========================  ===========================================================
span (kind)               attributes
========================  ===========================================================
``wsgate.connect``        ``wsgate.namespace``, ``wsgate.transport``, ``wsgate.outcome``
(SERVER)                  (``ok`` or the refusal code), ``wsgate.status_code`` (of a
                          refusal: 401, 403, 429, 503), ``wsgate.sub_hash`` once verified
``wsgate.event``          ``wsgate.namespace``, ``wsgate.event`` (``<unknown>`` for
(SERVER)                  names no gateway subscribes), ``wsgate.transport``,
                          ``wsgate.sub_hash``, ``wsgate.outcome`` (``ok``, ``invalid``,
                          ``denied``, ...), ``wsgate.status_code`` (of an error reply)
``wsgate.broadcast``      ``wsgate.namespace``, ``wsgate.event``, ``wsgate.room``
(PRODUCER)                (``true`` when sent to a room; never its name),
                          ``wsgate.outcome``
========================  ===========================================================

Never in a span: a token, a raw ``sub``, a connection id, a room name, a
body, an exception's text (its type only). ``wsgate.sub_hash`` is the
first 16 hex digits of HMAC-SHA256(key, sub): the same user gives the same
hash on every node that shares the key, and the hash cannot be reversed by
trying user names without the key. The key is ``trace_sub_key`` when set,
else derived from ``jwt_secret`` (HMAC-SHA256(secret, "wsgate trace sub
key"), one-way), else random per process (hashes then match within one
process only).

Free when off: without the API installed nothing is imported and every
check is an attribute read; with the API but no SDK (OpenTelemetry's proxy
provider), the same, because which provider is in force is looked at when
the App starts and at each connect, not per event. A provider configured
after the App started takes effect at the next connect. ``bench/
tracing_cost.py`` measures the three cases.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

from wsgate.codes import Code

try:
    from opentelemetry import trace as otel
    from opentelemetry.trace import (
        NoOpTracerProvider,
        ProxyTracerProvider,
        SpanKind,
        Status,
        StatusCode,
    )
except ImportError:  # the optional extra is not installed: tracing stays off
    otel = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["Tracing", "available", "sub_hash_key"]

INSTRUMENTATION = "wsgate"

SUB_HASH_DIGITS = 16
"""Hex digits of the HMAC kept: 64 bits, plenty to tell users apart in traces."""


def available() -> bool:
    """True when the OpenTelemetry API can be imported (``wsgate[otel]``)."""
    return otel is not None


def sub_hash_key(explicit: str | None, jwt_secret: str | None) -> bytes:
    """The key of ``wsgate.sub_hash``: given, else derived from the JWT secret, else random."""
    if explicit:
        return explicit.encode()
    if jwt_secret:
        return hmac.new(jwt_secret.encode(), b"wsgate trace sub key", hashlib.sha256).digest()
    return secrets.token_bytes(32)


class Tracing:
    """Which tracer is in force (``None``: off), and how spans are filled.

    ``tracer`` is read on every event, so it is a plain attribute;
    :meth:`refresh` sets it (at start and at each connect).
    """

    def __init__(self, *, provider: TracerProvider | None = None, sub_key: bytes) -> None:
        self._explicit = provider
        self._provider: object = None
        self.tracer: Tracer | None = None
        key = sub_key

        @functools.lru_cache(maxsize=4096)
        def sub_hash(sub: str) -> str:
            return hmac.new(key, sub.encode(), hashlib.sha256).hexdigest()[:SUB_HASH_DIGITS]

        self.sub_hash = sub_hash
        """``sub`` -> its keyed hash (the last 4096 kept: no HMAC per event of a known user)."""
        self.refresh()

    def refresh(self) -> Tracer | None:
        """Look at which provider is in force; a no-op one (or none) turns tracing off."""
        if otel is None:
            return None
        provider = self._explicit if self._explicit is not None else otel.get_tracer_provider()
        if provider is not self._provider:
            self._provider = provider
            if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
                self.tracer = None
            else:
                from wsgate import __version__

                self.tracer = provider.get_tracer(INSTRUMENTATION, __version__)
        return self.tracer

    def mark_sub(self, sub: str) -> None:
        """Put ``sub``'s hash on the current span (the connect's, once the token verified)."""
        if otel is None or self.tracer is None:
            return
        span = otel.get_current_span()
        if span.is_recording():
            span.set_attribute("wsgate.sub_hash", self.sub_hash(sub))

    def start(self, tracer: Tracer, name: str, *, producer: bool = False) -> Any:
        """A span that is the current one inside ``with``; exceptions are not recorded.

        An exception's message may hold what a span must not (a token in a
        library's error text), so spans get the outcome and code only; the
        details are in the server's log.
        """
        return tracer.start_as_current_span(
            name,
            kind=SpanKind.PRODUCER if producer else SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        )


def set_outcome(span: Span, outcome: str, status: int | None = None, *, error: bool) -> None:
    """``wsgate.outcome`` (and ``wsgate.status_code``); an ERROR status for server faults."""
    span.set_attribute("wsgate.outcome", outcome)
    if status is not None:
        span.set_attribute("wsgate.status_code", status)
    if error:
        span.set_status(Status(StatusCode.ERROR, outcome))


_REFUSAL_STATUS = {
    Code.UNAUTHORIZED: 401,
    Code.TOKEN_EXPIRED: 401,
    Code.TOKEN_REVOKED: 401,
    Code.FORBIDDEN: 403,
    Code.PAYLOAD_TOO_LARGE: 413,
    Code.TOO_MANY_CONNECTIONS: 429,
    Code.UNAVAILABLE: 503,
}


def refusal_status(code: str) -> int:
    """The status a refusal code stands for (as in an error object), the same on every transport."""
    for known, status in _REFUSAL_STATUS.items():
        if known == code:
            return status
    return 403
