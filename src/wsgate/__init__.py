"""wsgate: realtime gateways (Socket.IO and plain WebSocket) that are secure by default.

Declare a :class:`Gateway` with ``@subscribe`` handlers, wrap it in an
:class:`App`, and every connection and event passes the origin policy, token
verification, guards, validation and error filtering.

Everything an application needs is exported here (``__all__``); modules
whose names are not listed are internal. Test helpers are in
:mod:`wsgate.testing`.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from wsgate.app import App
from wsgate.assembly import token_issuer
from wsgate.audit import configure_logging
from wsgate.codes import CloseReason, Code
from wsgate.core.admission import Verifier
from wsgate.core.context import Context
from wsgate.core.dependencies import DependencyOverrides, Depends
from wsgate.core.gateway import Gateway
from wsgate.core.handshake import Handshake
from wsgate.core.interceptors import CallNext, Interceptor, use_interceptors
from wsgate.core.metadata import (
    ExceptionFilter,
    Guard,
    public,
    roles,
    subscribe,
    use_filters,
    use_guards,
)
from wsgate.core.pushes import emits
from wsgate.core.remote import ClusterAnswer, ConnectionInfo
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
    StartupError,
    TokenError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    WsgateError,
)
from wsgate.principal import Principal
from wsgate.security.jwt import TokenIssuer
from wsgate.security.login_throttle import LoginThrottle, Throttled
from wsgate.security.login_throttle import check_limit as check_rate_limit
from wsgate.serving import run
from wsgate.settings import Settings
from wsgate.stores import (
    MemoryRevocationStore,
    RedisRevocationStore,
    RevocationStore,
    SqliteRevocationStore,
    StoreUnavailable,
)

try:
    __version__ = _version("wsgate")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "App",
    "BadRequest",
    "CallNext",
    "CloseReason",
    "ClusterAnswer",
    "Code",
    "ConfigurationError",
    "ConnectionInfo",
    "ConnectionRefused",
    "Context",
    "DependencyOverrides",
    "Depends",
    "ExceptionFilter",
    "Forbidden",
    "Gateway",
    "GatewayError",
    "Guard",
    "Handshake",
    "Interceptor",
    "InternalError",
    "LoginThrottle",
    "MemoryRevocationStore",
    "NotFound",
    "PayloadTooLarge",
    "Principal",
    "RedisRevocationStore",
    "RevocationStore",
    "Server",
    "Settings",
    "SqliteRevocationStore",
    "StartupError",
    "StoreUnavailable",
    "Throttled",
    "TokenError",
    "TokenIssuer",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Verifier",
    "WsgateError",
    "__version__",
    "check_rate_limit",
    "configure_logging",
    "emits",
    "public",
    "roles",
    "run",
    "subscribe",
    "token_issuer",
    "use_filters",
    "use_guards",
    "use_interceptors",
]
