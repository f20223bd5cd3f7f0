"""TokenVerifier / TokenIssuer with static keys: every rule, attacked with real signed tokens.

JWKS-specific behaviour (fetching, kid selection, refresh limits) is in
test_jwks.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from wsgate.errors import ConfigurationError, TokenError
from wsgate.principal import Principal
from wsgate.security.jwt import JwtConfig, TokenIssuer, TokenVerifier

SECRET = "k" * 24 + "-test-secret-0123456789"  # 47 bytes
OTHER_SECRET = "x" * 48


@dataclass(frozen=True)
class KeyPair:
    private: Any
    private_pem: str
    public_pem: str


def _pair(private: Any) -> KeyPair:
    return KeyPair(
        private=private,
        private_pem=private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        public_pem=private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )


@pytest.fixture(scope="session")
def rsa_keys() -> KeyPair:
    return _pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def rsa_other() -> KeyPair:
    return _pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def rsa_weak() -> KeyPair:
    return _pair(rsa.generate_private_key(public_exponent=65537, key_size=1024))


@pytest.fixture(scope="session")
def ec_keys() -> KeyPair:
    return _pair(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="session")
def ec384_keys() -> KeyPair:
    return _pair(ec.generate_private_key(ec.SECP384R1()))


@pytest.fixture(scope="session")
def ed_keys() -> KeyPair:
    return _pair(ed25519.Ed25519PrivateKey.generate())


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid access-token payload; ``overrides`` with value ``...`` removes a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "roles": ["user"],
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    for name, value in overrides.items():
        if value is ...:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def hs(payload: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """Build a JWS by hand, for tokens no honest library would produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


async def refused(verifier: TokenVerifier, token: Any, *, use: str = "access") -> TokenError:
    """Assert the token is refused, with a message that leaks nothing; return the error."""
    with pytest.raises(TokenError) as info:
        await verifier.verify(token, use=use)  # type: ignore[arg-type]
    err = info.value
    assert (err.code, err.message) in {
        ("unauthorized", "Invalid token"),
        ("token_expired", "Token expired"),
    }
    if isinstance(token, str) and token:
        assert token not in str(err)
        assert token not in repr(err.args)
    return err


def hs_verifier(**kw: Any) -> TokenVerifier:
    return TokenVerifier(JwtConfig(secret=SECRET, **kw))


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------


def test_config_without_any_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no JWT key"):
        TokenVerifier(JwtConfig())


@pytest.mark.parametrize("name", ["none", "None", "NONE", "nOnE", " none "])
def test_config_refuses_none_algorithm_in_any_case(name: str) -> None:
    with pytest.raises(ConfigurationError, match="'none'"):
        TokenVerifier(JwtConfig(secret=SECRET, algorithms=("HS256", name)))


def test_config_refuses_hmac_next_to_public_key(rsa_keys: KeyPair) -> None:
    with pytest.raises(ConfigurationError, match="algorithm confusion"):
        TokenVerifier(JwtConfig(public_key_pem=rsa_keys.public_pem, algorithms=("RS256", "HS256")))


def test_config_refuses_hmac_next_to_jwks() -> None:
    with pytest.raises(ConfigurationError, match="algorithm confusion"):
        TokenVerifier(JwtConfig(jwks_url="https://idp.example/jwks", algorithms=("HS256",)))


def test_config_refuses_asymmetric_alg_with_only_a_secret() -> None:
    with pytest.raises(ConfigurationError, match="need a public key"):
        TokenVerifier(JwtConfig(secret=SECRET, algorithms=("RS256",)))


@pytest.mark.parametrize("name", ["HS257", "hs256", "rs256", "ES999", "RSA-OAEP"])
def test_config_refuses_unknown_algorithms(name: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown JWT algorithm"):
        TokenVerifier(JwtConfig(secret=SECRET, algorithms=(name,)))


def test_config_refuses_empty_algorithm_list() -> None:
    with pytest.raises(ConfigurationError, match="must not be empty"):
        TokenVerifier(JwtConfig(secret=SECRET, algorithms=()))


def test_config_algorithms_must_be_a_sequence_of_names() -> None:
    # A bare string would otherwise be read letter by letter.
    with pytest.raises(ConfigurationError, match="tuple of algorithm names"):
        TokenVerifier(JwtConfig(secret=SECRET, algorithms="HS256"))  # type: ignore[arg-type]
    listed = TokenVerifier(JwtConfig(secret=SECRET, algorithms=["HS256"]))  # type: ignore[arg-type]
    assert listed.algorithms == ("HS256",)


@pytest.mark.parametrize(
    ("secret", "algorithms"),
    [
        ("s" * 31, None),
        ("", None),
        ("s" * 47, ("HS384",)),
        ("s" * 63, ("HS256", "HS512")),
    ],
)
def test_config_refuses_short_hmac_secret(secret: str, algorithms: tuple[str, ...] | None) -> None:
    with pytest.raises(ConfigurationError, match="at least") as info:
        TokenVerifier(JwtConfig(secret=secret, algorithms=algorithms))
    if secret:
        assert secret not in str(info.value)


def test_config_accepts_secret_of_exactly_32_bytes() -> None:
    assert TokenVerifier(JwtConfig(secret="s" * 32)).algorithms == ("HS256",)


def test_config_refuses_secret_with_public_key_or_jwks(rsa_keys: KeyPair) -> None:
    extras: tuple[dict[str, Any], ...] = (
        {"public_key_pem": rsa_keys.public_pem},
        {"jwks_url": "https://idp.example/jwks"},
        {"private_key_pem": rsa_keys.private_pem},
    )
    for extra in extras:
        with pytest.raises(ConfigurationError, match="not both") as info:
            TokenVerifier(JwtConfig(secret=SECRET, **extra))
        assert SECRET not in str(info.value)
        assert "BEGIN" not in str(info.value)


def test_config_refuses_public_key_and_jwks_together(rsa_keys: KeyPair) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        TokenVerifier(
            JwtConfig(public_key_pem=rsa_keys.public_pem, jwks_url="https://idp.example/jwks")
        )


def test_config_errors_never_echo_key_material(rsa_keys: KeyPair) -> None:
    # A secret pasted where the algorithm list goes (swapped env vars).
    with pytest.raises(ConfigurationError) as info:
        TokenVerifier(JwtConfig(secret=SECRET, algorithms=(SECRET,)))
    assert SECRET not in str(info.value)
    # A damaged PEM: the message says so without quoting it.
    broken = rsa_keys.public_pem.replace("A", "?", 5)
    with pytest.raises(ConfigurationError, match="not a valid PEM") as info:
        TokenVerifier(JwtConfig(public_key_pem=broken))
    body = rsa_keys.public_pem.splitlines()[1]
    assert body not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # A private key where the public key goes.
    with pytest.raises(ConfigurationError) as info:
        TokenVerifier(JwtConfig(public_key_pem=rsa_keys.private_pem))
    assert rsa_keys.private_pem.splitlines()[1] not in str(info.value)


def test_config_refuses_algorithm_that_does_not_fit_the_key(
    rsa_keys: KeyPair, ec_keys: KeyPair, ec384_keys: KeyPair
) -> None:
    with pytest.raises(ConfigurationError, match="cannot be used"):
        TokenVerifier(JwtConfig(public_key_pem=rsa_keys.public_pem, algorithms=("RS256", "ES256")))
    with pytest.raises(ConfigurationError, match="cannot be used"):
        TokenVerifier(JwtConfig(public_key_pem=ec384_keys.public_pem, algorithms=("ES256",)))
    with pytest.raises(ConfigurationError, match="cannot be used"):
        TokenVerifier(JwtConfig(public_key_pem=ec_keys.public_pem, algorithms=("EdDSA",)))


def test_config_refuses_weak_rsa_key(rsa_weak: KeyPair) -> None:
    with pytest.raises(ConfigurationError, match="1024 bits"):
        TokenVerifier(JwtConfig(public_key_pem=rsa_weak.public_pem))
    with pytest.raises(ConfigurationError, match="1024 bits"):
        TokenIssuer(JwtConfig(private_key_pem=rsa_weak.private_pem))


def test_config_refuses_mismatched_key_pair(rsa_keys: KeyPair, rsa_other: KeyPair) -> None:
    config = JwtConfig(public_key_pem=rsa_keys.public_pem, private_key_pem=rsa_other.private_pem)
    with pytest.raises(ConfigurationError, match="does not belong"):
        TokenVerifier(config)
    with pytest.raises(ConfigurationError, match="does not belong"):
        TokenIssuer(config)


@pytest.mark.parametrize(
    "url",
    ["http://idp.example/jwks", "ftp://127.0.0.1/jwks", "file:///etc/jwks.json", "https://"],
)
def test_config_refuses_jwks_url_without_tls(url: str) -> None:
    with pytest.raises(ConfigurationError, match="https"):
        TokenVerifier(JwtConfig(jwks_url=url))


@pytest.mark.parametrize(
    "kw",
    [
        {"leeway": -1.0},
        {"leeway": float("nan")},
        {"cache_size": -1},
        {"jwks_min_refresh_interval": 0.0},
        {"jwks_min_refresh_interval": float("inf")},
        {"issuer": ""},
        {"audience": ""},
    ],
)
def test_config_refuses_bad_numbers_and_names(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(JwtConfig(secret=SECRET, **kw))


async def test_config_defaults_follow_the_key(
    rsa_keys: KeyPair, ec384_keys: KeyPair, ed_keys: KeyPair
) -> None:
    assert TokenVerifier(JwtConfig(secret=SECRET)).algorithms == ("HS256",)
    assert TokenVerifier(JwtConfig(public_key_pem=rsa_keys.public_pem)).algorithms == ("RS256",)
    assert TokenVerifier(JwtConfig(public_key_pem=ec384_keys.public_pem)).algorithms == ("ES384",)
    assert TokenVerifier(JwtConfig(public_key_pem=ed_keys.public_pem)).algorithms == ("EdDSA",)
    # Only a private key: the verifier checks with its public half.
    assert TokenVerifier(JwtConfig(private_key_pem=rsa_keys.private_pem)).algorithms == ("RS256",)
    jwks = TokenVerifier(JwtConfig(jwks_url="https://idp.example/jwks"))
    assert jwks.algorithms == ("RS256",)
    await jwks.aclose()


# --------------------------------------------------------------------------
# verify: happy paths and the Principal
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hs", "rsa", "ec", "ed"])
async def test_issue_then_verify_round_trip(
    kind: str, rsa_keys: KeyPair, ec_keys: KeyPair, ed_keys: KeyPair
) -> None:
    keys = {"rsa": rsa_keys, "ec": ec_keys, "ed": ed_keys}
    if kind == "hs":
        config = JwtConfig(secret=SECRET, issuer="https://idp", audience="wsgate", require_jti=True)
    else:
        pair = keys[kind]
        config = JwtConfig(
            public_key_pem=pair.public_pem,
            private_key_pem=pair.private_pem,
            issuer="https://idp",
            audience="wsgate",
            require_jti=True,
        )
    issuer = TokenIssuer(config)
    verifier = TokenVerifier(config)
    token, issued = issuer.issue("alice", roles=["user", "admin"], extra_claims={"tenant": "t1"})
    got = await verifier.verify(token)
    assert got == issued
    assert got.sub == "alice"
    assert got.roles == frozenset({"user", "admin"})
    assert got.claims["tenant"] == "t1"
    assert got.claims["iss"] == "https://idp" and got.claims["aud"] == "wsgate"
    assert isinstance(got.expires_at, float) and got.expires_at == float(got.claims["exp"])
    assert got.issued_at == float(got.claims["iat"])
    assert got.jti == got.claims["jti"]
    assert {"ES256": "ec", "RS256": "rsa", "EdDSA": "ed", "HS256": "hs"}[issuer.algorithm] == kind


async def test_principal_from_minimal_token() -> None:
    exp = int(time.time()) + 60
    got = await hs_verifier().verify(hs({"sub": "bob", "exp": exp}))
    assert got == Principal(sub="bob", claims={"sub": "bob", "exp": exp}, expires_at=float(exp))
    assert got.roles == frozenset() and got.issued_at is None and got.jti is None


# --------------------------------------------------------------------------
# verify: algorithm attacks
# --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
async def test_alg_none_is_refused(alg: str, rsa_keys: KeyPair) -> None:
    for verifier in (hs_verifier(), TokenVerifier(JwtConfig(public_key_pem=rsa_keys.public_pem))):
        token = forge({"alg": alg, "typ": "JWT"}, claims(), lambda _: b"")
        assert (await refused(verifier, token)).reason == "bad_algorithm"
        # A "none" token with a trailing dot only (no signature part at all).
        bare = token.rsplit(".", 1)[0] + "."
        assert (await refused(verifier, bare)).reason == "bad_algorithm"


async def test_alg_confusion_public_key_as_hmac_secret_is_refused(rsa_keys: KeyPair) -> None:
    verifier = TokenVerifier(JwtConfig(public_key_pem=rsa_keys.public_pem))
    for secret in (rsa_keys.public_pem.encode(), rsa_keys.public_pem.strip().encode()):

        def sign(data: bytes, secret: bytes = secret) -> bytes:
            return hmac.new(secret, data, hashlib.sha256).digest()

        token = forge({"alg": "HS256", "typ": "JWT"}, claims(roles=["admin"]), sign)
        assert (await refused(verifier, token)).reason == "bad_algorithm"


async def test_alg_outside_allowlist_is_refused_even_with_valid_signature(
    rsa_keys: KeyPair,
) -> None:
    verifier = TokenVerifier(JwtConfig(public_key_pem=rsa_keys.public_pem, algorithms=("RS256",)))
    for alg in ("PS256", "RS512"):
        token = jwt.encode(claims(), rsa_keys.private, algorithm=alg)
        assert (await refused(verifier, token)).reason == "bad_algorithm"
    assert (await verifier.verify(jwt.encode(claims(), rsa_keys.private, "RS256"))).sub == "alice"


async def test_signature_from_another_key_is_refused(rsa_keys: KeyPair, rsa_other: KeyPair) -> None:
    verifier = TokenVerifier(JwtConfig(public_key_pem=rsa_keys.public_pem))
    token = jwt.encode(claims(), rsa_other.private, algorithm="RS256")
    assert (await refused(verifier, token)).reason == "bad_signature"
    assert (await refused(hs_verifier(), hs(claims(), OTHER_SECRET))).reason == "bad_signature"


async def test_tampered_payload_is_refused() -> None:
    token = hs(claims(roles=["user"]))
    head, _, sig = token.split(".")
    evil = b64(json.dumps(claims(roles=["admin"])).encode())
    assert (await refused(hs_verifier(), f"{head}.{evil}.{sig}")).reason == "bad_signature"


async def test_embedded_key_headers_are_ignored(rsa_keys: KeyPair, rsa_other: KeyPair) -> None:
    """jwk / x5c / jku / x5u must never supply the key: the attacker's own key is useless."""
    verifier = TokenVerifier(JwtConfig(public_key_pem=rsa_keys.public_pem))
    attacker_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_other.private.public_key(), as_dict=True)
    der = rsa_other.private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for header in (
        {"jwk": attacker_jwk},
        {"x5c": [base64.b64encode(der).decode()]},
        {"jku": "http://127.0.0.1:9/jwks.json"},
        {"x5u": "http://127.0.0.1:9/cert.pem"},
    ):
        token = jwt.encode(claims(roles=["admin"]), rsa_other.private, "RS256", headers=header)
        assert (await refused(verifier, token)).reason == "bad_signature"
    # A legitimate token carrying those headers still verifies: they are not even read.
    token = jwt.encode(claims(), rsa_keys.private, "RS256", headers={"jku": "http://127.0.0.1:9/"})
    assert (await verifier.verify(token)).sub == "alice"


@pytest.mark.parametrize("kid", ["k" * 257, 42, ["a"], {"k": 1}])
async def test_bad_kid_is_refused(kid: Any) -> None:
    token = forge(
        {"alg": "HS256", "kid": kid},
        claims(),
        lambda d: hmac.new(SECRET.encode(), d, hashlib.sha256).digest(),
    )
    assert (await refused(hs_verifier(), token)).reason == "malformed"


async def test_kid_up_to_256_chars_is_accepted_and_ignored_with_a_static_key() -> None:
    assert (await hs_verifier().verify(hs(claims(), kid="../../etc/passwd" + "k" * 240))).sub


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "..", "e30.e30.", "x" * 20_000, "ey.ey.ey.ey", None, 42, b"a.b.c"],
)
async def test_malformed_tokens_are_refused(token: Any) -> None:
    assert (await refused(hs_verifier(), token)).reason in {"malformed", "bad_algorithm"}


async def test_oversized_but_validly_signed_token_is_refused() -> None:
    token = hs(claims(pad="p" * 20_000))
    assert (await refused(hs_verifier(), token)).reason == "malformed"


# --------------------------------------------------------------------------
# verify: claims
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": ...}, "missing_claim"),
        ({"sub": ...}, "missing_claim"),
        ({"sub": None}, "missing_claim"),
        ({"sub": ""}, "bad_claim"),
        ({"sub": 123}, "bad_claim"),
        ({"sub": ["alice"]}, "bad_claim"),
        ({"exp": "99999999999"}, "bad_claim"),
        ({"exp": True}, "expired"),  # PyJWT reads it as int(True) == 1
        ({"exp": 1e400}, "malformed"),  # json "Infinity"-like overflow
        ({"exp": "soon"}, "malformed"),
        ({"iat": "0"}, "bad_claim"),
        ({"iat": "yesterday"}, "bad_claim"),
        ({"nbf": "0"}, "bad_claim"),
        ({"jti": 5}, "bad_claim"),
    ],
)
async def test_required_and_typed_claims(overrides: dict[str, Any], reason: str) -> None:
    assert (await refused(hs_verifier(), hs(claims(**overrides)))).reason == reason


async def test_jti_required_only_when_configured() -> None:
    assert (await hs_verifier().verify(hs(claims(jti=...)))).jti is None
    strict = hs_verifier(require_jti=True)
    assert (await refused(strict, hs(claims(jti=...)))).reason == "missing_claim"
    assert (await refused(strict, hs(claims(jti="")))).reason == "bad_claim"
    assert (await strict.verify(hs(claims(jti="abc")))).jti == "abc"


async def test_issuer_required_and_matched_when_configured() -> None:
    verifier = hs_verifier(issuer="https://idp.example")
    assert (await refused(verifier, hs(claims()))).reason == "missing_claim"
    assert (await refused(verifier, hs(claims(iss="https://evil.example")))).reason == "bad_issuer"
    assert (await refused(verifier, hs(claims(iss="https://idp.example/")))).reason == "bad_issuer"
    assert (await verifier.verify(hs(claims(iss="https://idp.example")))).sub == "alice"


async def test_audience_required_and_matched_when_configured() -> None:
    verifier = hs_verifier(audience="wsgate")
    assert (await refused(verifier, hs(claims()))).reason == "missing_claim"
    assert (await refused(verifier, hs(claims(aud="other")))).reason == "bad_audience"
    assert (await refused(verifier, hs(claims(aud=["other", "x"])))).reason == "bad_audience"
    assert (await verifier.verify(hs(claims(aud="wsgate")))).sub == "alice"
    assert (await verifier.verify(hs(claims(aud=["other", "wsgate"])))).sub == "alice"


async def test_token_for_some_audience_is_refused_when_none_is_configured() -> None:
    # RFC 7519 §4.1.3: a recipient that is not named in aud must reject.
    assert (await refused(hs_verifier(), hs(claims(aud="billing")))).reason == "bad_audience"


async def test_expired_token() -> None:
    token = hs(claims(exp=int(time.time()) - 5))
    err = await refused(hs_verifier(), token)
    assert (err.code, err.message, err.reason) == ("token_expired", "Token expired", "expired")


async def test_expired_token_with_bad_signature_is_not_reported_as_expired() -> None:
    token = hs(claims(exp=int(time.time()) - 5), OTHER_SECRET)
    err = await refused(hs_verifier(), token)
    assert (err.code, err.reason) == ("unauthorized", "bad_signature")


async def test_leeway_applies_to_exp_nbf_and_iat() -> None:
    now = int(time.time())
    strict, lenient = hs_verifier(), hs_verifier(leeway=30)
    cases = [
        (claims(exp=now - 10), "expired"),
        (claims(nbf=now + 10), "not_yet_valid"),
        (claims(iat=now + 10), "not_yet_valid"),
    ]
    for payload, reason in cases:
        token = hs(payload)
        assert (await refused(strict, token)).reason == reason
        assert (await lenient.verify(token)).sub == "alice"
    for payload, reason in [
        (claims(exp=now - 60), "expired"),
        (claims(nbf=now + 60), "not_yet_valid"),
        (claims(iat=now + 60), "not_yet_valid"),
    ]:
        assert (await refused(lenient, hs(payload))).reason == reason


@pytest.mark.parametrize(
    "roles", ["admin", "", None, 1, {"admin": True}, [1], ["admin", 2], [["admin"]], [None]]
)
async def test_roles_must_be_a_list_of_strings(roles: Any) -> None:
    err = await refused(hs_verifier(), hs(claims(roles=roles)))
    assert err.reason == "bad_claim"


async def test_roles_absent_or_empty_list_gives_no_roles() -> None:
    assert (await hs_verifier().verify(hs(claims(roles=...)))).roles == frozenset()
    assert (await hs_verifier().verify(hs(claims(roles=[])))).roles == frozenset()


# --------------------------------------------------------------------------
# access vs refresh (RFC 8725 §3.11-3.12)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"])
async def test_access_accepts_plain_and_at_jwt_types(typ: str | None) -> None:
    headers = {"typ": typ}
    token = jwt.encode(claims(), SECRET, "HS256", headers=headers)
    if typ is None:
        assert "typ" not in jwt.get_unverified_header(token)
    assert (await hs_verifier().verify(token)).sub == "alice"


@pytest.mark.parametrize(
    "typ", ["refresh+jwt", "application/refresh+jwt", "id+jwt", "secevent+jwt", "JOSE", 5, ""]
)
async def test_access_refuses_other_types(typ: Any) -> None:
    token = forge(
        {"alg": "HS256", "typ": typ},
        claims(),
        lambda d: hmac.new(SECRET.encode(), d, hashlib.sha256).digest(),
    )
    assert (await refused(hs_verifier(), token)).reason == "wrong_token_use"


@pytest.mark.parametrize("token_use", ["refresh", "id", "", None, 1])
async def test_access_refuses_other_token_use(token_use: Any) -> None:
    token = hs(claims(token_use=token_use))
    # Null counts as present: anything but "access" is refused.
    assert (await refused(hs_verifier(), token)).reason == "wrong_token_use"


async def test_refresh_and_access_tokens_are_not_interchangeable() -> None:
    config = JwtConfig(secret=SECRET)
    issuer, verifier = TokenIssuer(config), TokenVerifier(config)
    access, _ = issuer.issue("alice")
    refresh, _ = issuer.issue("alice", use="refresh", ttl=3600)
    assert (await verifier.verify(access)).sub == "alice"
    assert (await verifier.verify(refresh, use="refresh")).sub == "alice"
    assert (await refused(verifier, refresh)).reason == "wrong_token_use"
    assert (await refused(verifier, access, use="refresh")).reason == "wrong_token_use"


async def test_refresh_needs_both_typ_and_token_use() -> None:
    verifier = hs_verifier()
    only_typ = hs(claims(), typ="refresh+jwt")
    only_claim = hs(claims(token_use="refresh"))
    wrong_claim = hs(claims(token_use="access"), typ="refresh+jwt")
    for token in (only_typ, only_claim, wrong_claim):
        assert (await refused(verifier, token, use="refresh")).reason == "wrong_token_use"
    good = hs(claims(token_use="refresh"), typ="application/REFRESH+jwt")
    assert (await verifier.verify(good, use="refresh")).sub == "alice"
    # And a refresh-shaped token is still no access token.
    assert (await refused(verifier, good)).reason == "wrong_token_use"


async def test_unknown_use_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="use"):
        await hs_verifier().verify(hs(claims()), use="id")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# errors and logs leak nothing
# --------------------------------------------------------------------------


async def test_refusals_and_logs_never_contain_token_or_key(
    caplog: pytest.LogCaptureFixture, rsa_keys: KeyPair
) -> None:
    caplog.set_level(logging.DEBUG, logger="wsgate.security.jwt")
    verifier = hs_verifier(issuer="https://idp")
    now = int(time.time())
    tokens = [
        hs(claims(iss="https://idp", exp=now - 1)),
        hs(claims(iss="https://idp"), OTHER_SECRET),
        hs(claims(iss="https://other")),
        hs(claims(iss="https://idp", roles="admin")),
        hs(claims(iss="https://idp", sub=...)),
        forge({"alg": "none"}, claims(), lambda _: b""),
        "not-a-token-" + SECRET,
    ]
    for token in tokens:
        err = await refused(verifier, token)
        assert SECRET not in str(err) and token not in str(err)
        # No PyJWT exception (or its text) rides along in a traceback.
        assert err.__cause__ is None
        assert err.__context__ is None or err.__suppress_context__
    assert caplog.records, "refusals are logged (at debug)"
    for token in tokens:
        assert token not in caplog.text
    assert SECRET not in caplog.text
    assert rsa_keys.public_pem.splitlines()[1] not in caplog.text


# --------------------------------------------------------------------------
# verified-token cache
# --------------------------------------------------------------------------


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count real PyJWT decodes (the expensive path) without changing them."""
    calls: list[str] = []
    real = jwt.decode

    def spy(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)  # the module wsgate.security.jwt calls
    return calls


async def test_cache_skips_crypto_for_a_token_seen_before(
    decode_calls: list[str], rsa_keys: KeyPair
) -> None:
    config = JwtConfig(public_key_pem=rsa_keys.public_pem, private_key_pem=rsa_keys.private_pem)
    verifier = TokenVerifier(config)
    token, issued = TokenIssuer(config).issue("alice", roles=["user"])
    for _ in range(5):
        assert await verifier.verify(token) == issued
    assert len(decode_calls) == 1


async def test_cache_does_not_cross_token_use(decode_calls: list[str]) -> None:
    verifier = hs_verifier()
    token = hs(claims())
    await verifier.verify(token)
    assert (await refused(verifier, token, use="refresh")).reason == "wrong_token_use"


async def test_cache_does_not_remember_refusals(decode_calls: list[str]) -> None:
    verifier = hs_verifier()
    token = hs(claims(), OTHER_SECRET)
    for _ in range(3):
        assert (await refused(verifier, token)).reason == "bad_signature"
    assert len(decode_calls) == 3


async def test_cache_entry_expires_with_the_token() -> None:
    verifier = hs_verifier()
    exp = int(time.time()) + 1
    token = hs(claims(exp=exp, iat=exp - 1))
    assert (await verifier.verify(token)).expires_at == exp
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)
    err = await refused(verifier, token)
    assert err.code == "token_expired"


async def test_cache_is_bounded(decode_calls: list[str]) -> None:
    verifier = hs_verifier(cache_size=2)
    a, b, c = (hs(claims(sub=name)) for name in "abc")
    for token in (a, b, c):  # a is evicted by c
        await verifier.verify(token)
    await verifier.verify(c)
    await verifier.verify(b)
    assert len(decode_calls) == 3
    await verifier.verify(a)
    assert len(decode_calls) == 4


async def test_cache_can_be_disabled(decode_calls: list[str]) -> None:
    verifier = hs_verifier(cache_size=0)
    token = hs(claims())
    await verifier.verify(token)
    await verifier.verify(token)
    assert len(decode_calls) == 2


async def test_cached_principal_cannot_be_poisoned_by_a_caller() -> None:
    verifier = hs_verifier()
    token = hs(claims(roles=["user"], team={"name": "a"}))
    first = await verifier.verify(token)
    claims_seen: dict[str, Any] = first.claims  # type: ignore[assignment]
    claims_seen["roles"].append("admin")
    claims_seen["team"]["name"] = "root"
    claims_seen["sub"] = "mallory"
    second = await verifier.verify(token)
    assert second.claims["roles"] == ["user"]
    assert second.claims["team"] == {"name": "a"}
    assert second.claims["sub"] == "alice"


# --------------------------------------------------------------------------
# TokenIssuer
# --------------------------------------------------------------------------


def test_issuer_needs_a_signing_key(rsa_keys: KeyPair) -> None:
    for config in (
        JwtConfig(),
        JwtConfig(public_key_pem=rsa_keys.public_pem),
        JwtConfig(jwks_url="https://idp.example/jwks"),
    ):
        with pytest.raises(ConfigurationError, match="needs a JWT secret or a private key"):
            TokenIssuer(config)
    with pytest.raises(ConfigurationError, match="at least"):
        TokenIssuer(JwtConfig(secret="short"))
    with pytest.raises(ConfigurationError, match="'none'"):
        TokenIssuer(JwtConfig(secret=SECRET, algorithms=("none",)))


def test_issuer_refuses_a_damaged_private_key(rsa_keys: KeyPair) -> None:
    with pytest.raises(ConfigurationError, match="not a valid") as info:
        TokenIssuer(JwtConfig(private_key_pem=rsa_keys.private_pem[:200]))
    assert rsa_keys.private_pem.splitlines()[1] not in str(info.value)


def test_issuer_picks_first_configured_algorithm_that_fits_the_key(
    rsa_keys: KeyPair, ec_keys: KeyPair, ed_keys: KeyPair
) -> None:
    def alg(pair: KeyPair, algorithms: tuple[str, ...] | None) -> str:
        return TokenIssuer(
            JwtConfig(private_key_pem=pair.private_pem, algorithms=algorithms)
        ).algorithm

    assert alg(rsa_keys, None) == "RS256"
    assert alg(rsa_keys, ("PS256", "RS256")) == "PS256"
    assert alg(ec_keys, ("RS256", "ES256")) == "ES256"
    assert alg(ed_keys, None) == "EdDSA"
    assert TokenIssuer(JwtConfig(secret="s" * 64, algorithms=("HS512", "HS256"))).algorithm == (
        "HS512"
    )
    with pytest.raises(ConfigurationError, match="no configured JWT algorithm fits"):
        alg(ec_keys, ("RS256",))


async def test_issued_tokens_carry_type_use_and_fresh_ids() -> None:
    config = JwtConfig(secret=SECRET, issuer="https://idp", audience="wsgate")
    issuer = TokenIssuer(config)
    before = time.time()
    access, principal = issuer.issue("alice", roles=("admin",), ttl=30)
    refresh, _ = issuer.issue("alice", use="refresh")
    assert jwt.get_unverified_header(access)["typ"] == "at+jwt"
    assert jwt.get_unverified_header(refresh)["typ"] == "refresh+jwt"
    body = jwt.decode(access, SECRET, algorithms=["HS256"], audience="wsgate")
    assert body["token_use"] == "access" and body["roles"] == ["admin"]
    assert body["iss"] == "https://idp" and body["aud"] == "wsgate"
    assert "nbf" not in body
    assert body["exp"] >= before + 30 and body["exp"] <= before + 32
    assert len(body["jti"]) == 32 and int(body["jti"], 16) >= 0
    ids = {issuer.issue("alice")[1].jti for _ in range(50)}
    assert len(ids) == 50
    assert principal.roles == frozenset({"admin"}) and principal.jti == body["jti"]


def test_issue_refuses_bad_arguments() -> None:
    issuer = TokenIssuer(JwtConfig(secret=SECRET))
    with pytest.raises(TypeError):
        issuer.issue("alice", roles="admin")
    with pytest.raises(TypeError):
        issuer.issue("alice", roles=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="sub"):
        issuer.issue("")
    for ttl in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="ttl"):
            issuer.issue("alice", ttl=ttl)
    for name in ("sub", "exp", "roles", "token_use", "aud", "iss", "jti", "iat", "nbf"):
        with pytest.raises(ValueError, match="extra_claims"):
            issuer.issue("alice", extra_claims={name: "x"})
    with pytest.raises(ValueError, match="use"):
        issuer.issue("alice", use="id")  # type: ignore[arg-type]
