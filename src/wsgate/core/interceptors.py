"""Interceptors: code around each event's handler (NestJS's name, Starlette's middleware shape).

An interceptor is an ``async`` callable ``(ctx, call_next) -> result``::

    async def timing(ctx: Context, call_next: CallNext) -> Any:
        started = time.perf_counter()
        try:
            return await call_next()          # the next interceptor, and at the end the handler
        finally:
            log.info("%s took %.3f s", ctx.event, time.perf_counter() - started)

It sees the context and the validated body (``ctx.body``), gets the
handler's result from ``call_next()`` or its exception by catching it, and
returns the result the client gets (the same, another one) or raises (the
same exception, or another: a ``GatewayError`` the client sees). It may
also take ``Annotated[T, Depends(...)]`` parameters after those two.

Where they run: after the roles, the body's validation and the guards (an
event that is refused never reaches them), inside the exception filters (an
interceptor's exception is filtered like a handler's, so a client never sees
a trace), and before event-scoped dependencies are torn down. In which
order: the App's (``App(..., interceptors=[...])``), then the class's, then
the method's, the first of each list outermost.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

CallNext = Callable[[], Awaitable[Any]]
"""Runs the rest of the chain (the next interceptor, finally the handler) and returns its result."""

Interceptor = Callable[..., Awaitable[Any]]
"""``async (ctx, call_next, *dependencies) -> result``: runs around the handler of an event."""

INTERCEPTORS_ATTR = "__wsgate_interceptors__"


def use_interceptors(*interceptors: Interceptor) -> Callable[[T], T]:
    """Run ``interceptors`` around the decorated event (or every event of the class).

    The first is the outermost. Stacked decorators read top to bottom,
    outermost first; class interceptors wrap the method's, and the App's
    wrap them all.
    """
    for interceptor in interceptors:
        check_interceptor(interceptor)

    def mark(target: T) -> T:
        setattr(target, INTERCEPTORS_ATTR, (*interceptors, *getattr(target, INTERCEPTORS_ATTR, ())))
        return target

    return mark


def check_interceptor(interceptor: object) -> None:
    """An interceptor must be an ``async`` callable: it has to await ``call_next()``."""
    is_async = callable(interceptor) and (
        inspect.iscoroutinefunction(interceptor)
        or inspect.iscoroutinefunction(type(interceptor).__call__)
    )
    if not is_async:
        raise TypeError(
            f"{interceptor!r} is not an interceptor: it must be an async callable (ctx, call_next)"
        )
