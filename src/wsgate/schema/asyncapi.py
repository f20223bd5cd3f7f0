"""The AsyncAPI 3.0 document of an App: namespaces, events, schemas, security, transports.

How wsgate maps onto AsyncAPI (docs/asyncapi.md has the long form):

- one **channel** per namespace (``address`` is the namespace); on ``/ws``
  the namespace is the ``namespace`` query parameter (the ``ws`` binding);
- a client -> server event is a ``receive`` **operation** whose ``reply``
  lists the ack and the error object; a push is a ``send`` operation;
- the roles an event requires are ``x-wsgate-roles``, ``@public`` is
  ``x-wsgate-public``, a namespace's connect roles ``x-wsgate-connect-roles``;
- two **servers**, both RFC 6455 WebSocket (``protocol: ws``): Socket.IO v5
  at ``/socket.io/`` and wsgate's JSON frames at ``ws_path``
  (``x-wsgate-transport`` tells them apart; AsyncAPI has no Socket.IO
  protocol or binding);
- the token sources are **security schemes**: the Socket.IO ``auth`` object
  and ``/ws``'s first message (``http`` bearer schemes marked with
  ``x-wsgate-in``, as no AsyncAPI type describes a token in a message), the
  ``Authorization: Bearer`` header and the ``access_token`` cookie.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from wsgate.codes import REFUSAL_CODES
from wsgate.schema.builtins import ERROR_REPLY, READY, READY_EVENT, Schema, ref
from wsgate.schema.model import ApiDoc, EventDoc, NamespaceDoc, PushDoc, describe

if TYPE_CHECKING:
    from wsgate.app import App

ASYNCAPI_VERSION = "3.0.0"
SOCKETIO_SERVER = "socketio"
WEBSOCKET_SERVER = "websocket"

_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def asyncapi_document(
    app: App,
    *,
    title: str = "wsgate application",
    version: str = "0.0.0",
    description: str | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``app``'s gateways, as JSON-ready data.

    ``host`` (``name[:port]``) is where clients connect; the settings'
    ``host:port`` by default.
    """
    api = describe(app.namespaces)
    settings = app.settings
    if host is None:
        host = settings.own_origins()[0].removeprefix("http://")
    channel_ids = _channel_ids(api)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for ns in api.namespaces:
        cid = channel_ids[ns.namespace]
        channels[cid] = _channel(ns)
        operations.update(_operations(cid, ns))
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": description or _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": _servers(host, settings.ws_path, settings.allow_query_token),
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(api.schemas.items())),
            "securitySchemes": _security_schemes(settings.allow_query_token),
        },
    }


def asyncapi_json(app: App, **options: Any) -> bytes:
    """:func:`asyncapi_document` as indented JSON bytes."""
    return orjson.dumps(asyncapi_document(app, **options), option=orjson.OPT_INDENT_2)


_DESCRIPTION = (
    "Realtime gateways served by wsgate over Socket.IO and plain WebSocket. Every connection "
    "needs a valid JWT access token (see the security schemes); each event's ack is its "
    'result or an error object `{"error": {status, code, message, fields?}}`, and a '
    "failed event sent without an ack is pushed back as `exception`. A refused connection "
    'gets Socket.IO `connect_error` with data `{"code": C}` (on /ws: a close code).'
)


def _channel_ids(api: ApiDoc) -> dict[str, str]:
    """Readable, unique channel ids: ``/`` -> ``root``, ``/admin`` -> ``admin``."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for ns in api.namespaces:
        base = _SLUG.sub("_", ns.namespace.strip("/")) or "root"
        cid, n = base, 2
        while cid in taken:
            cid, n = f"{base}_{n}", n + 1
        taken.add(cid)
        ids[ns.namespace] = cid
    return ids


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) into this document."""
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _request_id(event: str) -> str:
    return "request:" + event


def _ack_id(event: str) -> str:
    return "ack:" + event


def _push_id(event: str) -> str:
    return "push:" + event


ERROR_MESSAGE = "error"


def _channel(ns: NamespaceDoc) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for event in ns.events:
        request: dict[str, Any] = {"name": event.event, "title": f"{event.event} (request)"}
        if event.description:
            request["summary"] = event.description
        if event.body is not None:
            request["payload"] = event.body
        else:
            request["description"] = "Takes no body; anything sent is ignored."
        messages[_request_id(event.event)] = request
        messages[_ack_id(event.event)] = {
            "name": event.event,
            "title": f"{event.event} (ack)",
            "payload": event.ack,
        }
    messages[ERROR_MESSAGE] = {
        "name": "error",
        "title": "Error reply",
        "summary": "The ack of a failed event.",
        "payload": ref(ERROR_REPLY),
    }
    for push in ns.pushes:
        message: dict[str, Any] = {"name": push.event, "title": f"{push.event} (push)"}
        if push.description:
            message["summary"] = push.description
        if push.payload is not None:
            message["payload"] = push.payload
        messages[_push_id(push.event)] = message
    messages[_push_id(READY_EVENT)] = {
        "name": READY_EVENT,
        "title": f"{READY_EVENT} (push, /ws only)",
        "summary": "/ws only: sent once, first, when the connection is authenticated.",
        "payload": ref(READY),
    }
    query: Schema = {
        "type": "object",
        "properties": {"namespace": {"type": "string", "const": ns.namespace}},
    }
    if ns.namespace != "/":
        query["required"] = ["namespace"]
    channel: dict[str, Any] = {
        "address": ns.namespace,
        "title": f"namespace {ns.namespace}",
        "messages": messages,
        "bindings": {"ws": {"method": "GET", "query": query, "bindingVersion": "0.1.0"}},
        "x-wsgate-connect-roles": list(ns.connect_roles),
        "x-wsgate-connect-guards": ns.connect_guards,
        "x-wsgate-refusal-codes": sorted(str(code) for code in REFUSAL_CODES),
    }
    if ns.description:
        channel["description"] = ns.description
    return channel


def _operations(cid: str, ns: NamespaceDoc) -> dict[str, Any]:
    channel = {"$ref": _pointer("channels", cid)}
    operations: dict[str, Any] = {}
    for event in ns.events:
        operations[f"{cid}.receive.{event.event}"] = _receive(cid, channel, event)
    for push in ns.pushes:
        operations[f"{cid}.send.{push.event}"] = _send(cid, channel, push)
    operations[f"{cid}.send.{READY_EVENT}"] = {
        "action": "send",
        "channel": channel,
        "messages": [{"$ref": _pointer("channels", cid, "messages", _push_id(READY_EVENT))}],
        "title": READY_EVENT,
        "summary": "/ws only: the connection is authenticated.",
        "x-wsgate-event": READY_EVENT,
        "x-wsgate-builtin": True,
        "x-wsgate-transports": [WEBSOCKET_SERVER],
    }
    return operations


def _receive(cid: str, channel: dict[str, str], event: EventDoc) -> dict[str, Any]:
    def message(mid: str) -> dict[str, str]:
        return {"$ref": _pointer("channels", cid, "messages", mid)}

    operation: dict[str, Any] = {
        "action": "receive",
        "channel": channel,
        "title": event.event,
        "messages": [message(_request_id(event.event))],
        "reply": {
            "channel": channel,
            "messages": [message(_ack_id(event.event)), message(ERROR_MESSAGE)],
        },
        "x-wsgate-event": event.event,
        "x-wsgate-public": event.public,
        "x-wsgate-roles": list(event.roles),
        "x-wsgate-guards": event.guards,
    }
    if event.description:
        operation["summary"] = event.description
    if event.builtin:
        operation["x-wsgate-builtin"] = True
    return operation


def _send(cid: str, channel: dict[str, str], push: PushDoc) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": "send",
        "channel": channel,
        "title": push.event,
        "messages": [{"$ref": _pointer("channels", cid, "messages", _push_id(push.event))}],
        "x-wsgate-event": push.event,
    }
    if push.description:
        operation["summary"] = push.description
    if push.builtin:
        operation["x-wsgate-builtin"] = True
    return operation


def _servers(host: str, ws_path: str, query_token: bool) -> dict[str, Any]:
    def schemes(*names: str) -> list[dict[str, str]]:
        return [{"$ref": _pointer("components", "securitySchemes", name)} for name in names]

    extra = ("queryToken",) if query_token else ()
    return {
        SOCKETIO_SERVER: {
            "host": host,
            "pathname": "/socket.io/",
            "protocol": "ws",
            "title": "Socket.IO",
            "description": (
                "Socket.IO v5 over Engine.IO v4 (websocket and HTTP long-polling). A namespace "
                "is a channel; events are acknowledged through Socket.IO acks."
            ),
            "security": schemes("socketioAuth", "bearerHeader", "accessTokenCookie", *extra),
            "x-wsgate-transport": "socket.io",
        },
        WEBSOCKET_SERVER: {
            "host": host,
            "pathname": ws_path,
            "protocol": "ws",
            "protocolVersion": "13",
            "title": "plain WebSocket (JSON frames)",
            "description": (
                'Client frames `{"id": n, "event": E, "data": D}`; replies `{"id": n, "data": '
                '...}` or `{"id": n, "error": {...}}`; pushes `{"event": E, "data": D}`. The '
                "namespace is the `namespace` query parameter (default `/`)."
            ),
            "security": schemes("bearerHeader", "accessTokenCookie", "wsAuthMessage", *extra),
            "x-wsgate-transport": "websocket",
        },
    }


def _security_schemes(query_token: bool) -> dict[str, Any]:
    jwt_in = (
        "A JWT access token (claims sub, exp, jti; roles a list of strings). The first "
        "source present is judged and an invalid token there is never replaced by another: "
    )
    schemes: dict[str, Any] = {
        "socketioAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": jwt_in + 'Socket.IO handshake `auth` object `{"token": "..."}` (first).',
            "x-wsgate-in": "socketio-auth",
        },
        "bearerHeader": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": jwt_in + "`Authorization: Bearer` header of the handshake request.",
        },
        "accessTokenCookie": {
            "type": "httpApiKey",
            "in": "cookie",
            "name": "access_token",
            "description": jwt_in + "the `access_token` cookie (last).",
        },
        "wsAuthMessage": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                jwt_in + '/ws: first message `{"type": "auth", "token": "..."}` when no header '
                "or cookie carried one, within the connect timeout."
            ),
            "x-wsgate-in": "first-message",
        },
    }
    if query_token:
        schemes["queryToken"] = {
            "type": "httpApiKey",
            "in": "query",
            "name": "token",
            "description": jwt_in + "`?token=` on the handshake (enabled: it leaks into logs).",
        }
    return schemes
