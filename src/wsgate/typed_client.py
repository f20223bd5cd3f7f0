"""Call an App's events from Python with the handlers' own types, checked by mypy.

The gateway's source is the schema: ``await client.call(Chat.echo, TextBody(text="hi"))``
sends ``echo`` with that body, and mypy infers the result as ``echo``'s
return type (``TextBody``) and rejects a body of another type. No code is
generated, so nothing can fall out of date; the ack is validated into the
return type (from JSON, as it came), and an error object raises
:class:`RemoteError`.

It wraps any client with ``async call(event, data) -> ack``:
:mod:`wsgate.testing`'s clients (which also give :meth:`TypedClient.next_push`)
or python-socketio's ``AsyncClient`` (pass ``namespace=`` there).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, overload

import orjson
from pydantic import TypeAdapter

from wsgate.core.context import Context
from wsgate.core.fanout import to_wire
from wsgate.core.metadata import EVENT_ATTR
from wsgate.core.registry import NOT_ANNOTATED, return_annotation

__all__ = ["RemoteError", "TypedClient"]

B = TypeVar("B")
R = TypeVar("R")
T = TypeVar("T")


class Caller(Protocol):
    """What a wrapped client needs: an event call that returns the ack's data."""

    def call(self, event: str, data: Any = ...) -> Awaitable[Any]: ...


class RemoteError(Exception):
    """The App answered with its error object ``{"status", "code", "message"[, "fields"]}``."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields


class TypedClient:
    """Typed calls over ``client``; see the module's docstring."""

    def __init__(self, client: Caller, **call_options: Any) -> None:
        """``call_options`` go to every ``client.call`` (python-socketio: ``namespace=...``)."""
        self.client = client
        self._options = call_options

    @overload
    async def call(self, handler: Callable[[Any, Context], Awaitable[R]]) -> R: ...

    @overload
    async def call(self, handler: Callable[[Any, Context, B], Awaitable[R]], body: B) -> R: ...

    async def call(self, handler: Callable[..., Awaitable[Any]], body: Any = None) -> Any:
        """Send ``handler``'s event with ``body``; its ack, validated as its return type."""
        event = getattr(handler, EVENT_ATTR, None)
        if not isinstance(event, str):
            raise TypeError(f"{handler!r} is not an @subscribe handler")
        reply = await self.client.call(event, to_wire(body), **self._options)
        error = _error_of(reply)
        if error is not None:
            raise error
        adapter = _ack_adapter(handler)
        return reply if adapter is None else adapter.validate_json(orjson.dumps(reply))

    async def next_push(
        self,
        event: str,
        payload: type[T],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109  (as wsgate.testing's clients: bounded per wait)
    ) -> T:
        """The next ``event`` push validated as ``payload`` (a :mod:`wsgate.testing` client)."""
        next_event = getattr(self.client, "next_event", None)
        if next_event is None:
            raise TypeError(f"{type(self.client).__name__} does not collect pushes")
        data = await next_event(event, timeout=timeout)
        return TypeAdapter(payload).validate_json(orjson.dumps(data))


@functools.cache  # keyed by handler functions: as many as the code defines
def _ack_adapter(handler: Callable[..., Any]) -> TypeAdapter[Any] | None:
    annotation = return_annotation(handler)
    return None if annotation is NOT_ANNOTATED else TypeAdapter(annotation)


def _error_of(reply: Any) -> RemoteError | None:
    """The contract's error object as an exception, or None for a successful ack."""
    if not (isinstance(reply, dict) and set(reply) == {"error"}):
        return None
    error = reply["error"]
    if not isinstance(error, dict):
        return None
    fields = error.get("fields")
    return RemoteError(
        int(error.get("status", 500)),
        str(error.get("code", "")),
        str(error.get("message", "")),
        {str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else {},
    )
