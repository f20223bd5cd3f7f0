"""Reads gateway classes once at start-up into plain, fast-to-use handler specs.

Everything that can be decided before the first event is decided here: the
effective guards (method metadata over class metadata), how to build the
body from the handler's type hint, and whether the handler wants a body at
all. The per-event pipeline then does no reflection.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from wsgate.core import metadata
from wsgate.core.gateway import Gateway
from wsgate.core.metadata import ExceptionFilter, Guard
from wsgate.core.pushes import PushSpec, declared_pushes

NOT_ANNOTATED: Any = inspect.Signature.empty
"""``HandlerSpec.returns`` of a handler without a return annotation (its ack is undocumented)."""


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One subscribed event of one namespace."""

    event: str
    call: Callable[..., Awaitable[Any]]
    body: TypeAdapter[Any] | None
    public: bool
    roles: tuple[str, ...]
    guards: tuple[Guard, ...]
    filters: tuple[ExceptionFilter, ...]
    returns: Any = NOT_ANNOTATED
    """The handler's return annotation: the type of its ack, for documents and typed clients."""


@dataclass(frozen=True, slots=True)
class NamespaceSpec:
    """A gateway's namespace: its handlers and what a connection must pass to join it."""

    namespace: str
    gateway: Gateway
    handlers: dict[str, HandlerSpec]
    connect_roles: tuple[str, ...]
    connect_guards: tuple[Guard, ...]
    filters: tuple[ExceptionFilter, ...]
    pushes: Mapping[str, PushSpec] = field(default_factory=dict)
    """The events the gateway declares it pushes (``@emits``), by name."""


def build_registry(gateways: typing.Iterable[Gateway]) -> dict[str, NamespaceSpec]:
    """Namespace -> spec; two gateways on one namespace are a configuration error."""
    registry: dict[str, NamespaceSpec] = {}
    for gateway in gateways:
        if not isinstance(gateway, Gateway):
            raise TypeError(f"{gateway!r} is not a Gateway instance")
        spec = _namespace_spec(gateway)
        if spec.namespace in registry:
            raise ValueError(f"two gateways share the namespace {spec.namespace!r}")
        registry[spec.namespace] = spec
    if not registry:
        raise ValueError("App needs at least one Gateway")
    return registry


def _namespace_spec(gateway: Gateway) -> NamespaceSpec:
    cls = type(gateway)
    class_filters = metadata.read(cls, metadata.FILTERS_ATTR, ())
    handlers: dict[str, HandlerSpec] = {}
    for name, member in inspect.getmembers(cls, predicate=inspect.isfunction):
        event = getattr(member, metadata.EVENT_ATTR, None)
        if event is None:
            continue
        if not inspect.iscoroutinefunction(member):
            raise TypeError(f"{cls.__name__}.{name} must be 'async def'")
        if event in handlers:
            raise ValueError(f"{cls.__name__}: event {event!r} is subscribed twice")
        handlers[event] = HandlerSpec(
            event=event,
            call=getattr(gateway, name),
            body=_body_adapter(cls, member),
            public=_is_public(member, cls),
            roles=tuple(_override(member, cls, metadata.ROLES_ATTR, ())),
            guards=tuple(_override(member, cls, metadata.GUARDS_ATTR, ())),
            filters=tuple(metadata.read(member, metadata.FILTERS_ATTR, ())) + tuple(class_filters),
            returns=return_annotation(member),
        )
    return NamespaceSpec(
        namespace=cls.namespace,
        gateway=gateway,
        handlers=handlers,
        connect_roles=tuple(metadata.read(cls, metadata.ROLES_ATTR, ())),
        connect_guards=tuple(metadata.read(cls, metadata.GUARDS_ATTR, ())),
        filters=tuple(class_filters),
        pushes=declared_pushes(cls),
    )


def _is_public(method: object, cls: type) -> bool:
    """``@public`` on the method, or on the class unless the method asks for roles itself.

    A class-wide ``@public`` must not silently cancel an explicit
    ``@roles(...)`` on one of its methods: that would fail open.
    """
    own = metadata.read(method, metadata.PUBLIC_ATTR, None)
    if own is not None:
        return bool(own)
    if metadata.read(method, metadata.ROLES_ATTR, None) is not None:
        return False
    return bool(metadata.read(cls, metadata.PUBLIC_ATTR, False))


def _override(method: object, cls: type, attr: str, default: Any) -> Any:
    """Method metadata when set, else class metadata (NestJS getAllAndOverride)."""
    value = metadata.read(method, attr, None)
    if value is not None:
        return value
    return metadata.read(cls, attr, default)


def _body_adapter(cls: type, method: Callable[..., Any]) -> TypeAdapter[Any] | None:
    """A validator for the handler's body parameter, or None when it takes no body.

    Handlers are ``(self, ctx)`` or ``(self, ctx, body: T)``; anything else
    is refused at start-up so that a typo cannot silently skip validation.
    """
    params = list(inspect.signature(method).parameters.values())[1:]
    if not params or len(params) > 2:
        raise TypeError(f"{cls.__name__}.{method.__name__} must take (self, ctx[, body])")
    if len(params) == 1:
        return None
    from wsgate.core.context import Context  # handlers often import it under TYPE_CHECKING

    hints = typing.get_type_hints(method, localns={"Context": Context}, include_extras=True)
    body_param = params[1]
    if body_param.name not in hints:
        raise TypeError(
            f"{cls.__name__}.{method.__name__}: annotate '{body_param.name}' so it can be validated"
        )
    return TypeAdapter(hints[body_param.name])


def return_annotation(method: Callable[..., Any]) -> Any:
    """The handler's resolved return annotation, or ``NOT_ANNOTATED``.

    Only documents and typed clients read it; the ack itself is whatever the
    handler returns, serialized as it is. So an annotation that cannot be
    resolved (a name imported only under ``TYPE_CHECKING``) leaves the ack
    undocumented rather than stopping the App from starting.
    """
    from wsgate.core.context import Context

    try:
        hints = typing.get_type_hints(method, localns={"Context": Context}, include_extras=True)
    except (NameError, TypeError):
        return NOT_ANNOTATED
    return hints.get("return", NOT_ANNOTATED)
