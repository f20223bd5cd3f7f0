"""Scenario 5: what verifying one JWT costs, per algorithm, and what a cache saves.

Why: the token is verified on the connect path, so in a reconnect storm
(a deploy, a load-balancer flap, a laptop waking up thousands of tabs) the
verifier is the hot loop. This measures PyJWT's ``decode`` for HS256, RS256
(2048-bit), ES256 (P-256) and EdDSA (Ed25519) with keys loaded once, as a real
verifier holds them, and the cost of a hit in a verified-token cache: a dict
keyed by the SHA-256 of the token, holding the verified claims until ``exp``.
A cache hit still has to check ``exp`` (done here) and revocation (a set
lookup, not measured: it is paid with or without the cache).

It is in-process and target-independent (wsgate verifies with the same
PyJWT); run.py prints it as its own table. Standalone:
``.venv/bin/python bench/jwt_cost.py [--quick]``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.types import Options

STORM = 5000
"""Reconnects in the storm the table prices (each with a token already seen)."""


@dataclass(frozen=True)
class Row:
    """One algorithm's figures, in microseconds per token (medians over repetitions)."""

    alg: str
    verify_us: float
    verify_min_us: float
    verify_max_us: float
    hit_us: float
    miss_us: float

    @property
    def saving(self) -> float:
        """How many times cheaper a cache hit is than a verification."""
        return self.verify_us / self.hit_us if self.hit_us else float("inf")

    def storm_ms(self, per_token_us: float) -> float:
        """Milliseconds of CPU for STORM reconnects at ``per_token_us`` each."""
        return per_token_us * STORM / 1000


def keys() -> dict[str, tuple[Any, Any]]:
    """(signing key, verification key) per algorithm, generated fresh for the run."""
    secret = "bench-" + "s" * 42  # 48 bytes: RFC 7518 wants >= 256 bits for HS256
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return {
        "HS256": (secret, secret),
        "RS256": (rsa_key, rsa_key.public_key()),
        "ES256": (ec_key, ec_key.public_key()),
        "EdDSA": (ed_key, ed_key.public_key()),
    }


def mint(alg: str, signing_key: Any) -> str:
    """An access token shaped like the demo's (typ at+jwt, token_use, jti, roles)."""
    now = int(time.time())
    claims = {
        "sub": "bench-user",
        "iat": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
        "roles": ["user"],
        "token_use": "access",
    }
    return jwt.encode(claims, signing_key, algorithm=alg, headers={"typ": "at+jwt"})


def per_call_us(fn: Callable[[], object], max_calls: int, max_seconds: float) -> float:
    """Mean microseconds per call of ``fn``, bounded in count and in time."""
    fn()  # warm: first-call imports and caches are not the steady cost
    calls = 0
    batch = 50
    start = time.perf_counter()
    deadline = start + max_seconds
    while calls < max_calls:
        for _ in range(batch):
            fn()
        calls += batch
        if time.perf_counter() >= deadline:
            break
    return (time.perf_counter() - start) / calls * 1e6


def measure(quick: bool = False, reps: int = 3) -> list[Row]:
    """Run the microbenchmark; ``quick`` shortens each timing window."""
    seconds = 0.25 if quick else 1.0
    max_calls = 200_000
    rows: list[Row] = []
    for alg, (signing_key, verify_key) in keys().items():
        token = mint(alg, signing_key)
        options: Options = {"require": ["sub", "exp", "jti"]}

        def verify(
            token: str = token,
            key: Any = verify_key,
            alg: str = alg,
            options: Options = options,
        ) -> dict[str, Any]:
            return jwt.decode(token, key, algorithms=[alg], options=options)

        cache: dict[bytes, dict[str, Any]] = {}

        def lookup(token: str = token, cache: dict[bytes, dict[str, Any]] = cache) -> Any:
            claims = cache.get(hashlib.sha256(token.encode()).digest())
            if claims is not None and claims["exp"] > time.time():
                return claims
            return None

        def miss(
            token: str = token,
            cache: dict[bytes, dict[str, Any]] = cache,
            verify: Callable[[], dict[str, Any]] = verify,
        ) -> dict[str, Any]:
            cache.clear()
            if lookup() is not None:
                raise AssertionError("cache should be empty")
            claims = verify()
            cache[hashlib.sha256(token.encode()).digest()] = claims
            return claims

        verifies: list[float] = []
        hits: list[float] = []
        misses: list[float] = []
        for _ in range(reps):
            verifies.append(per_call_us(verify, max_calls, seconds))
            miss()
            if lookup() is None:
                raise AssertionError("cache hit expected")
            hits.append(per_call_us(lookup, max_calls, seconds))
            misses.append(per_call_us(miss, max_calls, seconds))
        rows.append(
            Row(
                alg=alg,
                verify_us=statistics.median(verifies),
                verify_min_us=min(verifies),
                verify_max_us=max(verifies),
                hit_us=statistics.median(hits),
                miss_us=statistics.median(misses),
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    """A Markdown table of the rows, for the terminal and for bench/README.md."""
    lines = [
        "| alg | verify µs/token (min-max) | verifies/s | cache hit µs | cache miss µs "
        f"| hit saves | {STORM:,} reconnects: verify ms | with cache ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.alg} | {r.verify_us:.1f} ({r.verify_min_us:.1f}-{r.verify_max_us:.1f}) "
            f"| {1e6 / r.verify_us:,.0f} | {r.hit_us:.2f} | {r.miss_us:.1f} "
            f"| {r.saving:.0f}x | {r.storm_ms(r.verify_us):.1f} | {r.storm_ms(r.hit_us):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Standalone entry: print the table."""
    parser = argparse.ArgumentParser(description="JWT verification cost per algorithm")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(table(measure(quick=args.quick)))


if __name__ == "__main__":
    main()
