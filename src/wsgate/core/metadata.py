"""Decorators that attach routing and security metadata to gateway methods and classes.

The decorators only record facts on the object; :mod:`wsgate.core.registry`
reads them once at start-up. Method metadata overrides class metadata key by
key (NestJS's ``getAllAndOverride``), so ``@public`` on one method of a
``@roles("admin")`` class makes just that event public.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from wsgate.core.context import Context
    from wsgate.errors import GatewayError

T = TypeVar("T")

Guard = Callable[..., "bool | Awaitable[bool]"]
"""A guard ``(ctx) -> bool | Awaitable[bool]`` says whether an event may run.

Anything but ``True``, or an exception, denies. Event guards run after the
body was validated and can read it as ``ctx.body``. After ``ctx`` a guard
may take ``Annotated[T, Depends(provider)]`` parameters (hence ``...``).
"""

ExceptionFilter = Callable[
    [BaseException, "Context"], "GatewayError | Awaitable[GatewayError | None] | None"
]
"""A filter turns an exception into the :class:`~wsgate.GatewayError` a client sees, or passes.

It may be ``async``. Returning ``None`` passes the exception to the next
filter (and finally to the default one: a ``GatewayError`` as it is,
anything else a generic 500). Whatever a filter returns, only the
contract's error object ``{"status", "code", "message"[, "fields"]}`` goes on
the wire: a return value that is not a ``GatewayError`` is logged and
ignored, exactly as if the filter had raised.
"""

EVENT_ATTR = "__wsgate_event__"
PUBLIC_ATTR = "__wsgate_public__"
ROLES_ATTR = "__wsgate_roles__"
GUARDS_ATTR = "__wsgate_guards__"
FILTERS_ATTR = "__wsgate_filters__"


def subscribe(event: str) -> Callable[[T], T]:
    """Route the event named ``event`` to the decorated method; its return value is the ack."""
    if not isinstance(event, str) or not event or event in {"connect", "disconnect"}:
        raise ValueError(f"invalid event name {event!r}: connect/disconnect are lifecycle hooks")

    def mark(handler: T) -> T:
        setattr(handler, EVENT_ATTR, event)
        return handler

    return mark


def public(target: T) -> T:
    """Opt an event (or every event of a class) out of the token guard.

    The connection itself still needed a verified token and passed the origin
    policy; ``public`` only skips per-event token and role checks.
    """
    setattr(target, PUBLIC_ATTR, True)
    return target


def roles(*required: str) -> Callable[[T], T]:
    """Require every one of ``required`` in the principal's ``roles`` claim.

    On a class the roles are also checked at connect, so a namespace of admins
    refuses everybody else before any event is handled.
    """
    if not required or not all(isinstance(role, str) and role for role in required):
        raise ValueError("roles() needs one or more non-empty role names")

    def mark(target: T) -> T:
        setattr(target, ROLES_ATTR, tuple(required))
        return target

    return mark


def use_guards(*guards: Guard) -> Callable[[T], T]:
    """Run ``guards`` (in order, after the token and role checks) before the handler."""
    if not all(callable(guard) for guard in guards):
        raise TypeError("use_guards() takes callables (ctx, *dependencies) -> bool")

    def mark(target: T) -> T:
        setattr(target, GUARDS_ATTR, tuple(guards))
        return target

    return mark


def use_filters(*filters: ExceptionFilter) -> Callable[[T], T]:
    """Try ``filters`` (in order) on an exception before the default filter."""
    if not all(callable(item) for item in filters):
        raise TypeError("use_filters() takes callables (exc, ctx) -> GatewayError | None")

    def mark(target: T) -> T:
        setattr(target, FILTERS_ATTR, tuple(filters))
        return target

    return mark


def read(target: object, attr: str, default: Any = None) -> Any:
    """The metadata ``attr`` of ``target``; a subclass inherits its bases' restrictions."""
    return getattr(target, attr, default)
