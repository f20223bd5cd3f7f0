"""Reads gateway classes once at start-up into plain, fast-to-use handler specs.

Everything that can be decided before the first event is decided here: the
effective guards (method metadata over class metadata), the interceptors
(App, class, method), how to build the body from the handler's type hint,
whether the handler wants a body at all, and what its guards, interceptors
and handler need injected (a :class:`~wsgate.core.dependencies.Plan`). The
per-event pipeline then does no reflection; an event with neither
dependencies nor interceptors has no plan and runs as before.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from wsgate.core import metadata
from wsgate.core.dependencies import NO_BODY, Declared, Injector, Plan, declare, name_of
from wsgate.core.gateway import Gateway
from wsgate.core.interceptors import INTERCEPTORS_ATTR, Interceptor, check_interceptor
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
    interceptors: tuple[Interceptor, ...] = ()
    plan: Plan | None = None
    """Guards, then interceptors, then the handler, with what each needs injected; ``None``
    when there is nothing to inject and no interceptor (the plain, fastest path)."""
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
    connect_plan: Plan | None = None
    """The connect guards, then ``on_connect``, when one of them takes dependencies."""
    disconnect_plan: Plan | None = None
    """``on_disconnect``, when it takes dependencies."""
    pushes: Mapping[str, PushSpec] = field(default_factory=dict)
    """The events the gateway declares it pushes (``@emits``), by name."""


def build_registry(
    gateways: typing.Iterable[Gateway],
    *,
    injector: Injector | None = None,
    interceptors: typing.Sequence[Interceptor] = (),
) -> dict[str, NamespaceSpec]:
    """Namespace -> spec; two gateways on one namespace are a configuration error.

    ``interceptors`` are the App's, outermost of every event's chain.
    ``injector`` plans the dependencies (and holds the overrides).
    """
    for interceptor in interceptors:
        check_interceptor(interceptor)
    injector = injector if injector is not None else Injector()
    registry: dict[str, NamespaceSpec] = {}
    for gateway in gateways:
        if not isinstance(gateway, Gateway):
            raise TypeError(f"{gateway!r} is not a Gateway instance")
        spec = _namespace_spec(gateway, injector, tuple(interceptors))
        if spec.namespace in registry:
            raise ValueError(f"two gateways share the namespace {spec.namespace!r}")
        registry[spec.namespace] = spec
    if not registry:
        raise ValueError("App needs at least one Gateway")
    return registry


def _namespace_spec(
    gateway: Gateway, injector: Injector, app_interceptors: tuple[Interceptor, ...]
) -> NamespaceSpec:
    cls = type(gateway)
    class_filters = metadata.read(cls, metadata.FILTERS_ATTR, ())
    class_interceptors = tuple(metadata.read(cls, INTERCEPTORS_ATTR, ()))
    handlers: dict[str, HandlerSpec] = {}
    for name, member in inspect.getmembers(cls, predicate=inspect.isfunction):
        event = getattr(member, metadata.EVENT_ATTR, None)
        if event is None:
            continue
        if not inspect.iscoroutinefunction(member):
            raise TypeError(f"{cls.__name__}.{name} must be 'async def'")
        if event in handlers:
            raise ValueError(f"{cls.__name__}: event {event!r} is subscribed twice")
        owner = f"{cls.__name__}.{name}"
        call = getattr(gateway, name)
        handler, body_hint = declare(call, fixed=1, what=owner, handler=True)
        guards = tuple(_override(member, cls, metadata.GUARDS_ATTR, ()))
        interceptors = (
            app_interceptors
            + class_interceptors
            + tuple(metadata.read(member, INTERCEPTORS_ATTR, ()))
        )
        consumers = [
            *(
                declare(guard, fixed=1, what=f"guard {name_of(guard)} of {owner}")[0]
                for guard in guards
            ),
            *(
                declare(item, fixed=2, what=f"interceptor {name_of(item)} of {owner}")[0]
                for item in interceptors
            ),
            handler,
        ]
        plan = (
            injector.plan(consumers, body_hint=body_hint, owner=owner)
            if interceptors or any(consumer.depends for consumer in consumers)
            else None
        )
        handlers[event] = HandlerSpec(
            event=event,
            call=call,
            body=TypeAdapter(body_hint) if body_hint is not NO_BODY else None,
            public=_is_public(member, cls),
            roles=tuple(_override(member, cls, metadata.ROLES_ATTR, ())),
            guards=guards,
            filters=tuple(metadata.read(member, metadata.FILTERS_ATTR, ())) + tuple(class_filters),
            interceptors=interceptors,
            plan=plan,
            returns=return_annotation(member),
        )
    connect_guards = tuple(metadata.read(cls, metadata.GUARDS_ATTR, ()))
    return NamespaceSpec(
        namespace=cls.namespace,
        gateway=gateway,
        handlers=handlers,
        connect_roles=tuple(metadata.read(cls, metadata.ROLES_ATTR, ())),
        connect_guards=connect_guards,
        filters=tuple(class_filters),
        connect_plan=_hook_plan(
            injector,
            cls,
            [
                *(
                    declare(guard, fixed=1, what=f"guard {name_of(guard)} of {cls.__name__}")[0]
                    for guard in connect_guards
                ),
                declare(gateway.on_connect, fixed=1, what=f"{cls.__name__}.on_connect")[0],
            ],
        ),
        disconnect_plan=_hook_plan(
            injector,
            cls,
            [declare(gateway.on_disconnect, fixed=2, what=f"{cls.__name__}.on_disconnect")[0]],
        ),
        pushes=declared_pushes(cls),
    )


def _hook_plan(injector: Injector, cls: type, consumers: list[Declared]) -> Plan | None:
    """A plan for connect guards and hooks, or None when none of them takes a dependency."""
    if not any(consumer.depends for consumer in consumers):
        return None
    return injector.plan(consumers, owner=f"{cls.__name__} (connect/disconnect)")


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
