"""The per-event pipeline: guards -> validation -> handler -> reply, inside exception filters.

The pipeline never lets an exception escape to the transport: whatever goes
wrong becomes the contract's error object, and the connection stays open.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from pydantic import ValidationError

from wsgate.core.context import Context
from wsgate.core.metadata import ExceptionFilter, Guard
from wsgate.core.registry import HandlerSpec
from wsgate.core.server import to_wire
from wsgate.errors import BadRequest, Forbidden, GatewayError, InternalError

log = logging.getLogger("wsgate.pipeline")


async def run_event(spec: HandlerSpec, ctx: Context, payload: Any) -> tuple[Any, bool]:
    """Run one event: ``(ack data, False)``, or ``(error object, True)`` when anything failed."""
    try:
        await check_guards(ctx, spec.public, spec.roles, spec.guards)
        if spec.body is None:
            result = await spec.call(ctx)
        else:
            result = await spec.call(ctx, validate_body(spec, payload))
        return to_wire(result), False
    except Exception as exc:
        return apply_filters(exc, ctx, spec.filters), True


async def check_guards(
    ctx: Context, public: bool, required_roles: tuple[str, ...], guards: tuple[Guard, ...]
) -> None:
    """Deny unless the roles are held and every guard says yes.

    The token itself was verified at connect; expiry and revocation end the
    connection rather than failing events one by one. ``public`` skips the
    role check but never a guard the developer attached explicitly.
    """
    if not public and required_roles and not ctx.principal.has_roles(*required_roles):
        raise Forbidden("Missing required role")
    for guard in guards:
        try:
            verdict = guard(ctx)
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


def apply_filters(exc: BaseException, ctx: Context, filters: tuple[ExceptionFilter, ...]) -> Any:
    """The first filter that answers wins; the default filter answers everything else."""
    for exception_filter in filters:
        try:
            answer = exception_filter(exc, ctx)
        except Exception:
            log.exception("exception filter %r raised", exception_filter)
            continue
        if answer is not None:
            return answer
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
