"""JWT verification (and, for the demo and the CLI, issuing).

Built on PyJWT[crypto] (see ``docs/decisions/jwt-library.md``). PyJWT checks
the signature and the registered claims. This module adds the per-token rules
that PyJWT leaves to its caller and that are easy to get wrong:

* the allowlist is passed explicitly to every decode, and the key is chosen
  from our own configuration, never from the token (``jku``, ``x5u``,
  ``x5c`` and ``jwk`` headers are never read);
* access and refresh tokens cannot be swapped (RFC 8725 §3.11-3.12): header
  ``typ`` and claim ``token_use``;
* claim shapes PyJWT does not check (``sub`` a non-empty string, ``roles`` a
  list of strings, ``exp`` a number).

The rest lives in its own module, one concept each:
:mod:`~wsgate.security.jwt_config` (the configuration, checked once at
start-up, and key loading), :mod:`~wsgate.security.jwks` (the JWKS key cache)
and :mod:`~wsgate.security.token_cache` (the verified-token cache).

Every refusal is a :class:`~wsgate.errors.TokenError` whose message is
generic and whose ``reason`` is a short word for logs and metrics. Neither
ever contains the token or key material, and nothing here logs them.
Revocation is not handled here: the caller checks ``jti``/``sub`` against its
store after :meth:`TokenVerifier.verify` returns.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import httpx
import jwt
from jwt.algorithms import HMACAlgorithm, get_default_algorithms

from wsgate.errors import ConfigurationError, TokenError
from wsgate.principal import Principal
from wsgate.security import jwks
from wsgate.security.jwt_config import (
    LIFETIME_SLACK,
    MAX_KID_CHARS,
    MAX_TOKEN_CHARS,
    JwtConfig,
    PrivateKey,
    PublicKey,
    algorithms_for_key,
    check_common,
    check_key_strength,
    configured,
    default_algorithm,
    hmac_algorithms,
    key_fits,
    key_label,
    load_private_key,
    load_public_key,
    public_der,
    refuse,
    refuse_hmac_with_asymmetric,
)
from wsgate.security.token_cache import VerifiedCache, private_copy

__all__ = ["JwtConfig", "TokenIssuer", "TokenUse", "TokenVerifier"]

logger = logging.getLogger("wsgate.security.jwt")

TokenUse: TypeAlias = Literal["access", "refresh"]

_ACCESS_TYPES: Final = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_REFRESH_TYPES: Final = frozenset({"refresh+jwt", "application/refresh+jwt"})
_HEADER_TYP: Final[dict[str, str]] = {"access": "at+jwt", "refresh": "refresh+jwt"}
# Accepted headers remembered per verifier (see TokenVerifier._check_header): at most
# this many, each at most this long when encoded, so hostile headers (checked before
# the signature) hold at most ~128 KB.
_MAX_HEADERS: Final = 256
_MAX_REMEMBERED_HEADER: Final = 512

#: Claims TokenIssuer sets itself; ``extra_claims`` may not override them.
_RESERVED_CLAIMS: Final = frozenset(
    {"sub", "roles", "iat", "exp", "nbf", "jti", "iss", "aud", "token_use"}
)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def _expired() -> TokenError:
    return TokenError("token_expired", "Token expired", "expired")


def _too_long_lived() -> TokenError:
    """Code ``unauthorized`` (get another token), with a message that says what to fix.

    Not the generic "Invalid token": the signature was good, so the holder
    is the issuer's client, and the fix (a shorter ``exp``) is at the issuer.
    """
    return TokenError(
        "unauthorized", "Token lifetime exceeds this server's maximum", "lifetime_too_long"
    )


def _map_pyjwt_error(exc: Exception) -> TokenError:
    """PyJWT's exception classes -> our ``reason`` words (order matters:
    InvalidSignatureError is a DecodeError)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return _expired()
    if isinstance(exc, jwt.ImmatureSignatureError):
        return refuse("not_yet_valid")
    if isinstance(exc, jwt.InvalidSignatureError):
        return refuse("bad_signature")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return refuse("bad_algorithm")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return refuse("missing_claim")
    if isinstance(exc, jwt.InvalidIssuerError):
        return refuse("bad_issuer")
    if isinstance(exc, jwt.InvalidAudienceError):
        return refuse("bad_audience")
    if isinstance(
        exc,
        jwt.InvalidIssuedAtError
        | jwt.exceptions.InvalidSubjectError
        | jwt.exceptions.InvalidJTIError,
    ):
        return refuse("bad_claim")
    if isinstance(exc, jwt.InvalidKeyError):
        return refuse("bad_signature")
    return refuse("malformed")


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
        check_common(config)
        self._config = config
        self._static_key: bytes | PublicKey | None = None
        self._jwks: jwks.JwksKeys | None = None
        self._owned_client: httpx.AsyncClient | None = None

        if config.secret is not None:
            self._algorithms = hmac_algorithms(config)
            self._static_key = config.secret.encode("utf-8")
        elif config.jwks_url is not None:
            if config.public_key_pem is not None:
                raise ConfigurationError("set either a JWT public key or a JWKS URL, not both")
            if config.private_key_pem is not None:
                load_private_key(config.private_key_pem)  # fail early on a bad file
            jwks.check_jwks_url(config.jwks_url)
            self._algorithms = configured(config) or ("RS256",)
            refuse_hmac_with_asymmetric(self._algorithms)
            client = http_client
            if client is None:
                client = self._owned_client = httpx.AsyncClient(
                    timeout=jwks.JWKS_FETCH_TIMEOUT, follow_redirects=False
                )
            self._jwks = jwks.JwksKeys(
                config.jwks_url, self._algorithms, config.jwks_min_refresh_interval, client
            )
        elif config.public_key_pem is not None or config.private_key_pem is not None:
            public = (
                load_public_key(config.public_key_pem)
                if config.public_key_pem is not None
                else None
            )
            if config.private_key_pem is not None:
                derived = load_private_key(config.private_key_pem).public_key()
                if public is None:
                    public = derived
                elif public_der(public) != public_der(derived):
                    raise ConfigurationError(
                        "the JWT private key does not belong to the configured public key"
                    )
            assert public is not None
            self._algorithms = algorithms_for_key(config, public, "public key")
            self._static_key = public
        else:
            raise ConfigurationError(
                "no JWT key configured: set a secret (HMAC), a public key, or a JWKS URL"
            )
        self._prepared = self._prepare_static_keys()
        self._cache_generation = 0

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
        self._cache = VerifiedCache(config.cache_size) if config.cache_size > 0 else None
        # Accepted headers by (encoded header, use); see _check_header. Never handed out:
        # callers only read "alg" and "kid".
        self._headers: dict[tuple[str, TokenUse], dict[str, Any]] = {}

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
            raise refuse("malformed")
        now = time.time()
        cache_key = b""
        if self._cache is not None:
            cache_key = VerifiedCache.key(token, use)
            if self._cache_trustworthy():
                hit = self._cache.get(cache_key, now)
                if hit is not None:
                    return private_copy(hit)

        header = self._check_header(token, use)
        key: bytes | PublicKey | jwt.PyJWK
        if self._jwks is not None:
            key = await self._jwks.key_for(header.get("kid"), header["alg"])
        else:
            assert self._static_key is not None
            key = self._prepared.get(header["alg"], self._static_key)

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
            raise refuse("malformed") from None

        principal = self._principal(payload, use)
        if self._cache is not None:
            valid_until = int(payload["exp"]) + self._config.leeway
            self._cache.put(cache_key, principal, valid_until)
            return private_copy(principal)
        return principal

    def _cache_trustworthy(self) -> bool:
        """Whether cached verdicts may be used: with a JWKS, only under the current key set.

        A key the issuer withdrew must not live on in tokens verified with
        it: a stale key set is reloaded (by the normal path) before any cached
        verdict is trusted, and a reload empties the cache.
        """
        if self._jwks is None:
            return True
        if self._jwks.is_stale():
            return False
        if self._jwks.generation != self._cache_generation:
            assert self._cache is not None
            self._cache.clear()
            self._cache_generation = self._jwks.generation
        return True

    def _prepare_static_keys(self) -> dict[str, jwt.PyJWK]:
        """The static key once per allowed algorithm, as PyJWT's prepared key.

        Given raw key material, PyJWT prepares it again on every decode (for
        an HMAC secret that includes regex checks that it is not a PEM or SSH
        key): a few percent of a handshake. A ``PyJWK`` is prepared once and
        binds its algorithm, which PyJWT then enforces against the header.
        """
        if self._static_key is None:
            return {}
        prepared: dict[str, jwt.PyJWK] = {}
        for alg in self._algorithms:
            algorithm = get_default_algorithms()[alg]
            jwk = algorithm.to_jwk(algorithm.prepare_key(self._static_key), as_dict=True)
            prepared[alg] = key = jwt.PyJWK(jwk, algorithm=alg)
            if isinstance(key.Algorithm, HMACAlgorithm) and isinstance(key.key, bytes):
                key.Algorithm = _CheckedHmac(key.Algorithm.hash_alg, key.key)
        return prepared

    def _check_header(self, token: str, use: TokenUse) -> dict[str, Any]:
        """Cheap checks on the (still untrusted) header, before any crypto.

        An accepted header is remembered by its encoded text: a verdict on the
        same characters is always the same (the header holds no time-dependent
        or per-token field), and tokens of one issuer share a handful of
        headers, so the base64 + JSON parse (~2.5% of a connect) runs once per
        header. Refusals are not remembered. The signature still covers the
        header on every decode.
        """
        segment = token.partition(".")[0]
        known = self._headers.get((segment, use))
        if known is not None:
            return known
        header = self._parse_header(token, use)
        if len(segment) > _MAX_REMEMBERED_HEADER:
            return header
        if len(self._headers) >= _MAX_HEADERS:
            self._headers.clear()
        self._headers[segment, use] = header
        return header

    def _parse_header(self, token: str, use: TokenUse) -> dict[str, Any]:
        """What :meth:`_check_header` remembers: the header, checked."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise refuse("malformed") from None
        except Exception:
            raise refuse("malformed") from None
        if not isinstance(header, dict):
            raise refuse("malformed")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise refuse("bad_algorithm")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_CHARS):
            raise refuse("malformed")
        typ = header.get("typ")
        if use == "access":
            if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TYPES):
                raise refuse("wrong_token_use")
        elif not isinstance(typ, str) or typ.lower() not in _REFRESH_TYPES:
            raise refuse("wrong_token_use")
        # jku, x5u, x5c and jwk are deliberately never read.
        return header

    def _principal(self, claims: dict[str, Any], use: TokenUse) -> Principal:
        """Shape checks PyJWT does not make, then the Principal."""
        for name in ("exp", "iat", "nbf"):
            if name in claims and not _is_number(claims[name]):
                raise refuse("bad_claim")  # PyJWT would accept "exp": "9999999999"
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise refuse("bad_claim")
        jti = claims.get("jti")
        if self._config.require_jti and (not isinstance(jti, str) or not jti):
            raise refuse("bad_claim")
        roles: list[str] = []
        if "roles" in claims:
            raw = claims["roles"]
            # A bare string must not become a set of roles ("admin" -> {"admin"}
            # or, worse, set("admin") -> {"a", "d", "m", "i", "n"}).
            if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
                raise refuse("bad_claim")
            roles = raw
        if use == "access":
            if "token_use" in claims and claims["token_use"] != "access":
                raise refuse("wrong_token_use")  # null counts as present
        elif claims.get("token_use") != "refresh":
            raise refuse("wrong_token_use")
        iat = claims.get("iat")
        self._check_lifetime(float(claims["exp"]), iat, use)
        return Principal(
            sub=sub,
            roles=frozenset(roles),
            claims=dict(claims),
            expires_at=float(claims["exp"]),
            issued_at=float(iat) if iat is not None else None,
            jti=jti if isinstance(jti, str) else None,
        )

    def _check_lifetime(self, exp: float, iat: float | None, use: TokenUse) -> None:
        """``exp - iat`` (``exp - now`` without ``iat``) within the maximum for ``use``.

        ``iat`` cannot be set in the future to shorten the span: PyJWT
        refuses a future ``iat`` before this runs.
        """
        limit = self._config.max_lifetime if use == "access" else self._config.max_refresh_lifetime
        if limit is None:
            return
        start = float(iat) if iat is not None else time.time()
        if exp - start > limit + LIFETIME_SLACK:
            raise _too_long_lived()

    async def aclose(self) -> None:
        """Stop a JWKS fetch in flight and close the HTTP client we created."""
        if self._jwks is not None:
            await self._jwks.aclose()
        if self._owned_client is not None:
            await self._owned_client.aclose()
            self._owned_client = None


class _CheckedHmac(HMACAlgorithm):
    """HMAC whose configured secret is checked once, at start-up.

    PyJWT 2.15 prepares a ``PyJWK``'s key again on every decode, and for an
    HMAC secret that means checking it is not a PEM, SSH or DER key and not
    JSON: ~2.3% of a connect, for a verdict that cannot change. This
    algorithm answers the already-checked bytes for exactly that secret
    object (the one the ``PyJWK`` holds) and checks anything else as PyJWT
    does. Signing and verifying are PyJWT's own.
    """

    def __init__(self, hash_alg: Any, secret: bytes) -> None:
        super().__init__(hash_alg)
        self._secret = secret
        self._checked = super().prepare_key(secret)

    def prepare_key(self, key: str | bytes) -> bytes:
        if key is self._secret:
            return self._checked
        return super().prepare_key(key)


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
        check_common(config)
        self._config = config
        self._key: bytes | PrivateKey
        if config.secret is not None:
            self._algorithm = hmac_algorithms(config)[0]
            self._key = config.secret.encode("utf-8")
        elif config.private_key_pem is not None:
            private = load_private_key(config.private_key_pem)
            public = private.public_key()
            if config.public_key_pem is not None and public_der(
                load_public_key(config.public_key_pem)
            ) != public_der(public):
                raise ConfigurationError(
                    "the JWT private key does not belong to the configured public key"
                )
            check_key_strength(public)
            algorithms = configured(config) or (default_algorithm(public),)
            refuse_hmac_with_asymmetric(algorithms)
            fitting = [a for a in algorithms if key_fits(a, public)]
            if not fitting:
                raise ConfigurationError(
                    f"no configured JWT algorithm fits the private key ({key_label(public)})"
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
        limit = self._config.max_lifetime if use == "access" else self._config.max_refresh_lifetime
        if limit is not None and ttl > limit:
            raise ValueError(
                f"ttl {ttl:g} s is longer than the {use} token maximum ({limit:g} s): "
                "a verifier with the same settings would refuse the token"
            )
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
