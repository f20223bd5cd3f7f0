"""A websocket client made of a bare TCP socket, for tests that must control its buffers.

Library clients read whatever arrives into their own queues; a test of a
client that does not read (or reads late) needs a socket whose receive
buffer is small and that reads only when told to.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct


def masked_text_frame(text: str) -> bytes:
    """One client-to-server websocket text frame (masked, as RFC 6455 requires)."""
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def open_raw_websocket(
    port: int, target: str, headers: dict[str, str] | None = None, rcvbuf: int = 4096
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Upgrade a socket with a ``rcvbuf``-byte receive buffer; returns its streams after the 101."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=max(rcvbuf, 65536))
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    writer.write(
        (
            f"GET {target} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        writer.transport.abort()
        raise ConnectionError(head.decode(errors="replace"))
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next server-to-client frame (unmasked, unfragmented): its opcode and payload."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)
