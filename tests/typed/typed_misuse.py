"""Misuses: ``mypy --strict`` reports exactly the lines marked ``expect-error``."""

from __future__ import annotations

from wsgate.demo.gateways import Chat, RoomBody, TextBody
from wsgate.testing import AppClient
from wsgate.typed_client import TypedClient


async def misuse(client: AppClient) -> None:
    async with client.socketio(sub="alice") as sio:
        typed = TypedClient(sio)
        await typed.call(Chat.echo, RoomBody(room="lobby"))  # expect-error
        await typed.call(Chat.echo, {"text": "a dict is not a TextBody"})  # expect-error
        await typed.call(Chat.echo)  # expect-error
        await typed.call(Chat.whoami, TextBody(text="takes no body"))  # expect-error
        room: int = (await typed.call(Chat.join, RoomBody(room="x")))["room"]  # expect-error
        text: int = (await typed.call(Chat.echo, TextBody(text="x"))).text  # expect-error
        await typed.call(len)  # expect-error
        print(room, text)
