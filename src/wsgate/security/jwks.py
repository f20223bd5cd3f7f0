"""The JWKS key cache: verification keys fetched from the configured URL.

Split out of :mod:`wsgate.security.jwt` because fetching keys is its own
concern, with its own failure modes. The key is chosen from keys we fetched
from the configured JWKS URL, never from the token (``jku``, ``x5u``,
``x5c`` and ``jwk`` headers are never read; ``kid`` only selects among keys
we already have). The cache cannot be turned into a request flood by an
attacker (one fetch per ``jwks_min_refresh_interval``, shared by concurrent
callers) and refuses tokens when keys cannot be fetched (fail closed).
Nothing here logs tokens or key material.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Final
from urllib.parse import urlsplit

import httpx
import jwt

from wsgate.errors import ConfigurationError
from wsgate.security.jwt_config import MAX_KID_CHARS, key_fits, refuse

# Same logger as the verifier: operators (and log tests) follow one name.
logger = logging.getLogger("wsgate.security.jwt")

JWKS_FETCH_TIMEOUT: Final = 5.0
JWKS_MAX_BYTES: Final = 1024 * 1024
#: A JWKS older than this is refetched on the next verification (still at
#: most once per ``jwks_min_refresh_interval``), so that keys the issuer
#: withdrew stop being accepted even when no unknown ``kid`` shows up.
JWKS_MAX_AGE: Final = 3600.0


def check_jwks_url(url: str) -> None:
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
# JWKS
# --------------------------------------------------------------------------


class JwksKeys:
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
        self.generation = 0
        """Bumped on every successful load, so caches of verified tokens can follow key changes."""
        self._last_attempt: float | None = None
        self._loaded_at: float | None = None
        self._last_ok = False
        self._inflight: asyncio.Task[bool] | None = None

    def is_stale(self) -> bool:
        """Whether the key set is due for a reload (never loaded, or older than JWKS_MAX_AGE)."""
        return self._loaded_at is None or time.monotonic() - self._loaded_at > JWKS_MAX_AGE

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key for this token header, refetching (rarely) when unknown."""
        if self.is_stale():
            await self._refresh()
        key = self._lookup(kid, alg)
        if key is not None:
            return key
        if kid is not None and kid in self._kids:
            # The kid is known, only not for this algorithm: refetching
            # would not change that.
            raise refuse("bad_algorithm")
        # An unknown kid may mean the issuer rotated its keys.
        if (kid is not None or self._distinct == 0) and await self._refresh():
            key = self._lookup(kid, alg)
            if key is not None:
                return key
        if self._loaded_at is None or not self._last_ok:
            # Debug only: the fetch failure itself was logged once, at warning;
            # one line per refused token would let an attacker flood the log.
            logger.debug("JWT refused: no JWKS keys available from %s (fail closed)", self._log_url)
            raise refuse("jwks_unavailable")
        raise refuse("unknown_kid")

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
        self.generation += 1
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
                if not key_fits(alg, jwk.key) or (
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
