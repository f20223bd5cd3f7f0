"""JWT verification (and, for the demo and the CLI, issuing).

Built on PyJWT[crypto] (see ``docs/decisions/jwt-library.md``). PyJWT checks
the signature and the registered claims. This module adds the rules that
PyJWT leaves to its caller and that are easy to get wrong:

* the configuration is checked once at start-up: no ``none``, no HMAC next
  to a public key (algorithm confusion), no short secrets or weak RSA keys,
  and an algorithm allowlist that fits the configured key;
* the allowlist is passed explicitly to every decode, and the key is chosen
  from our own configuration, never from the token (``jku``, ``x5u``,
  ``x5c`` and ``jwk`` headers are never read; ``kid`` only selects among keys
  we already fetched from the configured JWKS URL);
* access and refresh tokens cannot be swapped (RFC 8725 §3.11-3.12): header
  ``typ`` and claim ``token_use``;
* claim shapes PyJWT does not check (``sub`` a non-empty string, ``roles`` a
  list of strings, ``exp`` a number);
* a JWKS cache that an attacker cannot turn into a request flood (one fetch
  per ``jwks_min_refresh_interval``, shared by concurrent callers) and that
  refuses tokens when keys cannot be fetched (fail closed);
* a cache of verified tokens, because a reconnect storm sends the same tokens
  again and RS256/ES256 verification is the expensive part of a connect.

Every refusal is a :class:`~wsgate.errors.TokenError` whose message is
generic and whose ``reason`` is a short word for logs and metrics. Neither
ever contains the token or key material, and nothing here logs them.
Revocation is not handled here: the caller checks ``jti``/``sub`` against its
store after :meth:`TokenVerifier.verify` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from wsgate.errors import ConfigurationError, TokenError
from wsgate.principal import Principal

__all__ = ["JwtConfig", "TokenIssuer", "TokenUse", "TokenVerifier"]

logger = logging.getLogger("wsgate.security.jwt")

TokenUse: TypeAlias = Literal["access", "refresh"]

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

JWKS_FETCH_TIMEOUT: Final = 5.0
JWKS_MAX_BYTES: Final = 1024 * 1024
#: A JWKS older than this is refetched on the next verification (still at
#: most once per ``jwks_min_refresh_interval``), so that keys the issuer
#: withdrew stop being accepted even when no unknown ``kid`` shows up.
JWKS_MAX_AGE: Final = 3600.0

_ACCESS_TYPES: Final = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_REFRESH_TYPES: Final = frozenset({"refresh+jwt", "application/refresh+jwt"})
_HEADER_TYP: Final[dict[str, str]] = {"access": "at+jwt", "refresh": "refresh+jwt"}

#: Claims TokenIssuer sets itself; ``extra_claims`` may not override them.
_RESERVED_CLAIMS: Final = frozenset(
    {"sub", "roles", "iat", "exp", "nbf", "jti", "iss", "aud", "token_use"}
)

_SAFE_ALG_NAME = re.compile(r"[A-Za-z0-9+_-]{1,16}")


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


def _check_common(config: JwtConfig) -> None:
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


def _configured(config: JwtConfig) -> tuple[str, ...] | None:
    """The configured allowlist as a tuple (a list is accepted too), or None."""
    return tuple(config.algorithms) if config.algorithms is not None else None


def _finite_at_least(value: object, minimum: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= minimum
    )


def _hmac_algorithms(config: JwtConfig) -> tuple[str, ...]:
    """The allowlist for a secret, after checking the secret is long enough.

    RFC 7518 §3.2: an HMAC key must be at least as long as the hash output
    (32 bytes for HS256, 48 for HS384, 64 for HS512).
    """
    assert config.secret is not None
    algorithms = _configured(config) or ("HS256",)
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


def _refuse_hmac_with_asymmetric(algorithms: Sequence[str]) -> None:
    """Algorithm confusion (CVE-2015-9235 family): never HS* next to a public key."""
    hmac = [a for a in algorithms if a in HMAC_ALGORITHMS]
    if hmac:
        raise ConfigurationError(
            f"HMAC algorithm(s) {', '.join(hmac)} are refused when a public key, private key "
            "or JWKS URL is configured (algorithm confusion)"
        )


def _key_fits(alg: str, key: object) -> bool:
    """True when ``key`` (a public key) can verify ``alg`` signatures."""
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    curve = _EC_CURVES.get(alg)
    if curve is not None:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, curve)
    return False


def _key_label(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _default_algorithm(key: PublicKey) -> str:
    """The one algorithm a key type implies, for ``algorithms=None``."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        for alg in ("ES256", "ES384", "ES512", "ES256K"):
            if isinstance(key.curve, _EC_CURVES[alg]):
                return alg
        raise ConfigurationError(f"unsupported elliptic curve for JWT: {key.curve.name}")
    return "EdDSA"


def _check_key_strength(key: PublicKey) -> None:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise ConfigurationError(
            f"the JWT RSA key has {key.key_size} bits; at least {_MIN_RSA_BITS} are required"
        )


def _algorithms_for_key(config: JwtConfig, key: PublicKey, role: str) -> tuple[str, ...]:
    """The allowlist for a PEM key: every configured algorithm must fit the key.

    An algorithm the key can never verify is a configuration mistake worth
    failing at start-up for, rather than refusing every token at run time.
    """
    _check_key_strength(key)
    algorithms = _configured(config) or (_default_algorithm(key),)
    _refuse_hmac_with_asymmetric(algorithms)
    misfits = [a for a in algorithms if not _key_fits(a, key)]
    if misfits:
        raise ConfigurationError(
            f"JWT algorithm(s) {', '.join(misfits)} cannot be used with the configured "
            f"{role} ({_key_label(key)})"
        )
    return algorithms


def _load_public_key(pem: str) -> PublicKey:
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


def _load_private_key(pem: str) -> PrivateKey:
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


def _public_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_jwks_url(url: str) -> None:
    """https only, except on loopback (local IdPs and tests).

    Keys fetched over plain http can be swapped by anyone on the path, which
    makes every signature check meaningless.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError("the JWKS URL is not a valid URL") from None
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and host in {"127.0.0.1", "localhost", "::1"}:
        return
    raise ConfigurationError("the JWKS URL must use https (http is accepted only on loopback)")


def _url_for_logs(url: str) -> str:
    """scheme://host/path: no credentials or query string in log lines."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def _refuse(reason: str) -> TokenError:
    """The generic refusal: the client learns nothing beyond "invalid"."""
    return TokenError("unauthorized", "Invalid token", reason)


def _expired() -> TokenError:
    return TokenError("token_expired", "Token expired", "expired")


def _map_pyjwt_error(exc: Exception) -> TokenError:
    """PyJWT's exception classes -> our ``reason`` words (order matters:
    InvalidSignatureError is a DecodeError)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return _expired()
    if isinstance(exc, jwt.ImmatureSignatureError):
        return _refuse("not_yet_valid")
    if isinstance(exc, jwt.InvalidSignatureError):
        return _refuse("bad_signature")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return _refuse("bad_algorithm")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return _refuse("missing_claim")
    if isinstance(exc, jwt.InvalidIssuerError):
        return _refuse("bad_issuer")
    if isinstance(exc, jwt.InvalidAudienceError):
        return _refuse("bad_audience")
    if isinstance(
        exc,
        jwt.InvalidIssuedAtError
        | jwt.exceptions.InvalidSubjectError
        | jwt.exceptions.InvalidJTIError,
    ):
        return _refuse("bad_claim")
    if isinstance(exc, jwt.InvalidKeyError):
        return _refuse("bad_signature")
    return _refuse("malformed")


# --------------------------------------------------------------------------
# JWKS
# --------------------------------------------------------------------------


class _JwksKeys:
    """Keys from a JWKS URL, by ``(kid, alg)``, fetched lazily and rarely.

    Rules, each for a reason:

    * At most one fetch starts per ``min_interval`` seconds, whatever happens
      (unknown ``kid``, failure, stale set), so a stream of tokens with random
      ``kid`` values cannot make us flood the identity provider.
    * Concurrent callers share the fetch in flight.
    * A fetch has an overall deadline and a size cap. When it fails, keys
      from the last good fetch stay in use, and a token they cannot verify
      is refused as ``jwks_unavailable`` (fail closed).
    * Keys are parsed one by one with :class:`jwt.PyJWK`, not with
      :class:`jwt.PyJWKSet`: PyJWKSet binds a key that has no ``alg`` to a
      single guessed algorithm (RS256 for any RSA key) and drops bad keys
      silently. Here such a key is bound to each allowed algorithm that fits
      it, and each key we skip is logged. Symmetric (``oct``) keys, keys
      whose ``use`` is not ``sig``, keys for algorithms outside the allowlist
      and weak keys are skipped.
    """

    def __init__(
        self,
        url: str,
        algorithms: tuple[str, ...],
        min_interval: float,
        client: httpx.AsyncClient,
    ) -> None:
        self._url = url
        self._log_url = _url_for_logs(url)
        self._algorithms = algorithms
        self._min_interval = min_interval
        self._client = client
        self._keys: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._kids: set[str | None] = set()
        self._distinct = 0
        self._last_attempt: float | None = None
        self._loaded_at: float | None = None
        self._last_ok = False
        self._inflight: asyncio.Task[bool] | None = None

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key for this token header, refetching (rarely) when unknown."""
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at > JWKS_MAX_AGE:
            await self._refresh()
        key = self._lookup(kid, alg)
        if key is not None:
            return key
        if kid is not None and kid in self._kids:
            # The kid is known, only not for this algorithm: refetching
            # would not change that.
            raise _refuse("bad_algorithm")
        # An unknown kid may mean the issuer rotated its keys.
        if (kid is not None or self._distinct == 0) and await self._refresh():
            key = self._lookup(kid, alg)
            if key is not None:
                return key
        if self._loaded_at is None or not self._last_ok:
            # Debug only: the fetch failure itself was logged once, at warning;
            # one line per refused token would let an attacker flood the log.
            logger.debug("JWT refused: no JWKS keys available from %s (fail closed)", self._log_url)
            raise _refuse("jwks_unavailable")
        raise _refuse("unknown_kid")

    def _lookup(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is None:
            # Without a kid we may only guess when there is nothing to guess.
            if self._distinct != 1:
                return None
            candidates = [k for (_, a), k in self._keys.items() if a == alg]
            return candidates[0] if len(candidates) == 1 else None
        return self._keys.get((kid, alg))

    async def _refresh(self) -> bool:
        """Join the fetch in flight, or start one if the interval allows.

        Returns True when a fetch ran (now, or the one we joined) and
        succeeded.
        """
        if self._inflight is None:
            now = time.monotonic()
            if self._last_attempt is not None and now - self._last_attempt < self._min_interval:
                return False
            self._last_attempt = now
            self._inflight = asyncio.create_task(self._fetch(), name="wsgate-jwks-fetch")
            self._inflight.add_done_callback(self._fetch_done)
        # shield: a caller that is cancelled must not cancel everyone's fetch.
        return await asyncio.shield(self._inflight)

    def _fetch_done(self, task: asyncio.Task[bool]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _fetch(self) -> bool:
        try:
            async with asyncio.timeout(JWKS_FETCH_TIMEOUT):
                body = await self._download()
            document = json.loads(body)
        except TimeoutError:
            return self._failed("timed out")
        except httpx.HTTPError as exc:
            return self._failed(type(exc).__name__)
        except ValueError as exc:  # bad JSON, bad size header
            return self._failed(type(exc).__name__)
        except _JwksFetchError as exc:
            return self._failed(str(exc))
        except Exception as exc:  # fail closed on anything unexpected, never crash
            return self._failed(f"unexpected {type(exc).__name__}")
        keys, kids, distinct = self._parse(document)
        if not keys:
            return self._failed("no usable keys for the allowed algorithms")
        self._keys, self._kids, self._distinct = keys, kids, distinct
        self._loaded_at = time.monotonic()
        self._last_ok = True
        logger.info("JWKS loaded from %s: %d usable key(s)", self._log_url, distinct)
        return True

    def _failed(self, why: str) -> bool:
        self._last_ok = False
        logger.warning(
            "JWKS fetch from %s failed: %s; keeping %d known key(s), next try in >= %.0fs",
            self._log_url,
            why,
            self._distinct,
            self._min_interval,
        )
        return False

    async def _download(self) -> bytes:
        async with self._client.stream(
            "GET",
            self._url,
            headers={"Accept": "application/jwk-set+json, application/json"},
            timeout=JWKS_FETCH_TIMEOUT,
            follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise _JwksFetchError(f"HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and int(declared) > JWKS_MAX_BYTES:
                raise _JwksFetchError("response larger than the size cap")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise _JwksFetchError("response larger than the size cap")
            return bytes(body)

    def _parse(
        self, document: object
    ) -> tuple[dict[tuple[str | None, str], jwt.PyJWK], set[str | None], int]:
        keys: dict[tuple[str | None, str], jwt.PyJWK] = {}
        kids: set[str | None] = set()
        distinct = 0
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            logger.warning("JWKS from %s has no 'keys' list", self._log_url)
            return keys, kids, 0
        for index, entry in enumerate(entries):
            skip = self._skip_reason(entry)
            if skip is not None:
                logger.info("JWKS key #%d skipped: %s", index, skip)
                continue
            assert isinstance(entry, dict)
            kid = entry.get("kid")
            declared = entry.get("alg")
            candidates = [declared] if declared is not None else list(self._algorithms)
            used = False
            for alg in candidates:
                if alg not in self._algorithms:
                    continue
                try:
                    jwk = jwt.PyJWK(entry, algorithm=alg)
                except Exception:  # noqa: S112 - messages may quote key data: not logged
                    continue  # reported below as "unusable" when no algorithm fits
                if not _key_fits(alg, jwk.key) or (
                    jwk.Algorithm.check_key_length(jwk.key) is not None
                ):
                    continue
                if (kid, alg) in keys:
                    logger.warning("JWKS key #%d skipped: duplicate kid for %s", index, alg)
                    continue
                keys[(kid, alg)] = jwk
                used = True
            if used:
                kids.add(kid)
                distinct += 1
            else:
                logger.info(
                    "JWKS key #%d skipped: unusable, weak, or no allowed algorithm fits", index
                )
        return keys, kids, distinct

    @staticmethod
    def _skip_reason(entry: object) -> str | None:
        if not isinstance(entry, dict):
            return "not an object"
        if entry.get("kty") == "oct":
            return "symmetric key (never trusted from a JWKS)"
        if "use" in entry and entry["use"] != "sig":
            return "use is not 'sig'"
        ops = entry.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            return "key_ops does not allow 'verify'"
        kid = entry.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_CHARS):
            return "invalid kid"
        if "d" in entry:
            return "private key published in a JWKS"
        alg = entry.get("alg")
        if alg is not None and not isinstance(alg, str):
            return "invalid alg"
        return None

    async def aclose(self) -> None:
        task = self._inflight
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _JwksFetchError(Exception):
    """A JWKS response we refuse (status, size); the text goes to the log."""


# --------------------------------------------------------------------------
# Verified-token cache
# --------------------------------------------------------------------------


class _VerifiedCache:
    """sha256(token) + use -> Principal, until the token expires.

    Why: a reconnect storm (a deploy, a network blip) re-presents the same
    tokens, and RS256/ES256 verification is the expensive part of a connect.
    The key is a digest so the cache holds no tokens. An entry leaves at
    ``exp + leeway`` (the moment PyJWT would call it expired) and the
    least recently used entry goes when the cache is full. Revocation is the
    caller's job and still runs on every connect.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    @staticmethod
    def key(token: str, use: str) -> bytes:
        return hashlib.sha256(f"{use}\x00{token}".encode()).digest()

    def get(self, key: bytes, now: float) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        principal, valid_until = entry
        if now >= valid_until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return principal

    def put(self, key: bytes, principal: Principal, valid_until: float) -> None:
        self._entries[key] = (principal, valid_until)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _private_copy(principal: Principal) -> Principal:
    """A Principal whose claims the caller may mutate without touching the cache."""
    return dataclasses.replace(principal, claims=copy.deepcopy(dict(principal.claims)))


# --------------------------------------------------------------------------
# Verifier
# --------------------------------------------------------------------------


class TokenVerifier:
    """Turns a token string into a :class:`Principal`, or raises TokenError.

    The configuration is checked here, at start-up, and raises
    :class:`ConfigurationError` (its message never holds key material).
    ``http_client`` is used for JWKS fetches if given (the caller keeps
    ownership); otherwise the verifier makes one and closes it in
    :meth:`aclose`.
    """

    def __init__(self, config: JwtConfig, *, http_client: httpx.AsyncClient | None = None) -> None:
        _check_common(config)
        self._config = config
        self._static_key: bytes | PublicKey | None = None
        self._jwks: _JwksKeys | None = None
        self._owned_client: httpx.AsyncClient | None = None

        if config.secret is not None:
            self._algorithms = _hmac_algorithms(config)
            self._static_key = config.secret.encode("utf-8")
        elif config.jwks_url is not None:
            if config.public_key_pem is not None:
                raise ConfigurationError("set either a JWT public key or a JWKS URL, not both")
            if config.private_key_pem is not None:
                _load_private_key(config.private_key_pem)  # fail early on a bad file
            _check_jwks_url(config.jwks_url)
            self._algorithms = _configured(config) or ("RS256",)
            _refuse_hmac_with_asymmetric(self._algorithms)
            client = http_client
            if client is None:
                client = self._owned_client = httpx.AsyncClient(
                    timeout=JWKS_FETCH_TIMEOUT, follow_redirects=False
                )
            self._jwks = _JwksKeys(
                config.jwks_url, self._algorithms, config.jwks_min_refresh_interval, client
            )
        elif config.public_key_pem is not None or config.private_key_pem is not None:
            public = (
                _load_public_key(config.public_key_pem)
                if config.public_key_pem is not None
                else None
            )
            if config.private_key_pem is not None:
                derived = _load_private_key(config.private_key_pem).public_key()
                if public is None:
                    public = derived
                elif _public_der(public) != _public_der(derived):
                    raise ConfigurationError(
                        "the JWT private key does not belong to the configured public key"
                    )
            assert public is not None
            self._algorithms = _algorithms_for_key(config, public, "public key")
            self._static_key = public
        else:
            raise ConfigurationError(
                "no JWT key configured: set a secret (HMAC), a public key, or a JWKS URL"
            )

        required = ["exp", "sub"]
        if config.require_jti:
            required.append("jti")
        if config.issuer is not None:
            required.append("iss")
        if config.audience is not None:
            required.append("aud")
        self._options: jwt.types.Options = {
            "verify_signature": True,
            "verify_exp": True,
            "verify_nbf": True,
            "verify_iat": True,
            "verify_iss": True,
            "verify_aud": True,
            "verify_sub": True,
            "verify_jti": True,
            "strict_aud": False,
            "require": required,
            "enforce_minimum_key_length": True,
        }
        self._cache = _VerifiedCache(config.cache_size) if config.cache_size > 0 else None

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The effective allowlist (after defaults)."""
        return self._algorithms

    async def verify(self, token: str, *, use: TokenUse = "access") -> Principal:
        """Check ``token`` as an access (default) or refresh token.

        Raises :class:`TokenError`: code ``token_expired`` for an expired
        but otherwise valid token, ``unauthorized`` for everything else.
        """
        if use not in _HEADER_TYP:
            raise ValueError("use must be 'access' or 'refresh'")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise _refuse("malformed")
        now = time.time()
        cache_key = b""
        if self._cache is not None:
            cache_key = _VerifiedCache.key(token, use)
            hit = self._cache.get(cache_key, now)
            if hit is not None:
                return _private_copy(hit)

        header = self._check_header(token, use)
        key: bytes | PublicKey | jwt.PyJWK
        if self._jwks is not None:
            key = await self._jwks.key_for(header.get("kid"), header["alg"])
        else:
            assert self._static_key is not None
            key = self._static_key

        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=list(self._algorithms),
                options=self._options,
                issuer=self._config.issuer,
                audience=self._config.audience,
                leeway=self._config.leeway,
            )
        except jwt.PyJWTError as exc:
            error = _map_pyjwt_error(exc)
            logger.debug("JWT refused: %s (%s)", error.reason, type(exc).__name__)
            raise error from None
        except Exception as exc:  # a library bug must not become an accept
            logger.warning("JWT refused: unexpected %s during decode", type(exc).__name__)
            raise _refuse("malformed") from None

        principal = self._principal(payload, use)
        if self._cache is not None:
            valid_until = int(payload["exp"]) + self._config.leeway
            self._cache.put(cache_key, principal, valid_until)
            return _private_copy(principal)
        return principal

    def _check_header(self, token: str, use: TokenUse) -> dict[str, Any]:
        """Cheap checks on the (still untrusted) header, before any crypto."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refuse("malformed") from None
        except Exception:
            raise _refuse("malformed") from None
        if not isinstance(header, dict):
            raise _refuse("malformed")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _refuse("bad_algorithm")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_CHARS):
            raise _refuse("malformed")
        typ = header.get("typ")
        if use == "access":
            if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TYPES):
                raise _refuse("wrong_token_use")
        elif not isinstance(typ, str) or typ.lower() not in _REFRESH_TYPES:
            raise _refuse("wrong_token_use")
        # jku, x5u, x5c and jwk are deliberately never read.
        return header

    def _principal(self, claims: dict[str, Any], use: TokenUse) -> Principal:
        """Shape checks PyJWT does not make, then the Principal."""
        for name in ("exp", "iat", "nbf"):
            if name in claims and not _is_number(claims[name]):
                raise _refuse("bad_claim")  # PyJWT would accept "exp": "9999999999"
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise _refuse("bad_claim")
        jti = claims.get("jti")
        if self._config.require_jti and (not isinstance(jti, str) or not jti):
            raise _refuse("bad_claim")
        roles: list[str] = []
        if "roles" in claims:
            raw = claims["roles"]
            # A bare string must not become a set of roles ("admin" -> {"admin"}
            # or, worse, set("admin") -> {"a", "d", "m", "i", "n"}).
            if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
                raise _refuse("bad_claim")
            roles = raw
        if use == "access":
            if "token_use" in claims and claims["token_use"] != "access":
                raise _refuse("wrong_token_use")  # null counts as present
        elif claims.get("token_use") != "refresh":
            raise _refuse("wrong_token_use")
        iat = claims.get("iat")
        return Principal(
            sub=sub,
            roles=frozenset(roles),
            claims=dict(claims),
            expires_at=float(claims["exp"]),
            issued_at=float(iat) if iat is not None else None,
            jti=jti if isinstance(jti, str) else None,
        )

    async def aclose(self) -> None:
        """Stop a JWKS fetch in flight and close the HTTP client we created."""
        if self._jwks is not None:
            await self._jwks.aclose()
        if self._owned_client is not None:
            await self._owned_client.aclose()
            self._owned_client = None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------
# Issuer
# --------------------------------------------------------------------------


class TokenIssuer:
    """Signs tokens for the demo's login and the ``wsgate token`` CLI.

    Uses the secret (HS*) or the private key, with the first configured
    algorithm that fits the key. Tokens carry the claims the verifier
    requires, a fresh ``jti``, ``token_use`` and header ``typ``
    (``at+jwt``/``refresh+jwt``), so they are accepted by a
    :class:`TokenVerifier` built from the same config, for their own use only.
    """

    def __init__(self, config: JwtConfig) -> None:
        _check_common(config)
        self._config = config
        self._key: bytes | PrivateKey
        if config.secret is not None:
            self._algorithm = _hmac_algorithms(config)[0]
            self._key = config.secret.encode("utf-8")
        elif config.private_key_pem is not None:
            private = _load_private_key(config.private_key_pem)
            public = private.public_key()
            if config.public_key_pem is not None and _public_der(
                _load_public_key(config.public_key_pem)
            ) != _public_der(public):
                raise ConfigurationError(
                    "the JWT private key does not belong to the configured public key"
                )
            _check_key_strength(public)
            algorithms = _configured(config) or (_default_algorithm(public),)
            _refuse_hmac_with_asymmetric(algorithms)
            fitting = [a for a in algorithms if _key_fits(a, public)]
            if not fitting:
                raise ConfigurationError(
                    f"no configured JWT algorithm fits the private key ({_key_label(public)})"
                )
            self._algorithm = fitting[0]
            self._key = private
        else:
            raise ConfigurationError(
                "signing tokens needs a JWT secret or a private key (a public key or JWKS "
                "URL can only verify)"
            )

    @property
    def algorithm(self) -> str:
        """The algorithm tokens are signed with."""
        return self._algorithm

    def issue(
        self,
        sub: str,
        *,
        roles: Sequence[str] = (),
        ttl: float = 900,
        use: TokenUse = "access",
        extra_claims: Mapping[str, Any] | None = None,
    ) -> tuple[str, Principal]:
        """A signed token and the Principal a verifier will see for it.

        ``exp`` is rounded up to a whole second so the token lives at least
        ``ttl`` seconds. ``iat`` keeps milliseconds (rounded down, so it is
        never in the future): a "revoke every token of this user issued
        before now" must not also catch the token of a login one moment
        later, which a whole-second ``iat`` would.
        """
        if not isinstance(sub, str) or not sub:
            raise ValueError("sub must be a non-empty string")
        if isinstance(roles, str) or not all(isinstance(r, str) for r in roles):
            raise TypeError("roles must be a sequence of strings, not a string")
        if not _is_number(ttl) or ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        if use not in _HEADER_TYP:
            raise ValueError("use must be 'access' or 'refresh'")
        extra = dict(extra_claims or {})
        clash = _RESERVED_CLAIMS.intersection(extra)
        if clash:
            raise ValueError(f"extra_claims may not set {', '.join(sorted(clash))}")

        now = time.time()
        claims: dict[str, Any] = {
            **extra,
            "sub": sub,
            "roles": list(roles),
            "iat": math.floor(now * 1000) / 1000,
            "exp": math.ceil(now + ttl),
            "jti": uuid.uuid4().hex,
            "token_use": use,
        }
        if self._config.issuer is not None:
            claims["iss"] = self._config.issuer
        if self._config.audience is not None:
            claims["aud"] = self._config.audience
        token = jwt.encode(
            claims, self._key, algorithm=self._algorithm, headers={"typ": _HEADER_TYP[use]}
        )
        principal = Principal(
            sub=sub,
            roles=frozenset(claims["roles"]),
            claims=claims,
            expires_at=float(claims["exp"]),
            issued_at=float(claims["iat"]),
            jti=claims["jti"],
        )
        return token, principal
