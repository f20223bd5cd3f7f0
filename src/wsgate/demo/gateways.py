"""The demo's two namespaces: the chat on ``/`` and the admins' ``/admin``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from typing_extensions import TypedDict  # pydantic describes typing's only from Python 3.12

from wsgate import ClusterAnswer, Context, Forbidden, Gateway, emits, public, roles, subscribe

RoomName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
Text = Annotated[str, Field(min_length=1, max_length=1000)]
Sub = Annotated[str, Field(min_length=1, max_length=256)]
ConnId = Annotated[str, Field(min_length=1, max_length=64)]


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
Notice = TypedDict("Notice", {"from": str, "text": str})


class Target(Body):
    """One user (every connection of theirs) or one connection, on any node."""

    sub: Sub | None = None
    conn: ConnId | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if (self.sub is None) == (self.conn is None):
            raise ValueError("give exactly one of sub and conn")
        return self


class NotifyBody(Target):
    text: Text


class Reach(TypedDict):
    """How many connections were reached, and the nodes that did not answer in time."""

    count: int
    missing: list[str]


class ConnectionEntry(TypedDict):
    id: str
    node: str
    namespace: str
    transport: str


class Connections(TypedDict):
    connections: list[ConnectionEntry]
    missing: list[str]


class UserBody(Body):
    sub: Sub


def reach(answer: ClusterAnswer) -> Reach:
    return {"count": answer.count, "missing": list(answer.missing)}


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
@emits("notice", Notice, description="A note from an admin to this user or this socket.")
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
    """Only tokens whose ``roles`` list holds ``admin`` may even connect here.

    The remote operations: they reach a user's connections on ``/`` on any
    node, and answer with the nodes that did not reply in time.
    """

    @subscribe("admin:notify")
    async def notify(self, ctx: Context, body: NotifyBody) -> Reach:
        """Event ``notice`` to every socket of ``sub`` on ``/``, or to one socket ``conn``."""
        notice: Notice = {"from": ctx.sub, "text": body.text}
        chat = ctx.server.of("/")
        if body.sub is not None:
            return reach(await chat.emit_to_user(body.sub, "notice", notice))
        assert body.conn is not None
        return reach(await chat.emit_to_connection(body.conn, "notice", notice))

    @subscribe("admin:kick")
    async def kick(self, ctx: Context, body: Target) -> Reach:
        """Disconnect every socket of ``sub`` (every namespace), or one socket ``conn``."""
        if body.sub is not None:
            return reach(await ctx.server.disconnect_user(body.sub))
        assert body.conn is not None
        return reach(await ctx.server.disconnect_connection(body.conn))

    @subscribe("admin:connections")
    async def connections(self, ctx: Context, body: UserBody) -> Connections:
        """The live sockets of ``sub`` on every node."""
        answer = await ctx.server.find_connections(body.sub)
        return {
            "connections": [
                {"id": c.id, "node": c.node, "namespace": c.namespace, "transport": c.transport}
                for c in answer.connections
            ],
            "missing": list(answer.missing),
        }
