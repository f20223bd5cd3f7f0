"""PyJWT[crypto] vs joserfc: verified tokens per second, per algorithm.

Why: the verifier sits on the connect path, and a reconnect storm makes it the
hot loop. This measures what each library costs to *verify* one token
(signature + ``exp``/``sub`` claims), with keys loaded once up front as a real
verifier would. Run it with ``.venv/bin/python bench/jwt_libraries.py``; it
takes well under a minute and prints a table. Never gate CI on these numbers.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jwk as jf_jwk
from joserfc import jwt as jf_jwt
from joserfc.jwt import JWTClaimsRegistry

SECONDS_PER_CASE = 1.5
SECRET = "s" * 48
JOSERFC_KEY_TYPES: dict[str, Any] = {
    "RS256": jf_jwk.RSAKey,
    "ES256": jf_jwk.ECKey,
    "EdDSA": jf_jwk.OKPKey,
}


def _keys() -> dict[str, tuple[Any, Any]]:
    """alg -> (signing key, verifying key) as cryptography objects / bytes."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return {
        "HS256": (SECRET.encode(), SECRET.encode()),
        "RS256": (rsa_key, rsa_key.public_key()),
        "ES256": (ec_key, ec_key.public_key()),
        "EdDSA": (ed_key, ed_key.public_key()),
    }


def _rate(fn: Callable[[], object]) -> float:
    """Calls per second of ``fn`` over about SECONDS_PER_CASE seconds."""
    for _ in range(50):  # warm up
        fn()
    n = 0
    start = time.perf_counter()
    deadline = start + SECONDS_PER_CASE
    while True:
        for _ in range(100):
            fn()
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    # joserfc warns that "EdDSA" is deprecated (RFC 9864 prefers "Ed25519").
    warnings.filterwarnings("ignore", message="EdDSA is deprecated")
    claims = {"sub": "alice", "roles": ["user"], "exp": int(time.time()) + 3600}
    print(
        f"{'alg':<7}{'PyJWT tok/s':>14}{'joserfc tok/s':>16}{'joserfc/PyJWT':>16}"
        f"{'PyJWT, PEM/call':>18}"
    )
    for alg, (sign_key, verify_key) in _keys().items():
        token = pyjwt.encode(claims, sign_key, algorithm=alg)

        # PyJWT: pre-loaded key object, explicit allowlist, required claims.
        def pyjwt_verify(token: str = token, key: Any = verify_key, alg: str = alg) -> object:
            return pyjwt.decode(token, key, algorithms=[alg], options={"require": ["exp", "sub"]})

        # joserfc: imported key, explicit allowlist, then its claims registry.
        if alg == "HS256":
            jf_key: Any = jf_jwk.OctKey.import_key(verify_key)
        else:
            pem = verify_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            jf_key = JOSERFC_KEY_TYPES[alg].import_key(pem)
        registry = JWTClaimsRegistry(exp={"essential": True}, sub={"essential": True})

        def joserfc_verify(
            token: str = token, key: Any = jf_key, alg: str = alg, reg: Any = registry
        ) -> object:
            tok = jf_jwt.decode(token, key, algorithms=[alg])
            reg.validate(tok.claims)
            return tok.claims

        # Both must accept the token before we time them.
        assert pyjwt_verify()["sub"] == "alice"  # type: ignore[index]
        assert joserfc_verify()["sub"] == "alice"  # type: ignore[index]

        # The naive PyJWT use: a PEM string handed to every decode() call, so
        # the key is parsed again each time (why the verifier pre-loads keys).
        if alg == "HS256":
            pem_key: Any = SECRET
        else:
            pem_key = verify_key.public_bytes(
                Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
            ).decode()

        def pyjwt_pem_verify(token: str = token, key: Any = pem_key, alg: str = alg) -> object:
            return pyjwt.decode(token, key, algorithms=[alg], options={"require": ["exp", "sub"]})

        a = _rate(pyjwt_verify)
        b = _rate(joserfc_verify)
        c = _rate(pyjwt_pem_verify)
        print(f"{alg:<7}{a:>14,.0f}{b:>16,.0f}{b / a:>15.2f}x{c:>18,.0f}")


if __name__ == "__main__":
    main()
