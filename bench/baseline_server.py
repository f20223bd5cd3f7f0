"""The benchmark baseline: a plain python-socketio + uvicorn server, written by hand.

Why it exists: issue 5 asks wsgate to cost (close to) nothing over what a
careful developer writes without it. This file is that developer's server:
the same events, the same checks and the same replies as ``wsgate demo``
(demo-contract.md), built only from python-socketio, PyJWT, pydantic and
uvicorn the idiomatic way, with no tricks that a typical app would not have.
Every ratio in bench/README.md is wsgate divided by this server.

What it does, like the demo:

- origin check on every request and transport, through python-engineio's
  ``cors_allowed_origins`` (it answers 400 where the demo answers 403; the
  work done is the same);
- token from the handshake ``auth`` object, else ``Authorization: Bearer``,
  else the ``access_token`` cookie; the first source present is judged;
- HS256 verification with PyJWT in ``connect``: ``sub``, ``exp`` and ``jti``
  required, header ``typ: at+jwt`` and claim ``token_use: access``, ``roles`` a
  list of strings; a refusal is ``ConnectionRefusedError(msg, {"code": ...})``;
- pydantic validation of ``echo``/``join``/``say`` bodies, replies by ack,
  errors as ``{"error": {"status", "code", "message"}}``;
- rooms: ``join`` and ``say`` (membership required), the room gets ``message``.

What it leaves out, on purpose, because a hand-written server usually does:
per-event rate limits, per-user connection caps, session expiry timers and
revocation. The README says so next to the figures.

Run: ``.venv/bin/python bench/baseline_server.py --host 127.0.0.1 --port 8001
--jwt-secret S --allowed-origins http://127.0.0.1:8001``.
"""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

import jwt
import socketio
import uvicorn
from pydantic import BaseModel, Field, ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("bench.baseline")

ROOM_PREFIX = "room:"
"""Client room names are prefixed so that they can never address a socket's own sid room."""


class EchoBody(BaseModel):
    """Body of ``echo`` (and the text part of ``say``): 1..1000 code points."""

    text: str = Field(min_length=1, max_length=1000)


class JoinBody(BaseModel):
    """Body of ``join``: a room name the client may choose."""

    room: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class SayBody(BaseModel):
    """Body of ``say``: a room the sender is in, and the text."""

    room: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    text: str = Field(min_length=1, max_length=1000)


def error(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The contract's error shape: data, never exception text."""
    return {"error": {"status": status, "code": code, "message": message, **extra}}


def bad_body(exc: ValidationError) -> dict[str, Any]:
    """A 400 with one reason per field, as the demo sends it."""
    fields = {".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()}
    return error(400, "bad_request", "invalid body", fields=fields)


def token_from(environ: dict[str, Any], auth: Any) -> str | None:
    """The first token source present, in the contract's order (auth, Bearer, cookie)."""
    if isinstance(auth, dict) and "token" in auth:
        token = auth["token"]
        return token if isinstance(token, str) else ""
    header = environ.get("HTTP_AUTHORIZATION")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    raw_cookie = environ.get("HTTP_COOKIE")
    if raw_cookie:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw_cookie)
        except CookieError:
            return ""
        morsel = jar.get("access_token")
        if morsel is not None:
            return morsel.value
    return None


def build_server(jwt_secret: str, allowed_origins: list[str]) -> socketio.AsyncServer:
    """Wire the events on a python-socketio AsyncServer, the way its docs show."""
    sio = socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins=allowed_origins,
        cors_credentials=True,
        max_http_buffer_size=65536,
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = token_from(environ, auth)
        if not token:
            raise socketio.exceptions.ConnectionRefusedError(
                "authentication required", {"code": "unauthorized"}
            )
        try:
            decoded = jwt.decode_complete(
                token,
                jwt_secret,
                algorithms=["HS256"],
                options={"require": ["sub", "exp", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise socketio.exceptions.ConnectionRefusedError(
                "token expired", {"code": "token_expired"}
            ) from None
        except jwt.PyJWTError:
            raise socketio.exceptions.ConnectionRefusedError(
                "invalid token", {"code": "unauthorized"}
            ) from None
        claims = decoded["payload"]
        roles = claims.get("roles", [])
        if (
            decoded["header"].get("typ") != "at+jwt"
            or claims.get("token_use") != "access"
            or not isinstance(claims["sub"], str)
            or not isinstance(roles, list)
            or not all(isinstance(r, str) for r in roles)
        ):
            raise socketio.exceptions.ConnectionRefusedError(
                "invalid token", {"code": "unauthorized"}
            )
        await sio.save_session(sid, {"sub": claims["sub"], "roles": roles})

    @sio.event
    async def ping(sid: str, data: Any = None) -> str:
        return "pong"

    @sio.event
    async def whoami(sid: str, data: Any = None) -> dict[str, Any]:
        session = await sio.get_session(sid)
        return {"sub": session["sub"], "roles": session["roles"]}

    @sio.event
    async def echo(sid: str, data: Any = None) -> dict[str, Any]:
        try:
            body = EchoBody.model_validate(data)
        except ValidationError as exc:
            return bad_body(exc)
        return body.model_dump()

    @sio.event
    async def join(sid: str, data: Any = None) -> dict[str, Any]:
        try:
            body = JoinBody.model_validate(data)
        except ValidationError as exc:
            return bad_body(exc)
        await sio.enter_room(sid, ROOM_PREFIX + body.room)
        return {"room": body.room}

    @sio.event
    async def say(sid: str, data: Any = None) -> dict[str, Any]:
        try:
            body = SayBody.model_validate(data)
        except ValidationError as exc:
            return bad_body(exc)
        room = ROOM_PREFIX + body.room
        if room not in sio.rooms(sid):
            return error(403, "forbidden", "not a member of this room")
        session = await sio.get_session(sid)
        await sio.emit(
            "message", {"room": body.room, "from": session["sub"], "text": body.text}, room=room
        )
        return {"delivered": True}

    @sio.on("*")
    async def unknown(event: str, sid: str, data: Any = None) -> dict[str, Any]:
        return error(404, "not_found", "unknown event")

    return sio


async def health_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /healthz`` for readiness polling; everything else is a 404."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    status = 200 if scope["path"] == "/healthz" else 404
    body = b"ok" if status == 200 else b"not found"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_app(jwt_secret: str, allowed_origins: list[str]) -> socketio.ASGIApp:
    """The ASGI app uvicorn serves: Socket.IO on /socket.io/, /healthz beside it."""
    return socketio.ASGIApp(build_server(jwt_secret, allowed_origins), other_asgi_app=health_app)


def main(argv: list[str] | None = None) -> None:
    """Parse the same flags as ``wsgate demo`` (the ones the bench uses) and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--jwt-secret", required=True)
    parser.add_argument(
        "--allowed-origins",
        default=None,
        help="comma list of exact origins (default: http://HOST:PORT)",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=0,
        help="experiment only (profile_baseline.md): gc.set_threshold(N, 20, 100) before "
        "serving; off by default so the baseline stays what a typical app runs",
    )
    args = parser.parse_args(argv)
    if args.gc_threshold > 0:
        gc.set_threshold(args.gc_threshold, 20, 100)
    origins = (
        [o.strip() for o in args.allowed_origins.split(",") if o.strip()]
        if args.allowed_origins
        else [f"http://{args.host}:{args.port}"]
    )
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(
        build_app(args.jwt_secret, origins),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
