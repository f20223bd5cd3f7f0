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

    async def on_connect(self, ctx: Context) -> None:
        """Called after the connection passed every check; raise to refuse it."""

    async def on_disconnect(self, ctx: Context, reason: str) -> None:
        """Called once when the connection is gone, whoever closed it."""
