"""The demo with asymmetric keys: a private key to sign logins, or verify-only with a JWKS."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from clients import Refused, connect
from support import demo_settings_for, free_port, serve
from wsgate.demo.app import create_app
from wsgate.stores import UserStore

PASSWORD = "keys-test-password"


async def add_user(database: Path) -> None:
    users = UserStore(database)
    await users.add("alice", PASSWORD, ["admin"])
    await users.aclose()


def write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_rs256_demo_signs_logins_with_its_private_key(transport: str, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = write_pem(
        tmp_path / "private.pem",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    public = write_pem(
        tmp_path / "public.pem",
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    database = tmp_path / "rs.db"
    await add_user(database)
    port = free_port()
    settings = demo_settings_for(
        port, jwt_secret=None, jwt_public_key_file=public, jwt_private_key_file=private,
        database=database,
    )  # fmt: skip
    async with serve(create_app(settings), port) as url:
        async with httpx.AsyncClient() as http:
            resp = await http.post(
                f"{url}/auth/login", json={"username": "alice", "password": PASSWORD}
            )
        assert resp.status_code == 200
        token = resp.cookies["access_token"]
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
        async with connect(transport, url, headers={"Cookie": f"access_token={token}"}) as c:
            assert (await c.call("whoami"))["sub"] == "alice"
        # A token whose signature was tampered with is refused.
        with pytest.raises(Refused):
            async with connect(transport, url, token=token[:-4] + "AAAA"):
                pass


@pytest.fixture
async def jwks_server() -> AsyncIterator[tuple[str, ec.EllipticCurvePrivateKey]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "idp-key-1", "alg": "ES256", "use": "sig"})

    async def keys(request: object) -> JSONResponse:
        return JSONResponse({"keys": [jwk]})

    port = free_port()
    async with serve(Starlette(routes=[Route("/jwks.json", keys)]), port) as url:
        yield f"{url}/jwks.json", key


async def test_jwks_demo_verifies_idp_tokens_and_disables_login(
    transport: str, tmp_path: Path, jwks_server: tuple[str, ec.EllipticCurvePrivateKey]
) -> None:
    jwks_url, idp_key = jwks_server
    port = free_port()
    settings = demo_settings_for(
        port, jwt_secret=None, jwt_jwks_url=jwks_url, jwt_algorithms="ES256",
        database=tmp_path / "jwks.db",
    )  # fmt: skip
    async with serve(create_app(settings), port) as url:
        async with httpx.AsyncClient() as http:
            resp = await http.post(f"{url}/auth/login", json={"username": "a", "password": "b"})
        assert resp.status_code == 503
        now = int(time.time())
        claims = {"sub": "idp-user", "exp": now + 300, "iat": now, "jti": "j-1", "roles": []}
        token = jwt.encode(claims, idp_key, algorithm="ES256", headers={"kid": "idp-key-1"})
        async with connect(transport, url, token=token) as c:
            assert (await c.call("whoami"))["sub"] == "idp-user"
        unknown = jwt.encode(claims, idp_key, algorithm="ES256", headers={"kid": "nope"})
        with pytest.raises(Refused) as refused:
            async with connect(transport, url, token=unknown):
                pass
        assert refused.value.code == "unauthorized"
