"""The base class a user's gateway inherits from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from wsgate.core.context import Context


class Gateway:
    """A namespace of events: subclass it, decorate methods with ``@subscribe``.

    ``class Chat(Gateway, namespace="/chat")`` sets the namespace (``/`` by
    default). The lifecycle hooks are optional; an exception raised in
    ``on_connect`` refuses the connection instead of crashing the server.
    """

    namespace: ClassVar[str] = "/"

    def __init_subclass__(cls, namespace: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if namespace is not None:
            if not namespace.startswith("/"):
                raise ValueError(f"namespace must start with '/': {namespace!r}")
            cls.namespace = namespace

    async def on_start(self) -> None:
        """Called once when the App starts, before it serves; raise to stop the start-up.

        Gateways start in the order given to ``App``, after the App's
        ``on_startup`` hooks, so a gateway can use what those opened.
        """

    async def on_stop(self) -> None:
        """Called once when the App stops, after its live connections were closed.

        Gateways stop in the reverse order of their start, before the App's
        ``on_shutdown`` hooks; only gateways whose ``on_start`` succeeded stop.
        """

    async def on_connect(self, ctx: Context) -> None:
        """Called after the connection passed every check; raise to refuse it.

        May take ``Annotated[T, Depends(...)]`` parameters after ``ctx``.
        """

    async def on_disconnect(self, ctx: Context, reason: str) -> None:
        """Called once when the connection is gone, whoever closed it.

        May take ``Annotated[T, Depends(...)]`` parameters after ``reason``;
        connection-scoped dependencies are torn down after it returns.
        """
