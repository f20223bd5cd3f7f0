"""The per-event pipeline: roles -> validation -> guards -> interceptors -> handler, in filters.

The order is the documented order of checks (docs/session-model.md):
roles need nothing but the token, so they go first and a caller without
them learns nothing about the body's shape; guards run after validation so
that they can read the validated body (``ctx.body``); interceptors wrap the
handler of an event that passed every check. Dependencies are made as each
guard, interceptor and the handler needs them, and torn down when the event
is over (its reply computed, or its error caught, or its task cancelled).
The pipeline never lets an exception escape to the transport: whatever
goes wrong becomes the contract's error object, and the connection stays
open.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, NamedTuple

from pydantic import ValidationError

from wsgate.core.context import Context
from wsgate.core.dependencies import Plan
from wsgate.core.fanout import to_wire
from wsgate.core.interceptors import CallNext
from wsgate.core.metadata import ExceptionFilter, Guard
from wsgate.core.registry import HandlerSpec
from wsgate.core.resolution import Resolution
from wsgate.errors import BadRequest, Forbidden, GatewayError, InternalError

log = logging.getLogger("wsgate.pipeline")


class Reply(NamedTuple):
    """What an event answers: ack data, or the contract's error object when ``failed``."""

    data: Any
    failed: bool


async def run_event(spec: HandlerSpec, ctx: Context, payload: Any) -> Reply:
    """Run one event: its ack data, or an error object when anything failed."""
    try:
        check_roles(ctx, spec.public, spec.roles)
        if spec.body is None:
            if spec.plan is not None:
                return Reply(await run_planned(spec, spec.plan, ctx), False)
            await run_guards(ctx, spec.guards)
            result = await spec.call(ctx)
        else:
            ctx.body = validate_body(spec, payload)
            if spec.plan is not None:
                return Reply(await run_planned(spec, spec.plan, ctx), False)
            await run_guards(ctx, spec.guards)
            result = await spec.call(ctx, ctx.body)
        return Reply(to_wire(result), False)
    except Exception as exc:
        return Reply(await apply_filters(exc, ctx, spec.filters), True)


async def run_planned(spec: HandlerSpec, plan: Plan, ctx: Context) -> Any:
    """Guards, then interceptors around the handler, with their dependencies; the wire data.

    The result is converted for the wire before the teardowns run, so a
    value that reads from an event-scoped resource (a database session) is
    read while that resource is open. A provider that fails is an error of
    the event (filtered: a 500, or the ``GatewayError`` it raised), not a
    guard's denial.
    """
    resolution = Resolution(plan.compiled, ctx)
    guards = len(spec.guards)
    handler = guards + len(spec.interceptors)
    try:
        consumers = resolution.compiled.consumers
        for index in range(guards):
            await judge(ctx, consumers[index].call, await resolution.arguments(index))
        if handler == guards:  # no interceptor: the handler, without a chain
            consumer = consumers[handler]
            if resolution.done < consumer.upto:
                await resolution.run_until(consumer.upto)
            kwargs = resolution.collect(consumer.args) if consumer.args else _NONE
            result = await consumer.call(ctx, **kwargs)
        else:
            result = await _Chain(resolution, handler).run(guards)
        data = to_wire(result)
    except BaseException as exc:
        if resolution.tears_down:
            await resolution.close(exc)
        raise
    if resolution.tears_down:
        await resolution.close()
    return data


class _Chain:
    """Interceptors around the handler: ``call_next`` of position ``i`` runs position ``i + 1``.

    An object rather than nested closures: a closure that refers to itself
    is a reference cycle, left for the garbage collector on every event.
    """

    __slots__ = ("handler", "resolution")

    def __init__(self, resolution: Resolution, handler: int) -> None:
        self.resolution = resolution
        self.handler = handler

    async def run(self, index: int) -> Any:
        resolution = self.resolution
        consumer = resolution.compiled.consumers[index]
        if resolution.done < consumer.upto:
            await resolution.run_until(consumer.upto)
        kwargs = resolution.collect(consumer.args) if consumer.args else _NONE
        if index == self.handler:
            return await consumer.call(resolution.ctx, **kwargs)
        call_next: CallNext = functools.partial(self.run, index + 1)
        return await consumer.call(resolution.ctx, call_next, **kwargs)


_NONE: dict[str, Any] = {}


def check_roles(ctx: Context, public: bool, required_roles: tuple[str, ...]) -> None:
    """Deny unless every required role is held; ``public`` skips this check only.

    The token itself was verified at connect; expiry and revocation end the
    connection rather than failing events one by one.
    """
    if not public and required_roles and not ctx.principal.has_roles(*required_roles):
        raise Forbidden("Missing required role")


async def run_guards(ctx: Context, guards: tuple[Guard, ...]) -> None:
    """Deny unless every guard answers exactly ``True`` (default deny).

    A guard that raises a :class:`GatewayError` chooses the answer; any other
    exception denies with a 403 and goes to the log, never to the client.
    """
    for guard in guards:
        await judge(ctx, guard)


async def judge(ctx: Context, guard: Guard, kwargs: dict[str, Any] | None = None) -> None:
    """One guard's verdict: only ``True`` lets the event through."""
    try:
        verdict = guard(ctx, **kwargs) if kwargs else guard(ctx)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except GatewayError:
        raise
    except Exception:
        log.exception("guard %r raised; denying", getattr(guard, "__name__", guard))
        raise Forbidden() from None
    if verdict is not True:
        raise Forbidden()


def validate_body(spec: HandlerSpec, payload: Any) -> Any:
    """The handler's body, built from its type hint; a 400 naming each bad field otherwise."""
    assert spec.body is not None
    try:
        return spec.body.validate_python(payload)
    except ValidationError as exc:
        raise BadRequest(fields=describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> dict[str, str]:
    """``{"field.path": "reason"}`` for the client; input values are never echoed back."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        path = ".".join(str(part) for part in error["loc"]) or "body"
        fields.setdefault(path, error["msg"])
    return fields


async def apply_filters(
    exc: BaseException, ctx: Context, filters: tuple[ExceptionFilter, ...]
) -> dict[str, Any]:
    """The contract's error object for ``exc``: the first filter that answers wins.

    A filter answers with a :class:`GatewayError` (sync or async); its
    ``to_payload()`` is what goes on the wire, so no filter can put a trace,
    a raw dict or a status outside 400-599 in front of a client. A filter
    that raises or returns anything else is logged and skipped.
    """
    for exception_filter in filters:
        name = getattr(exception_filter, "__name__", repr(exception_filter))
        try:
            answer = exception_filter(exc, ctx)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception:
            log.exception("exception filter %s raised; trying the next one", name)
            continue
        if answer is None:
            continue
        if isinstance(answer, GatewayError):
            return answer.to_payload()
        log.error(
            "exception filter %s returned %s, not a GatewayError or None; ignored",
            name,
            type(answer).__name__,
        )
    return default_filter(exc, ctx)


def default_filter(exc: BaseException, ctx: Context) -> dict[str, Any]:
    """Known errors as they are; anything else a generic 500, its details in the log only."""
    if isinstance(exc, GatewayError):
        return exc.to_payload()
    log.error(
        "handler for %r crashed (conn_id=%s sub=%s)",
        ctx.event,
        ctx.id,
        ctx.sub,
        exc_info=exc,
    )
    return InternalError().to_payload()
