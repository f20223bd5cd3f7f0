"""Typed calls as a user writes them: must pass ``mypy --strict``."""

from __future__ import annotations

from wsgate.demo.gateways import (
    Chat,
    Delivered,
    Joined,
    Message,
    RoomBody,
    SayBody,
    TextBody,
    Whoami,
)
from wsgate.testing import AppClient
from wsgate.typed_client import RemoteError, TypedClient


async def chat(client: AppClient) -> list[str]:
    async with client.socketio(sub="alice") as sio:
        typed = TypedClient(sio)
        echoed: TextBody = await typed.call(Chat.echo, TextBody(text="hi"))
        who: Whoami = await typed.call(Chat.whoami)
        pong: str = await typed.call(Chat.ping)
        joined: Joined = await typed.call(Chat.join, RoomBody(room="lobby"))
        said: Delivered = await typed.call(Chat.say, SayBody(room="lobby", text="hello"))
        message: Message = await typed.next_push("message", Message)
        try:
            await typed.call(Chat.broadcast, TextBody(text="not an admin"))
        except RemoteError as error:
            code: str = error.code
            status: int = error.status
            return [echoed.text, who["sub"], pong, joined["room"], str(said["delivered"]),
                    message["from"], code, str(status)]  # fmt: skip
    return []
