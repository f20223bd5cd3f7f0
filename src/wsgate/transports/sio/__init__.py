"""Socket.IO v5 on wsgate's own Engine.IO server (see :mod:`.server`)."""

from wsgate.transports.sio.server import (
    Client,
    ClientState,
    Socket,
    SocketConfig,
    SocketHandler,
    SocketServer,
)

__all__ = ["Client", "ClientState", "Socket", "SocketConfig", "SocketHandler", "SocketServer"]
