"""``@emits``: a gateway declares the events it pushes to clients, and their payloads.

Pushes are sent from anywhere (``ctx.emit``, ``ctx.emit_to_room``,
``app.server.emit``), so nothing in a handler's signature says which
events a client may receive. The declaration is what the AsyncAPI
document and the typed clients are generated from; it records facts only,
like the other decorators, and changes nothing at run time.

The pushes wsgate itself sends on every namespace (``auth:expired``,
``auth:revoked``, ``exception``) are documented without a declaration, and
declaring one of them is refused: it would document a payload the server
never sends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

PUSHES_ATTR = "__wsgate_pushes__"

BUILTIN_PUSHES = frozenset({"auth:expired", "auth:revoked", "exception", "ready"})
"""Events wsgate sends by itself (``ready`` on ``/ws`` only); a gateway cannot redeclare them."""

C = TypeVar("C", bound=type)


@dataclass(frozen=True, slots=True)
class PushSpec:
    """One declared push: its event name, the payload's type and what it means."""

    event: str
    payload: Any
    """A type pydantic can describe (a model, a ``TypedDict``...); ``None``: no payload."""
    description: str | None = None


def emits(event: str, payload: Any = None, *, description: str | None = None) -> Callable[[C], C]:
    """Declare that the decorated gateway class pushes ``event`` with a ``payload``-typed body.

    Stack it once per event; subclasses inherit their bases' declarations
    (and may redeclare an event to change its payload type).
    """
    if not isinstance(event, str) or not event:
        raise ValueError(f"invalid push event name {event!r}")
    if event in BUILTIN_PUSHES:
        raise ValueError(f"{event!r} is pushed by wsgate itself and documented already")

    def mark(cls: C) -> C:
        if not isinstance(cls, type):
            raise TypeError("@emits decorates a Gateway class")
        own: dict[str, PushSpec] = dict(cls.__dict__.get(PUSHES_ATTR, {}))
        if event in own:
            raise ValueError(f"{cls.__name__}: push {event!r} is declared twice")
        own[event] = PushSpec(event, payload, description)
        setattr(cls, PUSHES_ATTR, own)
        return cls

    return mark


def declared_pushes(cls: type) -> Mapping[str, PushSpec]:
    """Every push ``cls`` and its bases declare; a subclass's declaration wins."""
    pushes: dict[str, PushSpec] = {}
    for klass in reversed(cls.__mro__):
        pushes.update(klass.__dict__.get(PUSHES_ATTR, {}))
    return pushes
