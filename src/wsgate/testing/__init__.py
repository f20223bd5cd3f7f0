"""Test helpers for wsgate Apps: clients in memory, tokens from the App's own key.

::

    from wsgate.testing import AppClient

    async def test_echo() -> None:
        async with AppClient(app) as client:
            async with client.socketio(sub="alice") as sio:
                assert await sio.call("echo", {"text": "hi"}) == {"text": "hi"}
            async with client.websocket(sub="bob", roles=["admin"]) as ws:
                assert (await ws.call("whoami"))["sub"] == "bob"

The App runs in the test's own event loop, called through ASGI with its
lifespan: no port, no server process, no network. Tokens are signed with
the App's own key (its secret or private key), with the claims you choose.
A refused connection raises :class:`Refused` with the contract's code.
``AppClient(app, overrides={get_db: fake_db})`` replaces dependency
providers for the client's life (``app.dependency_overrides``, restored on
exit).

With pytest, ``pytest_plugins = ["wsgate.testing.pytest_plugin"]`` in your
``conftest.py`` gives a ``wsgate_client`` fixture for your ``wsgate_app``
fixture (see :mod:`wsgate.testing.pytest_plugin`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp

from wsgate.app import App
from wsgate.security.jwt import TokenIssuer
from wsgate.testing.asgi import AsgiWebSocket, Lifespan, Rejected
from wsgate.testing.clients import Refused, SocketIOTestClient, WebSocketTestClient

__all__ = ["AppClient", "Refused", "SocketIOTestClient", "WebSocketTestClient"]


class AppClient:
    """Connects test clients to ``app`` in memory, and mints its tokens.

    ``asgi`` is what to call when the App is mounted in another ASGI app
    (FastAPI, Starlette): pass the host app and the mount ``prefix``; tokens
    still come from ``app``.

    ``overrides`` (``{provider: replacement}``) replace dependency providers
    while the client is open: they are set in ``app.dependency_overrides``
    before the App starts and the previous entries are put back after it
    stopped, so connection-scoped fakes are torn down while still in place.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        *,
        asgi: ASGIApp | None = None,
        prefix: str = "",
        overrides: Mapping[Callable[..., Any], Callable[..., Any]] | None = None,
    ) -> None:
        self.app = app
        self._asgi: ASGIApp = asgi if asgi is not None else app
        self._prefix = prefix.rstrip("/")
        self._lifespan: Lifespan | None = None
        self._issuer: TokenIssuer | None = None
        self._overrides = dict(overrides or {})
        self._replaced: dict[Callable[..., Any], Callable[..., Any] | None] = {}

    async def __aenter__(self) -> AppClient:
        table = self.app.dependency_overrides
        for provider, replacement in self._overrides.items():
            self._replaced.setdefault(provider, table.get(provider))
            table[provider] = replacement
        try:
            self._lifespan = Lifespan(self._asgi)
            await self._lifespan.__aenter__()
        except BaseException:
            self._restore_overrides()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._lifespan is not None:
                await self._lifespan.__aexit__(*exc_info)
                self._lifespan = None
        finally:
            self._restore_overrides()

    def _restore_overrides(self) -> None:
        table = self.app.dependency_overrides
        for provider, previous in self._replaced.items():
            if previous is None:
                table.pop(provider, None)
            else:
                table[provider] = previous
        self._replaced = {}

    def token(
        self,
        sub: str = "alice",
        *,
        roles: Sequence[str] = (),
        ttl: float = 300,
        refresh: bool = False,
        **claims: Any,
    ) -> str:
        """A token the App accepts, signed with its own key; ``claims`` are added as they are."""
        if self._issuer is None:
            self._issuer = self.app.token_issuer()
        token, _ = self._issuer.issue(
            sub,
            roles=roles,
            ttl=ttl,
            use="refresh" if refresh else "access",
            extra_claims=claims,
        )
        return token

    @contextlib.asynccontextmanager
    async def socketio(
        self,
        *,
        sub: str | None = None,
        roles: Sequence[str] = (),
        token: str | None = None,
        auth: Any = None,
        namespace: str = "/",
        headers: Mapping[str, str] | None = None,
        client: tuple[str, int] = ("127.0.0.1", 50000),
    ) -> AsyncIterator[SocketIOTestClient]:
        """A Socket.IO client on ``namespace``: ``sub=`` mints a token; or ``token``, ``auth``."""
        if auth is None:
            token = token if token is not None else self._token_for(sub, roles)
            auth = {"token": token} if token is not None else None
        socket = self._socket(
            "/socket.io/", {"EIO": "4", "transport": "websocket"}, headers, client
        )
        await _open(socket)
        sio = SocketIOTestClient(socket, namespace)
        try:
            await sio.open(auth)
        except BaseException:
            await socket.close()
            raise
        try:
            yield sio
        finally:
            await sio.close()

    @contextlib.asynccontextmanager
    async def websocket(
        self,
        *,
        sub: str | None = None,
        roles: Sequence[str] = (),
        token: str | None = None,
        namespace: str = "/",
        bearer: bool = False,
        headers: Mapping[str, str] | None = None,
        client: tuple[str, int] = ("127.0.0.1", 50000),
    ) -> AsyncIterator[WebSocketTestClient]:
        """A ``/ws`` client: the token goes in the auth message, or as a Bearer header."""
        token = token if token is not None else self._token_for(sub, roles)
        all_headers = dict(headers or {})
        if bearer and token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        query = {"namespace": namespace} if namespace != "/" else {}
        socket = self._socket(self.app.settings.ws_path, query, all_headers, client)
        await _open(socket)
        ws = WebSocketTestClient(socket)
        try:
            await ws.open(token, header_auth=bearer or _has_token_header(all_headers))
        except BaseException:
            await socket.close()
            raise
        try:
            yield ws
        finally:
            await ws.close()

    def _token_for(self, sub: str | None, roles: Sequence[str]) -> str | None:
        return self.token(sub, roles=roles) if sub is not None else None

    def _socket(
        self,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str] | None,
        client: tuple[str, int],
    ) -> AsgiWebSocket:
        settings = self.app.settings
        return AsgiWebSocket(
            self._asgi,
            self._prefix + path,
            query=query,
            headers=list((headers or {}).items()),
            client=client,
            server=(settings.host, settings.port),
        )


async def _open(socket: AsgiWebSocket) -> None:
    try:
        await socket.connect()
    except Rejected:
        raise Refused("forbidden", "refused before the upgrade", 403) from None


def _has_token_header(headers: Mapping[str, str]) -> bool:
    names = {name.lower(): value for name, value in headers.items()}
    return "authorization" in names or "access_token=" in names.get("cookie", "")
