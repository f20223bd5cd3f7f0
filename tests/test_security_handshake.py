"""Handshake attacks against a real server: origins, token sources and JWT rules.

Each test opens a real connection from a real client on 127.0.0.1 and runs
on every transport (the ``transport`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from clients import Refused, connect
from support import SECRET, free_port, make_token, serve, settings_for
from wsgate import App
from wsgate.demo.gateways import Admin, Chat


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    port = free_port()
    async with serve(App([Chat(), Admin()], settings_for(port)), port) as url:
        yield url


def own_origin(url: str) -> dict[str, str]:
    return {"Origin": url}


async def expect_refused(
    transport: str, url: str, code: str | None = None, **kwargs: object
) -> Refused:
    with pytest.raises(Refused) as caught:
        async with connect(transport, url, **kwargs):
            pass
    if code is not None:
        assert caught.value.code == code, caught.value
    return caught.value


# -- origin policy ------------------------------------------------------------------------


async def test_allowed_origin_with_valid_token_connects(transport: str, base_url: str) -> None:
    async with connect(transport, base_url, token=make_token(), headers=own_origin(base_url)) as c:
        assert await c.call("whoami") == {"sub": "alice", "roles": []}


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "http://127.0.0.1:{port}.evil.example",
        "http://127.0.0.1.evil.example:{port}",
        "https://127.0.0.1:{port}",
        "http://127.0.0.1:{port}@evil.example",
        "http://127.0.0.1:1{port}",
        "http://localhost:{port}",
    ],
)
async def test_disallowed_and_lookalike_origins_are_refused(
    transport: str, base_url: str, origin: str
) -> None:
    port = base_url.rsplit(":", 1)[1]
    await expect_refused(
        transport, base_url, token=make_token(), headers={"Origin": origin.format(port=port)}
    )


async def test_cross_site_hijack_with_valid_cookie_is_refused(
    transport: str, base_url: str
) -> None:
    """CSWSH: the browser attaches the victim's cookie to a socket opened by evil.example."""
    cookie = f"access_token={make_token()}"
    await expect_refused(
        transport, base_url, headers={"Origin": "https://evil.example", "Cookie": cookie}
    )
    # The same cookie from our own origin is fine: the origin made the difference.
    async with connect(
        transport, base_url, headers={**own_origin(base_url), "Cookie": cookie}
    ) as c:
        assert (await c.call("whoami"))["sub"] == "alice"


@pytest.mark.parametrize("kind", ["polling", "websocket"])
async def test_engineio_handshake_with_bad_origin_gets_http_403(base_url: str, kind: str) -> None:
    """The refusal happens before Engine.IO sees the request, on both of its transports."""
    headers = {"Origin": "https://evil.example", "Cookie": f"access_token={make_token()}"}
    async with httpx.AsyncClient() as http:
        if kind == "polling":
            resp = await http.get(f"{base_url}/socket.io/?EIO=4&transport=polling", headers=headers)
        else:
            resp = await http.get(
                f"{base_url}/socket.io/?EIO=4&transport=websocket",
                headers={
                    **headers,
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            )
    assert resp.status_code == 403
    assert "access-control-allow-origin" not in resp.headers
    assert "access-control-allow-credentials" not in resp.headers


async def test_polling_cors_headers_only_for_allowed_origin(base_url: str) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{base_url}/socket.io/?EIO=4&transport=polling", headers=own_origin(base_url)
        )
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == base_url
    assert resp.headers["access-control-allow-credentials"] == "true"


async def polling_connect(base_url: str, auth: object, headers: dict[str, str]) -> str:
    """Engine.IO long-polling by hand (python-socketio's client takes ~30 s to close one)."""
    endpoint = f"{base_url}/socket.io/?EIO=4&transport=polling"
    async with httpx.AsyncClient(headers=headers, timeout=5) as http:
        opened = await http.get(endpoint)
        assert opened.status_code == 200 and opened.text.startswith("0")
        sid = json.loads(opened.text[1:])["sid"]
        body = "40" + (json.dumps(auth) if auth is not None else "")
        sent = await http.post(f"{endpoint}&sid={sid}", content=body)
        assert sent.status_code == 200
        answer = await http.get(f"{endpoint}&sid={sid}")
        return answer.text


async def test_polling_transport_is_also_authenticated(base_url: str) -> None:
    refused = await polling_connect(base_url, None, own_origin(base_url))
    assert refused.startswith("44") and '"code": "unauthorized"' in refused.replace('":"', '": "')
    accepted = await polling_connect(base_url, {"token": make_token()}, own_origin(base_url))
    assert accepted.startswith("40") and '"sid"' in accepted


async def test_missing_origin_needs_a_valid_token(transport: str, base_url: str) -> None:
    await expect_refused(transport, base_url, "unauthorized")
    async with connect(transport, base_url, token=make_token()) as c:
        assert await c.call("ping") == "pong"


# -- token sources ------------------------------------------------------------------------


async def test_bearer_header_is_a_token_source(transport: str, base_url: str) -> None:
    headers = {"Authorization": f"Bearer {make_token(sub='bob')}"}
    async with connect(transport, base_url, headers=headers) as c:
        assert (await c.call("whoami"))["sub"] == "bob"


async def test_first_present_source_is_judged_not_replaced(transport: str, base_url: str) -> None:
    """An invalid Bearer header is refused even though a valid cookie follows it."""
    headers = {"Authorization": "Bearer not-a-jwt", "Cookie": f"access_token={make_token()}"}
    await expect_refused(transport, base_url, "unauthorized", headers=headers)


async def test_auth_object_wins_over_cookie(base_url: str) -> None:
    headers = {"Cookie": f"access_token={make_token(sub='cookie-user')}"}
    async with connect(
        "socketio", base_url, token=make_token(sub="auth-user"), headers=headers
    ) as c:
        assert (await c.call("whoami"))["sub"] == "auth-user"
    await expect_refused(
        "socketio", base_url, "unauthorized", auth={"token": "bad"}, headers=headers
    )


async def test_query_string_token_is_refused_by_default(base_url: str) -> None:
    url = f"{base_url}?token={make_token()}"
    await expect_refused("socketio", url, "unauthorized")


async def test_query_string_token_accepted_only_when_enabled() -> None:
    port = free_port()
    async with serve(App([Chat()], settings_for(port, allow_query_token=True)), port) as url:
        async with connect("socketio", f"{url}?token={make_token()}") as c:
            assert await c.call("ping") == "pong"


# -- JWT rules ------------------------------------------------------------------------------


def _unsigned(claims: dict[str, object]) -> str:
    return jwt.encode(claims, key=None, algorithm="none", headers={"typ": "at+jwt"})


@pytest.mark.parametrize(
    ("label", "token_factory", "code"),
    [
        (
            "alg none",
            lambda: _unsigned({"sub": "mallory", "exp": int(time.time()) + 300, "jti": "x"}),
            "unauthorized",
        ),
        (
            "bad signature",
            lambda: make_token(secret="another-secret-that-is-long-enough-000000"),
            "unauthorized",
        ),
        ("expired", lambda: make_token(ttl=-30), "token_expired"),
        ("not yet valid", lambda: make_token(nbf=int(time.time()) + 600), "unauthorized"),
        ("issued in the future", lambda: make_token(iat=int(time.time()) + 600), "unauthorized"),
        ("missing sub", lambda: make_token(sub=None), "unauthorized"),  # type: ignore[arg-type]
        ("missing exp", lambda: make_token(exp=None), "unauthorized"),
        ("roles as a string", lambda: make_token(roles="admin"), "unauthorized"),  # type: ignore[arg-type]
        (
            "refresh token as access",
            lambda: make_token(token_use="refresh", headers={"typ": "refresh+jwt"}),
            "unauthorized",
        ),
        ("HS512 not allowed", lambda: make_token(algorithm="HS512"), "unauthorized"),
    ],
)
async def test_bad_tokens_are_refused(
    transport: str, base_url: str, label: str, token_factory: object, code: str
) -> None:
    token = token_factory()  # type: ignore[operator]
    refusal = await expect_refused(transport, base_url, code, token=token)
    assert token not in str(refusal.detail)


async def test_refusal_never_echoes_token_or_secret(base_url: str) -> None:
    token = make_token(secret="x" * 40)
    refusal = await expect_refused("socketio", base_url, "unauthorized", token=token)
    text = str(refusal.detail)
    assert token not in text and SECRET not in text and "Traceback" not in text


async def test_alg_confusion_public_key_as_hmac_secret(transport: str, tmp_path: Path) -> None:
    """With an RSA key configured, an HS256 token signed with the public PEM is refused."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem_file = tmp_path / "pub.pem"
    pem_file.write_bytes(pem)
    port = free_port()
    settings = settings_for(port, jwt_secret=None, jwt_public_key_file=pem_file)
    async with serve(App([Chat()], settings), port) as url:
        now = int(time.time())
        claims = {"sub": "mallory", "exp": now + 300, "iat": now, "jti": "j", "roles": ["admin"]}
        forged = _hmac_with_pem(claims, pem)
        await expect_refused(transport, url, "unauthorized", token=forged)
        good = jwt.encode(claims, key, algorithm="RS256", headers={"typ": "at+jwt"})
        async with connect(transport, url, token=good) as c:
            assert (await c.call("whoami"))["sub"] == "mallory"


def _hmac_with_pem(claims: dict[str, object], pem: bytes) -> str:
    """Sign by hand: PyJWT itself refuses to use a PEM as an HMAC key (which is the point)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


async def test_issuer_and_audience_required_when_configured(transport: str) -> None:
    port = free_port()
    settings = settings_for(port, jwt_issuer="https://idp.example", jwt_audience="chat")
    async with serve(App([Chat()], settings), port) as url:
        await expect_refused(transport, url, "unauthorized", token=make_token())
        await expect_refused(
            transport, url, "unauthorized", token=make_token(iss="https://evil.example", aud="chat")
        )
        good = make_token(iss="https://idp.example", aud="chat")
        async with connect(transport, url, token=good) as c:
            assert await c.call("ping") == "pong"


async def test_leeway_accepts_small_clock_skew_only(transport: str) -> None:
    port = free_port()
    async with serve(App([Chat()], settings_for(port, jwt_leeway=30)), port) as url:
        async with connect(transport, url, token=make_token(ttl=-10)) as c:
            assert await c.call("ping") == "pong"
        await expect_refused(transport, url, "token_expired", token=make_token(ttl=-120))
