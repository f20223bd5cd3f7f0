"""Running a dependency plan: the values of one event, and the values of one connection.

A :class:`Resolution` lives for one event (or one hook call): it runs the
plan's steps in order, as far as the next consumer needs, keeps each value
once, and tears down what generator providers opened, newest first, when
the event ends (with the event's exception, if any: a provider's
``try/except`` around its ``yield`` sees the handler's error, or the
cancellation when the connection ended first).

A :class:`ConnectionScope` holds a connection's connection-scoped values:
each is made on its first use (under a lock, so two events of the same
connection starting at once make it once) and torn down when the
connection is released, after ``on_disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from wsgate.core.context import Context, connection_context, connection_of
from wsgate.core.dependencies import BODY, CTX, Compiled, ConnectionNode, Kind

if TYPE_CHECKING:
    from wsgate.core.connection import Connection

log = logging.getLogger("wsgate.dependencies")


class Resolution:
    """The dependency values of one event (or hook call), made as its consumers need them."""

    __slots__ = ("_owner", "_stack", "_values", "compiled", "ctx", "done")

    def __init__(self, compiled: Compiled, ctx: Context, owner: Connection | None = None) -> None:
        self.compiled = compiled
        self.ctx = ctx
        self._owner = owner if owner is not None else connection_of(ctx)
        """Whose connection scope connection-scoped values live in (a refresh judges a copy)."""
        self._values: list[Any] = [None] * len(compiled.steps)
        self.done = 0
        self._stack: contextlib.AsyncExitStack | None = None

    async def arguments(self, index: int) -> dict[str, Any]:
        """The keyword arguments of consumer ``index``, running the steps it still needs."""
        consumer = self.compiled.consumers[index]
        if self.done < consumer.upto:
            await self.run_until(consumer.upto)
        return self.collect(consumer.args) if consumer.args else _NONE

    async def close(self, error: BaseException | None = None) -> None:
        """Run the teardowns (newest first); ``error`` is thrown into them at their ``yield``.

        A teardown cannot turn a failed event into a success: what it
        returns is ignored, and the event's own error stands. An exception
        raised by a teardown propagates (after the older teardowns ran).
        """
        stack, self._stack = self._stack, None
        if stack is None:
            return
        if error is None:
            await stack.aclose()
        else:
            await stack.__aexit__(type(error), error, error.__traceback__)

    async def run_until(self, upto: int) -> None:
        """Run the steps before ``upto`` not run yet, in order; each value is kept."""
        steps, values = self.compiled.steps, self._values
        while self.done < upto:
            index = self.done
            step = steps[index]
            kind = step.kind
            kwargs = self.collect(step.args) if step.args else _NONE
            if step.node is not None:
                value = await scope_of(self._owner).get(step.node, self.ctx)
            elif kind is _VALUE:
                value = step.call(**kwargs)
            elif kind is _AWAIT:
                value = await step.call(**kwargs)
            else:
                if self._stack is None:
                    self._stack = contextlib.AsyncExitStack()
                if kind is _ASYNC_GENERATOR:
                    value = await self._stack.enter_async_context(step.call(**kwargs))
                else:
                    value = self._stack.enter_context(step.call(**kwargs))
            values[index] = value
            self.done = index + 1

    @property
    def tears_down(self) -> bool:
        """True when a generator provider is open (``close`` has work to do)."""
        return self._stack is not None

    def collect(self, args: tuple[tuple[str, int], ...]) -> dict[str, Any]:
        """Keyword arguments from their sources: the context, the body or a step's value."""
        values, ctx = self._values, self.ctx
        kwargs: dict[str, Any] = {}
        for name, source in args:  # a loop, not a comprehension: no extra frame per event
            kwargs[name] = ctx if source == CTX else ctx.body if source == BODY else values[source]
        return kwargs


_NONE: dict[str, Any] = {}
"""The keyword arguments of a call without any (shared: ``**`` only reads it)."""
_VALUE, _AWAIT, _ASYNC_GENERATOR = Kind.VALUE, Kind.AWAIT, Kind.ASYNC_GENERATOR


class ConnectionScope:
    """A connection's connection-scoped values, and the teardowns of those that need one."""

    __slots__ = ("_lock", "_stack", "released", "values")

    def __init__(self) -> None:
        self.values: dict[Any, Any] = {}
        self.released = False
        self._lock = asyncio.Lock()
        self._stack: contextlib.AsyncExitStack | None = None

    async def get(self, node: ConnectionNode, ctx: Context) -> Any:
        """The value of ``node`` for this connection, made now if this is its first use."""
        try:
            return self.values[node.key]
        except KeyError:
            pass
        if self.released:
            raise RuntimeError("the connection was released: its dependencies are gone")
        async with self._lock:
            return await self._make(node, connection_context(ctx))

    async def _make(self, node: ConnectionNode, ctx: Context) -> Any:
        if node.key in self.values:
            return self.values[node.key]
        if self.released:
            raise RuntimeError("the connection was released: its dependencies are gone")
        kwargs: dict[str, Any] = {}
        for name, sub in node.args:
            kwargs[name] = ctx if sub is None else await self._make(sub, ctx)
        kind = node.kind
        if kind is Kind.VALUE:
            value = node.call(**kwargs)
        elif kind is Kind.AWAIT:
            value = await node.call(**kwargs)
        else:
            if self._stack is None:
                self._stack = contextlib.AsyncExitStack()
            if kind is Kind.ASYNC_GENERATOR:
                value = await self._stack.enter_async_context(node.call(**kwargs))
            else:
                value = self._stack.enter_context(node.call(**kwargs))
        self.values[node.key] = value
        return value

    async def release(self) -> None:
        """Tear down, newest first; a failing teardown is logged (the connection is gone)."""
        self.released = True
        self.values.clear()
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            await stack.aclose()
        except Exception:
            log.exception("tearing down a connection-scoped dependency failed")


def scope_of(connection: Connection) -> ConnectionScope:
    """The connection's scope, made on its first connection-scoped dependency."""
    scope = connection.dependencies
    if scope is None:
        scope = connection.dependencies = ConnectionScope()
    return scope


async def release_scope(connection: Connection) -> None:
    """Tear down the connection's connection-scoped values; none can be made afterwards."""
    scope = connection.dependencies
    if scope is None:
        connection.dependencies = _RELEASED
    elif not scope.released:
        await scope.release()


_RELEASED = ConnectionScope()
_RELEASED.released = True
"""The scope of every released connection that never had one (no allocation per connection)."""
