"""Login throttling per client address and per user name (429 + Retry-After).

Found by the attack session: 50 concurrent guessers got ~10 guesses a
second, all 401 and never 429, and a real login waited 5.5 s behind them
in the argon2 queue. Loopback has a whole /8, so clients here bind
127.0.0.x source addresses to be different machines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from support import SECRET, demo_settings_for, free_port, serve, wsgate_process
from wsgate import LoginThrottle
from wsgate.demo.app import create_app
from wsgate.demo.auth_routes import DemoAuth
from wsgate.demo.settings import DemoSettings
from wsgate.security.login_throttle import address_key
from wsgate.stores import UserStore

PASSWORD = "correct horse battery staple"


async def add_users(database: Path) -> None:
    users = UserStore(database)
    await users.add("alice", PASSWORD)
    await users.add("bob", PASSWORD)
    await users.aclose()


def client_from(address: str) -> httpx.AsyncClient:
    """An HTTP client whose connections leave from ``address`` (another "machine")."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, timeout=60)


async def attempt(
    http: httpx.AsyncClient, url: str, user: str, password: str = "wrong"
) -> httpx.Response:
    return await http.post(f"{url}/auth/login", json={"username": user, "password": password})


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    await add_users(tmp_path / "demo.db")
    env = {"WSGATE_JWT_SECRET": SECRET, "WSGATE_DATABASE": str(tmp_path / "demo.db")}
    async with wsgate_process("demo", env=env) as (url, _output):
        yield url


async def test_fifty_guessers_are_throttled_and_a_real_user_gets_in(demo: str) -> None:
    async with client_from("127.0.0.1") as guesser:
        answers = await asyncio.gather(*(attempt(guesser, demo, "alice") for _ in range(50)))
        statuses = [r.status_code for r in answers]
        assert set(statuses) == {401, 429}, statuses
        # The default budget is 5 a minute per address: the rest never reached argon2
        # (one or two more if the burst straddles a minute boundary: sliding windows).
        assert statuses.count(401) <= 7 and statuses.count(429) >= 43
        for refused in (r for r in answers if r.status_code == 429):
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        # The guesser keeps going while the real user signs in from elsewhere.
        more = asyncio.gather(*(attempt(guesser, demo, "alice") for _ in range(50)))
        async with client_from("127.0.0.2") as real:
            started = time.monotonic()
            ok = await attempt(real, demo, "alice", PASSWORD)
            took = time.monotonic() - started
        later = await more
    assert ok.status_code == 200, ok.text
    # Sliding-window counters: past a minute boundary the previous minute's count fades,
    # so a guess or two may be let through again; never more than a budget's worth.
    later_statuses = [r.status_code for r in later]
    assert set(later_statuses) <= {401, 429}
    assert statuses.count(401) + later_statuses.count(401) <= 10
    print(f"real login behind 100 throttled guesses: {took * 1000:.0f} ms")


async def test_many_addresses_guessing_one_name_hit_the_user_budget(tmp_path: Path) -> None:
    await add_users(tmp_path / "demo.db")
    env = {
        "WSGATE_JWT_SECRET": SECRET,
        "WSGATE_DATABASE": str(tmp_path / "demo.db"),
        # Day-long windows: the sliding-window counter lets one more in right after a
        # window boundary, which a test spanning a minute boundary would otherwise see.
        "WSGATE_LOGIN_LIMIT_PER_ADDRESS": "3/day",
        "WSGATE_LOGIN_LIMIT_PER_USER": "8/day",
    }
    async with wsgate_process("demo", env=env) as (url, _output):
        answers: list[httpx.Response] = []
        for host in range(3, 9):  # six "machines", each within its own budget of 3
            async with client_from(f"127.0.0.{host}") as http:
                answers += [await attempt(http, url, "alice") for _ in range(2)]
        statuses = [r.status_code for r in answers]
        assert statuses[:8] == [401] * 8 and statuses[8:] == [429] * 4, statuses
        async with client_from("127.0.0.20") as http:
            # alice is throttled from everywhere for this window; bob is not.
            assert (await attempt(http, url, "alice", PASSWORD)).status_code == 429
            assert (await attempt(http, url, "bob", PASSWORD)).status_code == 200


async def test_throttled_attempts_cost_no_password_hashing(tmp_path: Path) -> None:
    """Counted in process: every 429 is answered without calling the user store."""
    database = tmp_path / "demo.db"
    await add_users(database)
    port = free_port()
    app = create_app(demo_settings_for(port, database=database, login_limit_per_address="5/day"))
    auth = next(
        route.endpoint.__self__
        for route in app.http.routes
        if isinstance(getattr(getattr(route, "endpoint", None), "__self__", None), DemoAuth)
    )
    checks = 0
    authenticate = auth.users.authenticate

    async def counted(name: str, password: str) -> Any:
        nonlocal checks
        checks += 1
        return await authenticate(name, password)

    auth.users.authenticate = counted  # type: ignore[method-assign]
    async with serve(app, port) as url, httpx.AsyncClient(timeout=60) as http:
        answers = await asyncio.gather(*(attempt(http, url, "alice") for _ in range(50)))
    statuses = [r.status_code for r in answers]
    assert checks == statuses.count(401) <= 5
    assert statuses.count(429) == 50 - checks


async def test_throttle_counts_ipv6_per_64_and_ipv4_mapped_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert address_key(None) == "unknown"


async def test_retry_after_tells_when_the_window_frees() -> None:
    throttle = LoginThrottle("2/day", "100/day")
    try:
        assert await throttle.attempt("203.0.113.7", "alice") is None
        assert await throttle.attempt("203.0.113.7", "alice") is None
        refused = await throttle.attempt("203.0.113.7", "alice")
        assert refused is not None and refused.scope == "address"
        assert 1 <= refused.retry_after <= 86_400
        assert await throttle.attempt("203.0.113.8", "alice") is None  # another address
    finally:
        await throttle.aclose()


async def test_a_shared_throttle_counts_across_nodes(redis_url: str) -> None:
    prefix = f"wsgate-test-{time.time_ns()}"
    first = LoginThrottle("3/day", "100/day", redis_url=redis_url, prefix=prefix)
    second = LoginThrottle("3/day", "100/day", redis_url=redis_url, prefix=prefix)
    try:
        results = [await node.attempt("203.0.113.9", "alice") for node in (first, second) * 2]
    finally:
        await first.aclose()
        await second.aclose()
    assert results[:3] == [None, None, None] and results[3] is not None


async def test_the_throttle_fails_closed_when_redis_is_down() -> None:
    from wsgate import StoreUnavailable

    throttle = LoginThrottle("3/minute", "10/minute", redis_url="redis://127.0.0.1:1/0")
    try:
        with pytest.raises(StoreUnavailable):
            await throttle.attempt("203.0.113.9", "alice")
    finally:
        await throttle.aclose()


@pytest.mark.parametrize("bad", ["lots", "", "0/minute"])
def test_a_limit_that_does_not_parse_stops_the_start(bad: str) -> None:
    with pytest.raises(ValidationError):
        DemoSettings(jwt_secret=SECRET, login_limit_per_address=bad)


async def test_the_in_process_table_is_bounded() -> None:
    """A spray of addresses and names fills the table, then is refused; memory stays bounded."""
    throttle = LoginThrottle("5/minute", "20/minute", max_entries=40)
    try:
        verdicts = [await throttle.attempt(f"203.0.113.{i}", f"name{i}") for i in range(60)]
        assert throttle.entries <= 40 + 4  # one attempt adds at most 2 windows x 2 scopes
    finally:
        await throttle.aclose()
    assert verdicts[0] is None
    full = [v for v in verdicts if v is not None]
    assert full and all(v.scope == "capacity" and v.retry_after >= 1 for v in full)


async def test_behind_a_trusted_proxy_the_forwarded_address_counts(tmp_path: Path) -> None:
    await add_users(tmp_path / "demo.db")
    env = {
        "WSGATE_JWT_SECRET": SECRET,
        "WSGATE_DATABASE": str(tmp_path / "demo.db"),
        "WSGATE_TRUSTED_PROXIES": "127.0.0.1",
        "WSGATE_LOGIN_LIMIT_PER_ADDRESS": "5/day",  # no window boundary inside the test
    }
    async with wsgate_process("demo", env=env) as (url, _output), httpx.AsyncClient() as proxy:

        async def via(client_ip: str, password: str = "wrong") -> httpx.Response:
            return await proxy.post(
                f"{url}/auth/login",
                json={"username": "alice", "password": password},
                headers={"X-Forwarded-For": client_ip},
            )

        guesses = [await via("203.0.113.66") for _ in range(7)]
        assert [r.status_code for r in guesses] == [401] * 5 + [429] * 2
        # Everyone else comes through the same proxy, from other addresses: not throttled.
        assert (await via("198.51.100.7", PASSWORD)).status_code == 200
