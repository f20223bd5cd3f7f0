"""wsgate: realtime gateways (Socket.IO and plain WebSocket) that are secure by default.

Declare a :class:`Gateway` with ``@subscribe`` handlers, wrap it in an
:class:`App`, and every connection and event passes the origin policy, token
verification, guards, validation and error filtering.
"""

from wsgate.app import App
from wsgate.core.context import Context
from wsgate.core.gateway import Gateway
from wsgate.core.handshake import Handshake
from wsgate.core.metadata import (
    ExceptionFilter,
    Guard,
    public,
    roles,
    subscribe,
    use_filters,
    use_guards,
)
from wsgate.core.server import Server
from wsgate.errors import (
    BadRequest,
    ConfigurationError,
    ConnectionRefused,
    Forbidden,
    GatewayError,
    InternalError,
    NotFound,
    PayloadTooLarge,
    TokenError,
    TooManyRequests,
    Unauthorized,
    WsgateError,
)
from wsgate.principal import Principal
from wsgate.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "App",
    "BadRequest",
    "ConfigurationError",
    "ConnectionRefused",
    "Context",
    "ExceptionFilter",
    "Forbidden",
    "Gateway",
    "GatewayError",
    "Guard",
    "Handshake",
    "InternalError",
    "NotFound",
    "PayloadTooLarge",
    "Principal",
    "Server",
    "Settings",
    "TokenError",
    "TooManyRequests",
    "Unauthorized",
    "WsgateError",
    "__version__",
    "public",
    "roles",
    "subscribe",
    "use_filters",
    "use_guards",
]
