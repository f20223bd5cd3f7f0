"""The demo's two namespaces: the chat on ``/`` and the admins' ``/admin``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import TypedDict  # pydantic describes typing's only from Python 3.12

from wsgate import Context, Forbidden, Gateway, emits, public, roles, subscribe

RoomName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
Text = Annotated[str, Field(min_length=1, max_length=1000)]


class Body(BaseModel):
    """Demo bodies take exactly their fields, in their declared types (no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class TextBody(Body):
    text: Text


class RoomBody(Body):
    room: RoomName


class SayBody(Body):
    room: RoomName
    text: Text


class Whoami(TypedDict):
    sub: str
    roles: list[str]


class Delivered(TypedDict):
    delivered: bool


class Joined(TypedDict):
    room: str


class Announcement(TypedDict):
    text: str


# "from" is a Python keyword, hence the functional form.
Message = TypedDict("Message", {"room": str, "from": str, "text": str})


@emits("announcement", Announcement, description="An admin's announcement, to every socket.")
class Basics(Gateway):
    """What both demo namespaces answer; subclasses choose the namespace."""

    @public
    @subscribe("ping")
    async def ping(self, ctx: Context) -> str:
        return "pong"

    @subscribe("whoami")
    async def whoami(self, ctx: Context) -> Whoami:
        return {"sub": ctx.sub, "roles": sorted(ctx.roles)}

    @roles("admin")
    @subscribe("admin:broadcast")
    async def broadcast(self, ctx: Context, body: TextBody) -> Delivered:
        """An announcement reaches every socket of ``/`` and of ``/admin``."""
        for namespace in ("/", "/admin"):
            announcement: Announcement = {"text": body.text}
            await ctx.server.emit("announcement", announcement, namespace=namespace)
        return {"delivered": True}


@emits("message", Message, description="A message said in a room this socket joined.")
class Chat(Basics, namespace="/"):
    """Any holder of a valid token may chat."""

    @subscribe("echo")
    async def echo(self, ctx: Context, body: TextBody) -> TextBody:
        return body

    @subscribe("join")
    async def join(self, ctx: Context, body: RoomBody) -> Joined:
        await ctx.join(body.room)
        return {"room": body.room}

    @subscribe("leave")
    async def leave(self, ctx: Context, body: RoomBody) -> Joined:
        await ctx.leave(body.room)
        return {"room": body.room}

    @subscribe("say")
    async def say(self, ctx: Context, body: SayBody) -> Delivered:
        if body.room not in ctx.rooms:
            raise Forbidden("Join the room first")
        message: Message = {"room": body.room, "from": ctx.sub, "text": body.text}
        await ctx.emit_to_room(body.room, "message", message)
        return {"delivered": True}


@roles("admin")
class Admin(Basics, namespace="/admin"):
    """Only tokens whose ``roles`` list holds ``admin`` may even connect here."""
