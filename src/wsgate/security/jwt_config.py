"""JWT configuration: what tokens to trust, checked once at start-up.

Split out of :mod:`wsgate.security.jwt` so that the rules about keys and
algorithms live in one place, shared by the verifier, the issuer and the
JWKS cache. PyJWT checks signatures and registered claims; the rules it
leaves to its caller, and that are easy to get wrong, are checked here
before the first token is seen:

* no ``none``, no HMAC next to a public key (algorithm confusion), no short
  secrets or weak RSA keys;
* an algorithm allowlist that fits the configured key (an algorithm the key
  can never verify fails at start-up, not on every token at run time).

Errors are :class:`~wsgate.errors.ConfigurationError` and never quote key
material: a misplaced secret must not end up in a traceback. The generic
token refusal (:func:`refuse`) lives here too, because both the verifier
and the JWKS cache raise it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from wsgate.errors import ConfigurationError, TokenError

PublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

#: Every algorithm PyJWT implements, minus ``none``. Names are case-sensitive
#: (RFC 7515 §4.1.1): ``hs256`` is unknown, not HS256.
KNOWN_ALGORITHMS: Final = frozenset(get_default_algorithms()) - {"none"}
HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})

#: The curve each ECDSA algorithm requires (RFC 7518 §3.4; ES521 is PyJWT's
#: alias of ES512).
_EC_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES256K": ec.SECP256K1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
    "ES521": ec.SECP521R1,
}
_MIN_RSA_BITS: Final = 2048
_MIN_SECRET_BYTES: Final = 32

#: Longest token we even try to parse. Browsers cap cookies at ~4 KiB and
#: servers headers at ~8 KiB; anything larger is an attack on the parser.
MAX_TOKEN_CHARS: Final = 16_384
#: ``kid`` is attacker input: it only ever selects a key from a dict.
MAX_KID_CHARS: Final = 256

_SAFE_ALG_NAME = re.compile(r"[A-Za-z0-9+_-]{1,16}")


DEFAULT_MAX_LIFETIME = 86_400.0
"""One day: the longest access token a verifier accepts unless configured otherwise."""
DEFAULT_MAX_REFRESH_LIFETIME = 30 * 86_400.0
"""Thirty days: the longest refresh token a verifier accepts unless configured otherwise."""
LIFETIME_SLACK = 1.0
"""Seconds over the maximum still accepted: issuers round ``exp`` up to a whole second."""


@dataclass(frozen=True)
class JwtConfig:
    """What tokens to trust, and how to sign them for the demo login and CLI.

    Set exactly one source of verification keys: ``secret`` (HMAC),
    ``public_key_pem`` (PEM public key or X.509 certificate, as text; the
    caller reads the file), or ``jwks_url``. ``private_key_pem`` is only for
    signing. When it is the only key, the verifier uses its public half.

    ``algorithms=None`` means HS256 with a secret, RS256 with a JWKS, and the
    algorithm that matches the key type for a PEM key (RS256 for RSA, ES256,
    ES384 or ES512 by curve, EdDSA for Ed25519/Ed448).

    ``cache_size`` bounds the verified-token cache (0 disables it).

    ``max_lifetime`` and ``max_refresh_lifetime`` (seconds, ``None`` for no
    limit) refuse access and refresh tokens that live longer: ``exp - iat``,
    or ``exp - now`` for a token without ``iat``. A signed ``exp`` of 1e300
    is a token that can never be made to expire; a leaked one would be good
    forever (revocation entries themselves expire).
    """

    secret: str | None = None
    public_key_pem: str | None = None
    private_key_pem: str | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 0.0
    require_jti: bool = False
    jwks_min_refresh_interval: float = 10.0
    cache_size: int = 10_000
    max_lifetime: float | None = DEFAULT_MAX_LIFETIME
    max_refresh_lifetime: float | None = DEFAULT_MAX_REFRESH_LIFETIME


# --------------------------------------------------------------------------
# Configuration checks (shared by the verifier and the issuer)
# --------------------------------------------------------------------------


def _alg_label(name: object) -> str:
    """An algorithm name safe to put in an error message.

    A misplaced secret (e.g. env vars swapped) must not end up in a
    traceback, so anything that does not look like an algorithm name is
    masked.
    """
    if isinstance(name, str) and _SAFE_ALG_NAME.fullmatch(name):
        return repr(name)
    return "<invalid name>"


def check_common(config: JwtConfig) -> None:
    """Checks that do not depend on the key: numbers, names, ``none``."""
    if config.algorithms is not None:
        if not isinstance(config.algorithms, tuple | list):
            raise ConfigurationError("JWT algorithms must be a tuple of algorithm names")
        if not config.algorithms:
            raise ConfigurationError("JWT algorithms must not be empty")
        for name in config.algorithms:
            if isinstance(name, str) and name.strip().lower() == "none":
                raise ConfigurationError("the JWT algorithm 'none' is never allowed")
        unknown = [a for a in config.algorithms if a not in KNOWN_ALGORITHMS]
        if unknown:
            labels = ", ".join(_alg_label(a) for a in unknown)
            raise ConfigurationError(
                f"unknown JWT algorithm(s): {labels}; known: {', '.join(sorted(KNOWN_ALGORITHMS))}"
            )
    if not _finite_at_least(config.leeway, 0.0):
        raise ConfigurationError("JWT leeway must be a finite number of seconds >= 0")
    for name in ("max_lifetime", "max_refresh_lifetime"):
        value = getattr(config, name)
        if value is not None and (not _finite_at_least(value, 0.0) or value <= 0):
            raise ConfigurationError(f"JWT {name} must be a positive number of seconds or None")
    if not _finite_at_least(config.jwks_min_refresh_interval, 0.0) or (
        config.jwks_min_refresh_interval <= 0
    ):
        raise ConfigurationError("jwks_min_refresh_interval must be a finite number > 0")
    if (
        not isinstance(config.cache_size, int)
        or isinstance(config.cache_size, bool)
        or config.cache_size < 0
    ):
        raise ConfigurationError("JWT cache_size must be an integer >= 0")
    for label, value in (("issuer", config.issuer), ("audience", config.audience)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"JWT {label} must be a non-empty string when set")
    for label, text in (
        ("secret", config.secret),
        ("public key", config.public_key_pem),
        ("private key", config.private_key_pem),
        ("JWKS URL", config.jwks_url),
    ):
        if text is not None and not isinstance(text, str):
            raise ConfigurationError(f"the JWT {label} must be text (str)")
    if config.secret is not None and (
        config.public_key_pem is not None
        or config.jwks_url is not None
        or config.private_key_pem is not None
    ):
        raise ConfigurationError(
            "set either a JWT secret (HMAC) or asymmetric keys (public key, private key, "
            "JWKS URL), not both"
        )


def configured(config: JwtConfig) -> tuple[str, ...] | None:
    """The configured allowlist as a tuple (a list is accepted too), or None."""
    return tuple(config.algorithms) if config.algorithms is not None else None


def _finite_at_least(value: object, minimum: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= minimum
    )


def hmac_algorithms(config: JwtConfig) -> tuple[str, ...]:
    """The allowlist for a secret, after checking the secret is long enough.

    RFC 7518 §3.2: an HMAC key must be at least as long as the hash output
    (32 bytes for HS256, 48 for HS384, 64 for HS512).
    """
    assert config.secret is not None
    algorithms = configured(config) or ("HS256",)
    asymmetric = [a for a in algorithms if a not in HMAC_ALGORITHMS]
    if asymmetric:
        raise ConfigurationError(
            f"JWT algorithm(s) {', '.join(_alg_label(a) for a in asymmetric)} need a public "
            "key or a JWKS URL; only an HMAC secret is configured"
        )
    secret = config.secret.encode("utf-8")
    needed = max(_MIN_SECRET_BYTES, *(_hmac_min_bytes(a) for a in algorithms))
    if len(secret) < needed:
        raise ConfigurationError(
            f"the JWT secret must be at least {needed} bytes for {', '.join(algorithms)} "
            "(use e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    return algorithms


def _hmac_min_bytes(alg: str) -> int:
    return {"HS256": 32, "HS384": 48, "HS512": 64}[alg]


def refuse_hmac_with_asymmetric(algorithms: Sequence[str]) -> None:
    """Algorithm confusion (CVE-2015-9235 family): never HS* next to a public key."""
    hmac = [a for a in algorithms if a in HMAC_ALGORITHMS]
    if hmac:
        raise ConfigurationError(
            f"HMAC algorithm(s) {', '.join(hmac)} are refused when a public key, private key "
            "or JWKS URL is configured (algorithm confusion)"
        )


def key_fits(alg: str, key: object) -> bool:
    """True when ``key`` (a public key) can verify ``alg`` signatures."""
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    curve = _EC_CURVES.get(alg)
    if curve is not None:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, curve)
    return False


def key_label(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def default_algorithm(key: PublicKey) -> str:
    """The one algorithm a key type implies, for ``algorithms=None``."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        for alg in ("ES256", "ES384", "ES512", "ES256K"):
            if isinstance(key.curve, _EC_CURVES[alg]):
                return alg
        raise ConfigurationError(f"unsupported elliptic curve for JWT: {key.curve.name}")
    return "EdDSA"


def check_key_strength(key: PublicKey) -> None:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise ConfigurationError(
            f"the JWT RSA key has {key.key_size} bits; at least {_MIN_RSA_BITS} are required"
        )


def algorithms_for_key(config: JwtConfig, key: PublicKey, role: str) -> tuple[str, ...]:
    """The allowlist for a PEM key: every configured algorithm must fit the key.

    An algorithm the key can never verify is a configuration mistake worth
    failing at start-up for, rather than refusing every token at run time.
    """
    check_key_strength(key)
    algorithms = configured(config) or (default_algorithm(key),)
    refuse_hmac_with_asymmetric(algorithms)
    misfits = [a for a in algorithms if not key_fits(a, key)]
    if misfits:
        raise ConfigurationError(
            f"JWT algorithm(s) {', '.join(misfits)} cannot be used with the configured "
            f"{role} ({key_label(key)})"
        )
    return algorithms


def load_public_key(pem: str) -> PublicKey:
    """A PEM public key or X.509 certificate; the error never quotes the PEM."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            loaded: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            loaded = serialization.load_pem_public_key(data)
    except Exception:  # ValueError, TypeError, UnsupportedAlgorithm...
        raise ConfigurationError(
            "the JWT public key is not a valid PEM public key or certificate"
        ) from None
    if not isinstance(
        loaded,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        raise ConfigurationError("the JWT public key type is not supported (RSA, EC, Ed25519/448)")
    return loaded


def load_private_key(pem: str) -> PrivateKey:
    """A PEM private key without passphrase; the error never quotes the PEM."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        loaded: object = serialization.load_pem_private_key(data, password=None)
    except Exception:
        raise ConfigurationError(
            "the JWT private key is not a valid unencrypted PEM private key"
        ) from None
    if not isinstance(
        loaded,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise ConfigurationError("the JWT private key type is not supported (RSA, EC, Ed25519/448)")
    return loaded


def public_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --------------------------------------------------------------------------
# Refusals (shared by the verifier and the JWKS cache)
# --------------------------------------------------------------------------


def refuse(reason: str) -> TokenError:
    """The generic refusal: the client learns nothing beyond "invalid"."""
    return TokenError("unauthorized", "Invalid token", reason)
