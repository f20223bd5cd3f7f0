"""wsgate inside an existing FastAPI app: one gateway, served over Socket.IO and /ws.

Run it (the key comes from the environment, as it would in production):

    WSGATE_JWT_SECRET=... WSGATE_PORT=8000 \\
        uvicorn --factory examples.fastapi_app:create_app --port 8000

The gateway then answers at ``/realtime/socket.io/`` (Socket.IO clients use
``socketio_path="/realtime/socket.io"``) and ``ws://HOST:8000/realtime/ws``,
next to FastAPI's own routes. Two things make a mounted App whole:

- ``app.mount("/realtime", realtime)``: the App reads the mount point from
  the ASGI ``root_path``, so its paths need no change.
- the App's lifespan entered from the host's lifespan: Starlette and FastAPI
  do not run the lifespan of mounted apps, and the App closes what it owns
  (the JWKS client, for one) when it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI
from pydantic import BaseModel, Field, StringConstraints

from wsgate import App, Context, Forbidden, Gateway, Settings, public, subscribe

RoomName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]


class Echo(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


class Room(BaseModel):
    room: RoomName


class Say(BaseModel):
    room: RoomName
    text: str = Field(min_length=1, max_length=1000)


class Chat(Gateway, namespace="/"):
    """The same class serves Socket.IO and plain WebSocket clients."""

    @public
    @subscribe("ping")
    async def ping(self, ctx: Context) -> str:
        return "pong"

    @subscribe("echo")
    async def echo(self, ctx: Context, body: Echo) -> Echo:
        return body

    @subscribe("join")
    async def join(self, ctx: Context, body: Room) -> dict[str, str]:
        await ctx.join(body.room)
        return {"room": body.room}

    @subscribe("say")
    async def say(self, ctx: Context, body: Say) -> dict[str, bool]:
        if body.room not in ctx.rooms:
            raise Forbidden("Join the room first")
        message = {"room": body.room, "from": ctx.sub, "text": body.text}
        await ctx.emit_to_room(body.room, "message", message)
        return {"delivered": True}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The host FastAPI app with wsgate mounted at ``/realtime``."""
    realtime = App([Chat()], settings or Settings())

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        async with realtime.lifespan():
            yield

    api = FastAPI(lifespan=lifespan)

    @api.get("/api/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    api.mount("/realtime", realtime)
    api.state.realtime = realtime
    return api
