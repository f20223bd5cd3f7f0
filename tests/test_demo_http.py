"""The demo's HTTP side against a real server: login cookies, refresh, logout, health, CORS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from clients import Refused, connect
from support import demo_settings_for, free_port, serve
from wsgate.demo.app import create_app
from wsgate.stores import UserStore

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    database = tmp_path / "demo.db"
    users = UserStore(database)
    await users.add("alice", PASSWORD)
    await users.add("root", PASSWORD, ["admin"])
    await users.aclose()
    port = free_port()
    async with serve(create_app(demo_settings_for(port, database=database)), port) as url:
        yield url


async def login(http: httpx.AsyncClient, url: str, user: str = "alice") -> httpx.Response:
    return await http.post(
        f"{url}/auth/login", json={"username": user, "password": PASSWORD}, headers={"Origin": url}
    )


def set_cookies(response: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


async def test_login_sets_httponly_samesite_cookies(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        resp = await login(http, demo)
    assert resp.status_code == 200
    body = resp.json()
    assert body["sub"] == "alice" and body["roles"] == [] and body["expires_at"] > 0
    cookies = set_cookies(resp)
    access, refresh = cookies["access_token"], cookies["refresh_token"]
    assert "HttpOnly" in access and "SameSite=Lax" in access
    assert "Path=/" in access and "Secure" not in access
    assert "HttpOnly" in refresh and "Path=/auth" in refresh and "SameSite=Lax" in refresh


async def test_secure_cookies_flag(tmp_path: Path) -> None:
    port = free_port()
    app = create_app(demo_settings_for(port, database=tmp_path / "d.db", secure_cookies=True))
    users = UserStore(tmp_path / "d.db")
    await users.add("alice", PASSWORD)
    await users.aclose()
    async with serve(app, port) as url, httpx.AsyncClient() as http:
        resp = await login(http, url)
    assert all("Secure" in c for c in set_cookies(resp).values())


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "wrong"), ("nobody", PASSWORD), ("nobody", "wrong")]
)
async def test_bad_credentials_get_one_and_the_same_401(
    demo: str, user: str, password: str
) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{demo}/auth/login", json={"username": user, "password": password})
    assert resp.status_code == 401
    assert resp.json() == {
        "error": {"status": 401, "code": "unauthorized", "message": "Invalid username or password"}
    }
    assert "set-cookie" not in resp.headers


@pytest.mark.parametrize("body", [b"", b"not json", b'{"username": 1, "password": "x"}', b"[]"])
async def test_malformed_login_is_400(demo: str, body: bytes) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{demo}/auth/login", content=body)
    assert resp.status_code == 400


async def test_login_from_a_disallowed_origin_is_refused(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{demo}/auth/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"Origin": "https://evil.example"},
        )
    assert resp.status_code == 403
    assert "access-control-allow-origin" not in resp.headers


async def test_login_cookie_authenticates_the_socket(transport: str, demo: str) -> None:
    async with httpx.AsyncClient() as http:
        resp = await login(http, demo, "root")
    token = resp.cookies["access_token"]
    headers = {"Origin": demo, "Cookie": f"access_token={token}"}
    async with connect(transport, demo, headers=headers) as c:
        assert await c.call("whoami") == {"sub": "root", "roles": ["admin"]}
    async with connect(transport, demo, headers=headers, namespace="/admin") as c:
        assert await c.call("ping") == "pong"


async def test_refresh_issues_a_new_access_cookie_and_rotates(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        first = await login(http, demo)
        old_refresh = first.cookies["refresh_token"]
        refreshed = await http.post(
            f"{demo}/auth/refresh",
            headers={"Origin": demo, "Cookie": f"refresh_token={old_refresh}"},
        )
        assert refreshed.status_code == 200
        assert refreshed.json()["sub"] == "alice"
        assert "access_token" in set_cookies(refreshed)
        reused = await http.post(
            f"{demo}/auth/refresh", headers={"Cookie": f"refresh_token={old_refresh}"}
        )
        assert reused.status_code == 401  # a used refresh token is revoked


async def test_refresh_refuses_access_tokens_and_garbage(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        access = (await login(http, demo)).cookies["access_token"]
        for cookie in (f"refresh_token={access}", "refresh_token=garbage", ""):
            resp = await http.post(f"{demo}/auth/refresh", headers={"Cookie": cookie})
            assert resp.status_code == 401, cookie


async def test_access_cookie_cannot_be_a_refresh_token_the_other_way(
    transport: str, demo: str
) -> None:
    async with httpx.AsyncClient() as http:
        refresh = (await login(http, demo)).cookies["refresh_token"]
    with pytest.raises(Refused) as refused:
        async with connect(transport, demo, headers={"Cookie": f"access_token={refresh}"}):
            pass
    assert refused.value.code == "unauthorized"


async def test_logout_clears_cookies_and_revokes_the_token(transport: str, demo: str) -> None:
    async with httpx.AsyncClient() as http:
        token = (await login(http, demo)).cookies["access_token"]
        resp = await http.post(
            f"{demo}/auth/logout", headers={"Origin": demo, "Cookie": f"access_token={token}"}
        )
    assert resp.status_code == 200
    cleared = set_cookies(resp)
    assert 'access_token=""' in cleared["access_token"] or "Max-Age=0" in cleared["access_token"]
    with pytest.raises(Refused) as refused:
        async with connect(transport, demo, headers={"Cookie": f"access_token={token}"}):
            pass
    assert refused.value.code == "token_revoked"


async def test_health_metrics_and_page(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{demo}/healthz")).status_code == 200
        metrics = await http.get(f"{demo}/metrics")
        page = await http.get(f"{demo}/")
        script = await http.get(f"{demo}/static/socket.io.min.js")
    assert metrics.status_code == 200 and "wsgate_connections" in metrics.text
    assert page.status_code == 200 and "<form" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200


async def test_http_cors_only_for_allowed_origins(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        good = await http.get(f"{demo}/healthz", headers={"Origin": demo})
        bad = await http.get(f"{demo}/healthz", headers={"Origin": "https://evil.example"})
        preflight = await http.options(
            f"{demo}/auth/login",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert good.headers["access-control-allow-origin"] == demo
    assert good.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in bad.headers
    assert "access-control-allow-origin" not in preflight.headers


async def test_an_oversize_login_is_refused_without_reading_it_all(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        declared = await http.post(f"{demo}/auth/login", content=b"x" * 5000)

        async def endless() -> AsyncIterator[bytes]:
            for _ in range(10_000):  # 640 MB if the server read it all: it stops after 4 KiB
                yield b"y" * 65536

        streamed = await http.post(f"{demo}/auth/login", content=endless())
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "payload_too_large"
