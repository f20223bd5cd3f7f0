"""Dependency injection in FastAPI's idiom, decided once at start-up.

A handler, guard, interceptor or hook declares what it needs as
``Annotated[T, Depends(provider)]`` parameters; a provider declares its own
needs the same way (other providers, ``ctx: Context``, the validated body
by its type). This module reads those declarations when the App is built
and compiles each event's needs into a :class:`Plan`: a flat list of steps
in the order they must run, each provider once per event (FastAPI's
``use_cache``). The per-event work (:mod:`wsgate.core.resolution`) is then
a loop over that list: no signature is inspected while serving, and an
event without dependencies does not touch any of this.

A parameter that is neither ``ctx``, the body nor a ``Depends`` is a
start-up error, as is a cycle, a provider whose hints cannot be read, or
a connection-scoped provider that needs something only an event has.

Overrides (:class:`DependencyOverrides`, ``app.dependency_overrides``)
replace a provider by another: changing them compiles every plan again at
once, so a bad override fails where it is set, not at the first event.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import typing
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Scope = Literal["event", "connection"]
"""``"event"`` (the default): made for one event and torn down after it.
``"connection"``: made on first use, torn down when the connection is released."""

CTX = -1
"""Argument source: the event's (or hook's) :class:`~wsgate.Context`."""
BODY = -2
"""Argument source: the event's validated body."""


@dataclass(frozen=True, slots=True)
class Depends:
    """Declares a dependency: ``db: Annotated[Session, Depends(get_session)]``.

    ``dependency`` is the provider: a function (sync or ``async``), a
    generator function (sync or ``async``) whose code after ``yield`` is
    the teardown, or a class (called like a function). ``scope`` is
    ``"event"`` (made once per event, shared by every guard, interceptor
    and the handler of that event) or ``"connection"`` (made on first use,
    torn down when the connection is released, after ``on_disconnect``).
    ``use_cache=False`` makes a fresh value for each parameter that asks
    (event scope only).
    """

    dependency: Callable[..., Any]
    scope: Scope = field(default="event", kw_only=True)
    use_cache: bool = field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        if not callable(self.dependency):
            raise TypeError(f"Depends() takes a callable provider, not {self.dependency!r}")
        if self.scope not in ("event", "connection"):
            raise ValueError(f"Depends(scope=...) is 'event' or 'connection', not {self.scope!r}")
        if self.scope == "connection" and not self.use_cache:
            raise ValueError("a connection-scoped dependency is made once: use_cache=False")


class Kind(enum.Enum):
    """How a provider is called, decided once from what it is."""

    VALUE = "value"
    """A plain function or a class: its return value."""
    AWAIT = "await"
    """An ``async def``: its awaited result."""
    GENERATOR = "generator"
    """A generator function: the value it yields; the rest runs as teardown."""
    ASYNC_GENERATOR = "async_generator"
    """An async generator function: the value it yields; the rest runs as teardown."""


@dataclass(frozen=True, slots=True)
class ConnectionNode:
    """A connection-scoped provider, made on its connection's first use of it.

    ``key`` is the declared provider (an override changes ``call``, never
    the key), so every plan finds the same value in a connection's scope.
    ``args`` name their source: ``None`` for a connection-level ``Context``,
    another node for a connection-scoped dependency.
    """

    key: Callable[..., Any]
    call: Callable[..., Any]
    kind: Kind
    args: tuple[tuple[str, ConnectionNode | None], ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One provider call of a plan; ``args`` map keywords to :data:`CTX`, :data:`BODY` or steps."""

    call: Callable[..., Any]
    kind: Kind
    args: tuple[tuple[str, int], ...]
    node: ConnectionNode | None = None
    """Set for a connection-scoped dependency: the step reads (or makes) the scope's value."""


@dataclass(frozen=True, slots=True)
class Consumer:
    """A guard, interceptor, handler or hook of a plan: ``upto`` steps run before it."""

    call: Callable[..., Any]
    upto: int
    args: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A plan as the per-event code runs it: immutable, swapped whole on recompiling."""

    steps: tuple[Step, ...]
    consumers: tuple[Consumer, ...]
    tears_down: bool
    """True when a step is an event-scoped generator (a teardown stack is needed)."""


@dataclass(frozen=True, slots=True)
class Declared:
    """What a consumer asked for: its ``Depends`` parameters and, for a handler, its body's name."""

    call: Callable[..., Any]
    name: str
    depends: tuple[tuple[str, Depends], ...]
    body_param: str | None = None


class Plan:
    """The compiled needs of one event (or hook): consumers in the order they run.

    For an event the consumers are its guards, then its interceptors
    (outermost first), then the handler. ``compiled`` is replaced when the
    overrides change; an event in flight keeps the one it started with.
    """

    __slots__ = ("body_hint", "compiled", "consumers", "owner")

    def __init__(self, consumers: tuple[Declared, ...], body_hint: Any, owner: str) -> None:
        self.consumers = consumers
        self.body_hint = body_hint
        self.owner = owner
        self.compiled = Compiled((), (), False)


_NO_HINT = object()


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    source: Literal["ctx", "body", "depends"]
    depends: Depends | None = None
    hint: Any = _NO_HINT


@dataclass(frozen=True, slots=True)
class _Provider:
    call: Callable[..., Any]
    kind: Kind
    params: tuple[_Param, ...]


class DependencyOverrides(MutableMapping[Callable[..., Any], Callable[..., Any]]):
    """``{provider: replacement}``; every change compiles the App's plans again at once.

    A replacement is analysed like any provider (its own ``Depends``,
    ``Context`` and body parameters), so a fake may need less, or other
    things, than the real provider. A replacement that cannot be planned
    raises here, and the mapping keeps what it had.
    """

    def __init__(self, injector: Injector) -> None:
        self._data: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._injector = injector

    def __getitem__(self, key: Callable[..., Any]) -> Callable[..., Any]:
        return self._data[key]

    def __setitem__(self, key: Callable[..., Any], value: Callable[..., Any]) -> None:
        if not callable(value):
            raise TypeError(f"an override must be callable, not {value!r}")
        before = dict(self._data)
        self._data[key] = value
        self._apply(before)

    def __delitem__(self, key: Callable[..., Any]) -> None:
        before = dict(self._data)
        del self._data[key]
        self._apply(before)

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Drop every override (one recompilation, not one per key)."""
        if self._data:
            self._data.clear()
            self._injector.recompile()

    def _apply(self, before: dict[Callable[..., Any], Callable[..., Any]]) -> None:
        try:
            self._injector.recompile()
        except Exception:
            self._data = before
            self._injector.recompile()
            raise


class Injector:
    """Plans the dependencies of one App, and holds its overrides."""

    def __init__(self) -> None:
        self.overrides = DependencyOverrides(self)
        self._plans: list[Plan] = []
        self._providers: dict[Callable[..., Any], _Provider] = {}

    def plan(self, consumers: Sequence[Declared], *, body_hint: Any = _NO_HINT, owner: str) -> Plan:
        """A plan for ``consumers`` (run in this order), compiled now; a mistake raises here."""
        plan = Plan(tuple(consumers), body_hint, owner)
        plan.compiled = self._compile(plan)
        self._plans.append(plan)
        return plan

    def recompile(self) -> None:
        """Compile every plan with the current overrides (all, or none on an error)."""
        compiled = [self._compile(plan) for plan in self._plans]
        for plan, fresh in zip(self._plans, compiled, strict=True):
            plan.compiled = fresh

    # -- compiling -------------------------------------------------------------------------

    def _compile(self, plan: Plan) -> Compiled:
        steps: list[Step] = []
        cache: dict[tuple[Scope, Callable[..., Any]], int] = {}
        nodes: dict[Callable[..., Any], ConnectionNode] = {}
        consumers: list[Consumer] = []
        for declared in plan.consumers:
            args: list[tuple[str, int]] = []
            if declared.body_param is not None:
                args.append((declared.body_param, BODY))
            for name, depends in declared.depends:
                index = self._add(depends, plan, steps, cache, nodes, ())
                args.append((name, index))
            consumers.append(Consumer(declared.call, len(steps), tuple(args)))
        tears_down = any(
            step.node is None and step.kind in (Kind.GENERATOR, Kind.ASYNC_GENERATOR)
            for step in steps
        )
        return Compiled(tuple(steps), tuple(consumers), tears_down)

    def _add(
        self,
        depends: Depends,
        plan: Plan,
        steps: list[Step],
        cache: dict[tuple[Scope, Callable[..., Any]], int],
        nodes: dict[Callable[..., Any], ConnectionNode],
        chain: tuple[Callable[..., Any], ...],
    ) -> int:
        """The index of the step giving ``depends``, adding it (and its own needs) if new."""
        key = depends.dependency
        cache_key = (depends.scope, key)
        if depends.use_cache and cache_key in cache:
            return cache[cache_key]
        if depends.scope == "connection":
            node = self._node(key, nodes, chain, plan.owner)
            steps.append(Step(node.call, node.kind, (), node))
            cache[cache_key] = len(steps) - 1
            return len(steps) - 1
        _refuse_cycle(key, chain, plan.owner)
        provider = self._provider(self.overrides.get(key, key), plan.owner)
        args: list[tuple[str, int]] = []
        for param in provider.params:
            if param.source == "ctx":
                args.append((param.name, CTX))
            elif param.source == "body":
                _check_body(plan, name_of(key), param)
                args.append((param.name, BODY))
            else:
                assert param.depends is not None
                index = self._add(param.depends, plan, steps, cache, nodes, (*chain, key))
                args.append((param.name, index))
        steps.append(Step(_entry(provider), provider.kind, tuple(args)))
        if depends.use_cache:
            cache[cache_key] = len(steps) - 1
        return len(steps) - 1

    def _node(
        self,
        key: Callable[..., Any],
        nodes: dict[Callable[..., Any], ConnectionNode],
        chain: tuple[Callable[..., Any], ...],
        owner: str,
    ) -> ConnectionNode:
        """A connection-scoped provider: it may need ``Context`` and connection-scoped ones only.

        Anything an event has (the body, an event-scoped value) would be
        caught for the whole connection from whichever event came first.
        """
        if key in nodes:
            return nodes[key]
        _refuse_cycle(key, chain, owner)
        provider = self._provider(self.overrides.get(key, key), owner)
        args: list[tuple[str, ConnectionNode | None]] = []
        for param in provider.params:
            if param.source == "ctx":
                args.append((param.name, None))
            elif param.depends is not None and param.depends.scope == "connection":
                sub = self._node(param.depends.dependency, nodes, (*chain, key), owner)
                args.append((param.name, sub))
            else:
                what = "the body" if param.source == "body" else "an event-scoped dependency"
                raise TypeError(
                    f"{owner}: connection-scoped {name_of(key)} cannot take {what} "
                    f"({param.name!r}): it lives longer than one event"
                )
        node = ConnectionNode(key, _entry(provider), provider.kind, tuple(args))
        nodes[key] = node
        return node

    def _provider(self, call: Callable[..., Any], owner: str) -> _Provider:
        known = self._providers.get(call)
        if known is None:
            try:
                known = self._providers[call] = _analyse_provider(call)
            except TypeError as exc:
                raise TypeError(f"{owner}: {exc}") from None
        return known


# -- reading signatures (start-up only) -------------------------------------------------------


def declare(
    call: Callable[..., Any], *, fixed: int, what: str, handler: bool = False
) -> tuple[Declared, Any]:
    """Read a consumer: ``fixed`` leading positional parameters, then ``Depends`` ones.

    A handler (``handler=True``) may also have one more parameter, its
    body; the body's type hint is returned with the declaration
    (``_NO_HINT`` when there is no body). Any other parameter is an error.
    """
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError):  # a builtin or an object without a readable signature
        return Declared(call, what, ()), _NO_HINT
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < fixed and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise TypeError(f"{what} must take {fixed} positional parameter(s) first")
    rest = [p for p in params[fixed:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not rest:
        return Declared(call, what, ()), _NO_HINT
    hints = _hints(call, what)
    depends: list[tuple[str, Depends]] = []
    body_param: str | None = None
    body_hint: Any = _NO_HINT
    for param in rest:
        hint = hints.get(param.name, _NO_HINT)
        found = _depends_of(param, hint, what)
        if found is not None:
            if param.kind is param.POSITIONAL_ONLY:
                raise TypeError(f"{what}: {param.name!r} cannot be positional-only")
            depends.append((param.name, found))
            continue
        if handler and body_param is None:
            if hint is _NO_HINT:
                raise TypeError(f"{what}: annotate {param.name!r} so it can be validated")
            body_param, body_hint = param.name, hint
            continue
        if param.default is not param.empty:
            continue  # a plain default: left to the callable
        allowed = "ctx, the body or a Depends" if handler else "ctx or a Depends"
        raise TypeError(
            f"{what}: parameter {param.name!r} is not {allowed} "
            "(declare dependencies as Annotated[T, Depends(provider)])"
        )
    return Declared(call, what, tuple(depends), body_param), body_hint


def _analyse_provider(call: Callable[..., Any]) -> _Provider:
    name = name_of(call)
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError):
        return _Provider(call, _kind(call), ())
    params: list[_Param] = []
    wanted = [
        p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    hints = _hints(call, f"provider {name}") if wanted else {}
    from wsgate.core.context import Context

    for param in wanted:
        hint = hints.get(param.name, _NO_HINT)
        found = _depends_of(param, hint, f"provider {name}")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"provider {name}: parameter {param.name!r} cannot be positional-only")
        if found is not None:
            params.append(_Param(param.name, "depends", found))
        elif isinstance(hint, type) and issubclass(hint, Context):
            params.append(_Param(param.name, "ctx"))
        elif param.default is not param.empty:
            continue  # a plain default: left to the provider
        elif hint is _NO_HINT:
            raise TypeError(
                f"provider {name}: annotate {param.name!r} (ctx: Context, the body's type, "
                "or Annotated[T, Depends(provider)])"
            )
        else:
            params.append(_Param(param.name, "body", hint=hint))
    return _Provider(call, _kind(call), tuple(params))


def _depends_of(param: inspect.Parameter, hint: Any, what: str) -> Depends | None:
    if isinstance(param.default, Depends):
        raise TypeError(
            f"{what}: write {param.name}: Annotated[T, Depends(...)] "
            "(a Depends as a default value is not read)"
        )
    if typing.get_origin(hint) is typing.Annotated:
        for meta in hint.__metadata__:
            if isinstance(meta, Depends):
                return meta
    return None


def _hints(call: Callable[..., Any], what: str) -> dict[str, Any]:
    """Type hints with ``Annotated`` kept; ``Context`` resolves even if imported for typing only."""
    from wsgate.core.context import Context

    target: Any = call
    if inspect.isclass(call):
        target = call.__init__
    elif not (inspect.isfunction(call) or inspect.ismethod(call)):
        target = getattr(call, "func", None) or type(call).__call__  # partial, or an instance
    try:
        return typing.get_type_hints(target, localns={"Context": Context}, include_extras=True)
    except Exception as exc:
        raise TypeError(f"{what}: cannot read its type hints ({exc})") from None


def _kind(call: Callable[..., Any]) -> Kind:
    target: Any = call
    if not inspect.isclass(call) and not (inspect.isfunction(call) or inspect.ismethod(call)):
        target = getattr(call, "func", None) or type(call).__call__
    if inspect.isasyncgenfunction(target):
        return Kind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(target):
        return Kind.GENERATOR
    if inspect.iscoroutinefunction(target):
        return Kind.AWAIT
    return Kind.VALUE


def _entry(provider: _Provider) -> Callable[..., Any]:
    """What a step calls: generator functions become context managers once, here."""
    if provider.kind is Kind.GENERATOR:
        return contextlib.contextmanager(provider.call)
    if provider.kind is Kind.ASYNC_GENERATOR:
        return contextlib.asynccontextmanager(provider.call)
    return provider.call


def _check_body(plan: Plan, provider: str, param: _Param) -> None:
    """A provider's body parameter must be the handler's body type (or a base of it)."""
    if plan.body_hint is _NO_HINT:
        raise TypeError(
            f"{plan.owner}: {provider} takes the body ({param.name!r}) but there is none here "
            "(no body parameter on the handler, or a connect/disconnect hook)"
        )
    wanted, given = param.hint, plan.body_hint
    if wanted == given:
        return
    if isinstance(wanted, type) and isinstance(given, type) and issubclass(given, wanted):
        return
    raise TypeError(
        f"{plan.owner}: {provider} takes a body of type {wanted!r} ({param.name!r}), "
        f"but the handler's body is {given!r}"
    )


def _refuse_cycle(
    key: Callable[..., Any], chain: tuple[Callable[..., Any], ...], owner: str
) -> None:
    if key in chain:
        names = " -> ".join(name_of(item) for item in (*chain, key))
        raise TypeError(f"{owner}: dependency cycle {names}")


def name_of(call: object) -> str:
    """A callable's name for messages (its qualified name when it has one)."""
    return str(getattr(call, "__qualname__", None) or getattr(call, "__name__", None) or call)


NO_BODY = _NO_HINT
"""The body hint of a plan without a body (hooks, connect guards, handlers without one)."""
