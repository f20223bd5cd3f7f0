"""How long a real login takes while guessers flood ``POST /auth/login`` (issue 11).

The attack session measured 5.5 s for a real login behind 50 concurrent
guessers (every guess paid a full argon2 verification in a queue of two).
With the login throttle, guesses past the per-address budget are answered
429 without hashing. This prints the ratio of a real login's latency during
a flood to its latency on an idle server, both measured in the same run; a
ratio near 1 means the guessers do not slow real users down.

The guessers run in a separate process (their HTTP client's CPU must not be
counted against the server); the real user connects from another loopback
address (127.0.0.x), as other machines would.

Run: ``.venv/bin/python bench/login_flood.py [--guessers 50] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from wsgate.stores import UserStore

SECRET = "bench-secret-long-enough-for-hs256-0123456789abcdef"
PASSWORD = "correct horse battery staple"

GUESSER = """
import asyncio, sys, httpx
async def main(url, n, seconds):
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as http:
        end = asyncio.get_running_loop().time() + seconds
        async def one():
            while asyncio.get_running_loop().time() < end:
                await http.post(url + "/auth/login", json={"username": "alice", "password": "x"})
        await asyncio.gather(*(one() for _ in range(n)))
asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def real_login(url: str, host: int) -> float:
    """One real login from 127.0.0.HOST (each its own "machine", within its own budget)."""
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{host}")
    async with httpx.AsyncClient(transport=transport, timeout=60) as http:
        started = time.perf_counter()
        resp = await http.post(
            f"{url}/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        took = time.perf_counter() - started
    if resp.status_code != 200:
        raise RuntimeError(f"real login answered {resp.status_code}")
    return took


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guessers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    users = UserStore(folder / "demo.db")
    await users.add("alice", PASSWORD)
    await users.aclose()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "WSGATE_JWT_SECRET": SECRET,
        "WSGATE_DATABASE": str(folder / "demo.db"),
        # The real user must stay within budget over all rounds.
        "WSGATE_LOGIN_LIMIT_PER_USER": "1000/minute",
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsgate", "demo", "--host", "127.0.0.1", "--port", str(port),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        await real_login(url, 2)  # warm-up: the dummy hash, the database
        idle = [await real_login(url, 10 + i) for i in range(args.rounds)]
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-c", GUESSER, url, str(args.guessers), str(2 + args.rounds),
        )  # fmt: skip
        await asyncio.sleep(1.0)  # the guessers use up their budget and are throttled
        busy = [await real_login(url, 100 + i) for i in range(args.rounds)]
        await flood.wait()
    finally:
        server.terminate()
        await server.wait()
    idle_ms, busy_ms = statistics.median(idle) * 1000, statistics.median(busy) * 1000
    print(f"real login, idle server:            median {idle_ms:.0f} ms")
    print(f"real login, {args.guessers} guessers flooding: median {busy_ms:.0f} ms")
    print(f"ratio flood/idle: {busy_ms / idle_ms:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
