"""JWKS: keys by kid from a real HTTP server on 127.0.0.1, fetched rarely, fail closed.

The server is a tiny aiohttp.web app that counts requests per path, so the
tests can check how many fetches an attack causes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from wsgate.errors import TokenError
from wsgate.security import jwks as jwks_module
from wsgate.security.jwt import JwtConfig, TokenVerifier

# --------------------------------------------------------------------------
# keys and tokens
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rsa_a() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa_b() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa_attacker() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def jwk(private: Any, kid: str | None, alg: str | None = "RS256", **extra: Any) -> dict[str, Any]:
    """The public JWK of ``private``."""
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        data["kid"] = kid
    if alg is not None:
        data["alg"] = alg
    data.update(extra)
    return data


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "roles": ["user"], "iat": now, "exp": now + 600, **extra}


def token(private: Any, kid: str | None, alg: str = "RS256", **headers: Any) -> str:
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(claims(), private, algorithm=alg, headers=headers or None)


# --------------------------------------------------------------------------
# the JWKS server
# --------------------------------------------------------------------------


class JwksServer:
    """Serves ``self.jwks`` at /jwks.json; behaviour switches for failure tests."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.hits: Counter[str] = Counter()
        self.status = 200
        self.delay = 0.0
        self.raw: bytes | None = None
        self.stream_bytes = 0  # > 0: chunked, valid JSON padded to that size, no length
        self.url = ""

    async def handle_jwks(self, request: web.Request) -> web.StreamResponse:
        self.hits["jwks"] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.stream_bytes:
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            # Valid JSON with good keys, so only the size cap can refuse it.
            document = json.dumps(self.jwks).encode()
            await response.write(document[:-1])
            chunk = b" " * 65536
            sent = len(document)
            while sent < self.stream_bytes:
                await response.write(chunk)
                sent += len(chunk)
            await response.write(document[-1:])
            await response.write_eof()
            return response
        if self.raw is not None:
            return web.Response(body=self.raw, status=self.status)
        return web.json_response(self.jwks, status=self.status)

    async def handle_other(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        return web.json_response({"keys": []})


@pytest.fixture
async def server() -> AsyncIterator[JwksServer]:
    srv = JwksServer()
    app = web.Application()
    app.router.add_get("/jwks.json", srv.handle_jwks)
    app.router.add_get("/{tail:.*}", srv.handle_other)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    port = sock.getsockname()[1]
    srv.url = f"http://127.0.0.1:{port}/jwks.json"
    try:
        yield srv
    finally:
        await runner.cleanup()


VerifierFactory = Callable[..., TokenVerifier]


@pytest.fixture
async def make_verifier(server: JwksServer) -> AsyncIterator[VerifierFactory]:
    """Verifiers against the test server; the verified-token cache is off by
    default so that every verify goes through key selection."""
    made: list[TokenVerifier] = []

    def make(**kw: Any) -> TokenVerifier:
        kw.setdefault("jwks_url", server.url)
        kw.setdefault("cache_size", 0)
        verifier = TokenVerifier(JwtConfig(**kw))
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


async def refused(call: Awaitable[Any]) -> TokenError:
    with pytest.raises(TokenError) as info:
        await call
    assert info.value.code == "unauthorized" and info.value.message == "Invalid token"
    return info.value


# --------------------------------------------------------------------------
# selection by kid
# --------------------------------------------------------------------------


async def test_key_chosen_by_kid_and_cached(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, rsa_b: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a"), jwk(rsa_b, "b")]}
    verifier = make_verifier()
    assert (await verifier.verify(token(rsa_a, "a"))).sub == "alice"
    assert (await verifier.verify(token(rsa_b, "b"))).sub == "alice"
    for _ in range(10):
        await verifier.verify(token(rsa_b, "b"))
    assert server.hits["jwks"] == 1
    # A token signed by key b but naming kid a does not verify.
    assert (await refused(verifier.verify(token(rsa_b, "a")))).reason == "bad_signature"


async def test_token_without_kid_needs_a_single_key(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, rsa_b: Any, ec_key: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    assert (await make_verifier().verify(token(rsa_a, None))).sub == "alice"
    server.jwks = {"keys": [jwk(rsa_a, "a"), jwk(rsa_b, "b")]}
    verifier = make_verifier()
    assert (await refused(verifier.verify(token(rsa_a, None)))).reason == "unknown_kid"
    # Two keys of different types: the alg would single one out, but a
    # kid-less token is still refused rather than guessed.
    server.jwks = {"keys": [jwk(rsa_a, "a"), jwk(ec_key, "e", alg="ES256")]}
    verifier = make_verifier(algorithms=("RS256", "ES256"))
    assert (await refused(verifier.verify(token(rsa_a, None)))).reason == "unknown_kid"
    assert (await verifier.verify(token(rsa_a, "a"))).sub == "alice"


async def test_random_kids_cause_at_most_one_fetch_per_interval(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, rsa_attacker: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    verifier = make_verifier(jwks_min_refresh_interval=10.0)
    for _ in range(50):
        err = await refused(verifier.verify(token(rsa_attacker, uuid.uuid4().hex)))
        assert err.reason == "unknown_kid"
    await asyncio.gather(
        *(refused(verifier.verify(token(rsa_attacker, uuid.uuid4().hex))) for _ in range(50))
    )
    assert server.hits["jwks"] == 1
    # The known key keeps working through the flood.
    assert (await verifier.verify(token(rsa_a, "a"))).sub == "alice"
    assert server.hits["jwks"] == 1


async def test_unknown_kid_refetches_after_the_interval(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, rsa_b: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    verifier = make_verifier(jwks_min_refresh_interval=0.3)
    await verifier.verify(token(rsa_a, "a"))
    # The issuer rotates in key b.
    server.jwks = {"keys": [jwk(rsa_a, "a"), jwk(rsa_b, "b")]}
    assert (await refused(verifier.verify(token(rsa_b, "b")))).reason == "unknown_kid"
    assert server.hits["jwks"] == 1
    await asyncio.sleep(0.35)
    assert (await verifier.verify(token(rsa_b, "b"))).sub == "alice"
    assert server.hits["jwks"] == 2
    # Right after a refetch, random kids again cost nothing.
    for _ in range(10):
        await refused(verifier.verify(token(rsa_b, uuid.uuid4().hex)))
    assert server.hits["jwks"] == 2


async def test_concurrent_verifications_share_one_fetch(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    server.delay = 0.2
    verifier = make_verifier()
    results = await asyncio.gather(*(verifier.verify(token(rsa_a, "a")) for _ in range(20)))
    assert {p.sub for p in results} == {"alice"}
    assert server.hits["jwks"] == 1


async def test_cancelled_caller_does_not_cancel_the_shared_fetch(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    server.delay = 0.2
    verifier = make_verifier()
    first = asyncio.create_task(verifier.verify(token(rsa_a, "a")))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(verifier.verify(token(rsa_a, "a")))
    await asyncio.sleep(0.01)
    first.cancel()
    assert (await second).sub == "alice"
    assert server.hits["jwks"] == 1


async def test_kid_known_for_another_algorithm_is_refused_without_refetch(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a", alg="RS256")]}
    verifier = make_verifier(algorithms=("RS256", "PS256"))
    err = await refused(verifier.verify(token(rsa_a, "a", alg="PS256")))
    assert err.reason == "bad_algorithm"
    assert server.hits["jwks"] == 1


async def test_key_without_alg_serves_each_allowed_algorithm_that_fits(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, ec_key: Any, ed_key: Any
) -> None:
    server.jwks = {
        "keys": [jwk(rsa_a, "r", alg=None), jwk(ec_key, "e", alg=None), jwk(ed_key, "d", alg=None)]
    }
    verifier = make_verifier(algorithms=("PS256", "ES256", "EdDSA"))
    assert (await verifier.verify(token(rsa_a, "r", alg="PS256"))).sub == "alice"
    assert (await verifier.verify(token(ec_key, "e", alg="ES256"))).sub == "alice"
    assert (await verifier.verify(token(ed_key, "d", alg="EdDSA"))).sub == "alice"
    # RS256 is not allowed even though the RSA key could do it.
    assert (await refused(verifier.verify(token(rsa_a, "r")))).reason == "bad_algorithm"


# --------------------------------------------------------------------------
# what is never trusted
# --------------------------------------------------------------------------


async def test_keys_outside_the_allowlist_are_not_used(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, ec_key: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "r"), jwk(ec_key, "e", alg="ES256")]}
    verifier = make_verifier(algorithms=("RS256",))
    # The header alg is refused first...
    assert (await refused(verifier.verify(token(ec_key, "e", "ES256")))).reason == "bad_algorithm"
    # ...and an RS256 header naming the EC key finds no usable key.
    assert (await refused(verifier.verify(token(rsa_a, "e")))).reason == "unknown_kid"


async def test_symmetric_jwks_key_and_hmac_tokens_are_refused(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any
) -> None:
    secret = b"s" * 64
    k = jwt.utils.base64url_encode(secret).decode()
    oct_key = {"kty": "oct", "kid": "h", "alg": "HS256", "k": k}
    server.jwks = {"keys": [jwk(rsa_a, "a"), oct_key]}
    verifier = make_verifier()
    hs_token = jwt.encode(claims(), secret, "HS256", headers={"kid": "h"})
    assert (await refused(verifier.verify(hs_token))).reason == "bad_algorithm"
    # Even with HS256 forged under an RS256 header, no oct key is ever loaded.
    assert (await refused(verifier.verify(token(rsa_a, "h")))).reason == "unknown_kid"


async def test_alg_confusion_with_jwks_public_key_is_refused(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    pem = rsa_a.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","kid":"a","typ":"JWT"}')
    payload = jwt.utils.base64url_encode(json.dumps(claims(roles=["admin"])).encode())
    signing_input = header + b"." + payload
    sig = jwt.utils.base64url_encode(hmac.new(pem, signing_input, hashlib.sha256).digest())
    forged = (signing_input + b"." + sig).decode()
    assert (await refused(make_verifier().verify(forged))).reason == "bad_algorithm"


async def test_jku_x5u_and_embedded_keys_are_never_fetched_or_used(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, rsa_attacker: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    evil = server.url.replace("/jwks.json", "/evil.json")
    verifier = make_verifier()
    attacker_jwk = jwk(rsa_attacker, "a")
    for headers in ({"jku": evil}, {"x5u": evil}, {"jwk": attacker_jwk}):
        for kid in ("a", "evil-kid"):
            forged = token(rsa_attacker, kid, **headers)
            err = await refused(verifier.verify(forged))
            assert err.reason in {"bad_signature", "unknown_kid"}
    assert server.hits["/evil.json"] == 0
    assert server.hits["jwks"] == 1


async def test_overlong_kid_is_refused_before_any_fetch(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any
) -> None:
    verifier = make_verifier()
    err = await refused(verifier.verify(token(rsa_a, "../" * 100)))
    assert err.reason == "malformed"
    assert server.hits["jwks"] == 0


async def test_weak_private_and_encryption_keys_in_jwks_are_skipped(
    server: JwksServer,
    make_verifier: VerifierFactory,
    rsa_a: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_a, as_dict=True)  # holds "d"
    server.jwks = {
        "keys": [
            jwk(weak, "weak"),
            {**private_jwk, "kid": "priv", "alg": "RS256"},
            jwk(rsa_a, "enc", use="enc"),
            jwk(rsa_a, "ops", key_ops=["encrypt"]),
            jwk(rsa_a, "ok", use="sig"),
            "not a key",
        ]
    }
    caplog.set_level(logging.INFO, logger="wsgate.security.jwt")
    verifier = make_verifier()
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):  # PyJWT signing with it
        weak_token = token(weak, "weak")
    assert (await refused(verifier.verify(weak_token))).reason == "unknown_kid"
    for kid in ("priv", "enc", "ops"):
        assert (await refused(verifier.verify(token(rsa_a, kid)))).reason == "unknown_kid"
    assert (await verifier.verify(token(rsa_a, "ok"))).sub == "alice"
    assert "1 usable key" in caplog.text
    # The private JWK's secret exponent never reaches a log line.
    assert private_jwk["d"] not in caplog.text


# --------------------------------------------------------------------------
# failures: fail closed, log clearly
# --------------------------------------------------------------------------


async def test_server_error_fails_closed_with_a_log_line(
    server: JwksServer,
    make_verifier: VerifierFactory,
    rsa_a: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    server.status = 500
    verifier = make_verifier()
    assert (await refused(verifier.verify(token(rsa_a, "a")))).reason == "jwks_unavailable"
    assert "JWKS fetch from" in caplog.text and "HTTP 500" in caplog.text
    # Still refused, and no second fetch within the interval.
    assert (await refused(verifier.verify(token(rsa_a, "a")))).reason == "jwks_unavailable"
    assert server.hits["jwks"] == 1


async def test_unreachable_server_fails_closed(rsa_a: Any) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    verifier = TokenVerifier(JwtConfig(jwks_url=f"http://127.0.0.1:{port}/jwks.json"))
    try:
        assert (await refused(verifier.verify(token(rsa_a, "a")))).reason == "jwks_unavailable"
    finally:
        await verifier.aclose()


async def test_slow_server_times_out_and_fails_closed(
    server: JwksServer,
    make_verifier: VerifierFactory,
    rsa_a: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(jwks_module, "JWKS_FETCH_TIMEOUT", 0.2)
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    server.delay = 0.6
    verifier = make_verifier()
    started = time.monotonic()
    assert (await refused(verifier.verify(token(rsa_a, "a")))).reason == "jwks_unavailable"
    assert time.monotonic() - started < 0.5
    assert "timed out" in caplog.text


@pytest.mark.parametrize("mode", ["content-length", "chunked"])
async def test_oversized_jwks_is_refused(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, mode: str
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    if mode == "chunked":
        server.stream_bytes = 2 * 1024 * 1024
    else:
        document = json.dumps(server.jwks).encode()
        server.raw = document[:-1] + b" " * (1024 * 1024) + document[-1:]
    verifier = make_verifier()
    assert (await refused(verifier.verify(token(rsa_a, "a")))).reason == "jwks_unavailable"


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"keys": "nope"}', b'{"keys": []}', b'{"keys": [{"kty": "XX"}]}']
)
async def test_unusable_documents_fail_closed(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, raw: bytes
) -> None:
    server.raw = raw
    verifier = make_verifier()
    assert (await refused(verifier.verify(token(rsa_a, "a")))).reason == "jwks_unavailable"


async def test_redirects_are_not_followed(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any
) -> None:
    server.status = 302
    server.raw = b""
    verifier = make_verifier()
    assert (await refused(verifier.verify(token(rsa_a, "a")))).reason == "jwks_unavailable"


async def test_known_keys_survive_a_failed_refresh(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any, rsa_b: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    verifier = make_verifier(jwks_min_refresh_interval=0.1)
    await verifier.verify(token(rsa_a, "a"))
    server.status = 503
    await asyncio.sleep(0.15)
    # An unknown kid triggers a refetch that fails: refused, as unavailable.
    assert (await refused(verifier.verify(token(rsa_b, "b")))).reason == "jwks_unavailable"
    assert server.hits["jwks"] == 2
    # Keys from the last good fetch still verify their tokens.
    assert (await verifier.verify(token(rsa_a, "a"))).sub == "alice"


async def test_stale_key_set_is_refetched(
    server: JwksServer,
    make_verifier: VerifierFactory,
    rsa_a: Any,
    rsa_b: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A withdrawn key stops working once the set is older than JWKS_MAX_AGE."""
    monkeypatch.setattr(jwks_module, "JWKS_MAX_AGE", 0.2)
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    verifier = make_verifier(jwks_min_refresh_interval=0.1)
    await verifier.verify(token(rsa_a, "a"))
    server.jwks = {"keys": [jwk(rsa_b, "b")]}  # key a withdrawn
    await asyncio.sleep(0.25)
    assert (await refused(verifier.verify(token(rsa_a, "a")))).reason == "unknown_kid"
    assert server.hits["jwks"] == 2


async def test_cached_verdicts_do_not_outlive_a_withdrawn_key(
    server: JwksServer,
    make_verifier: VerifierFactory,
    rsa_a: Any,
    rsa_b: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same token, cached as verified, is refused once its key left the JWKS."""
    monkeypatch.setattr(jwks_module, "JWKS_MAX_AGE", 0.2)
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    verifier = make_verifier(jwks_min_refresh_interval=0.1, cache_size=100)
    cached = token(rsa_a, "a")
    await verifier.verify(cached)
    await verifier.verify(cached)  # a cache hit: no fetch, no signature check
    assert server.hits["jwks"] == 1
    server.jwks = {"keys": [jwk(rsa_b, "b")]}  # key a withdrawn
    await asyncio.sleep(0.25)
    assert (await refused(verifier.verify(cached))).reason == "unknown_kid"


# --------------------------------------------------------------------------
# client ownership
# --------------------------------------------------------------------------


async def test_given_http_client_is_used_and_left_open(server: JwksServer, rsa_a: Any) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    seen: list[str] = []

    async def on_request(request: httpx.Request) -> None:
        seen.append(str(request.url))

    async with httpx.AsyncClient(event_hooks={"request": [on_request]}) as client:
        verifier = TokenVerifier(JwtConfig(jwks_url=server.url), http_client=client)
        assert (await verifier.verify(token(rsa_a, "a"))).sub == "alice"
        await verifier.aclose()
        assert not client.is_closed
    assert seen == [server.url]


async def test_jwks_principal_and_verified_token_cache(
    server: JwksServer, make_verifier: VerifierFactory, rsa_a: Any
) -> None:
    server.jwks = {"keys": [jwk(rsa_a, "a")]}
    verifier = make_verifier(cache_size=100)
    tok = token(rsa_a, "a")
    first = await verifier.verify(tok)
    assert first.roles == frozenset({"user"}) and first.sub == "alice"
    assert await verifier.verify(tok) == first
    assert server.hits["jwks"] == 1
