"""Fan-out through Redis: deliveries/s and CPU per delivery, one node vs three; a connect storm.

    .venv/bin/python bench/redis_fanout.py [--listeners 300] [--messages 200] [--storm 1000]

Starts its own ``redis-server`` on a free port and ``wsgate demo`` nodes
sharing it (all on 127.0.0.1). Listeners (plain ``/ws`` clients, spread
over the nodes) join one room; senders on node 1 say ``--messages``
messages in total, each waiting for its ack (so the Redis round trip is in
the path). Reported: deliveries per second of wall time, and CPU seconds of
all server processes (from /proc) per delivery. A ratio between the one-
and three-node runs, on the same machine in the same run, is what to read;
absolute numbers depend on the machine and its load. Nothing here is
asserted.

The storm opens ``--storm`` websocket connections to one node at once and
counts how many are accepted, and how long the last one took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import websockets

SECRET = "bench-secret-" + "x" * 32
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def token(sub: str) -> str:
    now = time.time()
    claims = {"sub": sub, "iat": now, "exp": now + 3600, "jti": os.urandom(8).hex()}
    claims["token_use"] = "access"
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextlib.asynccontextmanager
async def redis_server(workdir: Path) -> AsyncIterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(workdir), "--maxclients", "10000"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        await asyncio.sleep(0.3)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@contextlib.asynccontextmanager
async def nodes(redis_url: str, count: int, workdir: Path) -> AsyncIterator[list[tuple[str, int]]]:
    procs = []
    try:
        for _ in range(count):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
            command = [sys.executable, "-m", "wsgate", "demo", "--port", str(port)]
            command += ["--host", "127.0.0.1", "--jwt-secret", SECRET, "--redis-url", redis_url]
            command += ["--database", str(workdir / "bench.db"), "--log-level", "warning"]
            command += ["--rate-limit", "100000", "--max-pending-handshakes", "5000"]
            command += ["--max-pending-handshakes-per-address", "5000", "--connect-timeout", "120"]
            proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
                command,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append((f"http://127.0.0.1:{port}", proc))
        async with httpx.AsyncClient() as http:
            for url, _ in procs:
                for _ in range(400):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"{url}/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
        yield [(url, proc.pid) for url, proc in procs]
    finally:
        for _, proc in procs:
            proc.terminate()
        for _, proc in procs:
            proc.wait(15)


async def open_ws(url: str, sub: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        url.replace("http", "ws") + "/ws", open_timeout=120, max_size=None
    )
    await ws.send(json.dumps({"type": "auth", "token": token(sub)}))
    frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
    if frame.get("event") != "ready":
        raise RuntimeError(f"refused: {frame}")
    return ws


async def fanout(redis_url: str, count: int, listeners: int, messages: int, work: Path) -> dict:
    async with nodes(redis_url, count, work) as running:
        urls = [url for url, _ in running]
        ears = []
        for index in range(listeners):
            ws = await open_ws(urls[index % count], f"ear{index}")
            await ws.send(json.dumps({"id": 1, "event": "join", "data": {"room": "bench"}}))
            await ws.recv()
            ears.append(ws)
        senders = [await open_ws(urls[0], f"mouth{i}") for i in range(4)]
        for ws in senders:
            await ws.send(json.dumps({"id": 1, "event": "join", "data": {"room": "bench"}}))
            await ws.recv()
        expected = messages * listeners
        received = 0
        done = asyncio.Event()

        async def drain(ws: websockets.ClientConnection) -> None:
            nonlocal received
            async for raw in ws:
                if '"message"' in str(raw):
                    received += 1
                    if received >= expected:
                        done.set()

        readers = [asyncio.create_task(drain(ws)) for ws in ears]
        cpu_before = sum(cpu_seconds(pid) for _, pid in running)
        started = time.perf_counter()

        async def talk(ws: websockets.ClientConnection, share: int) -> None:
            for number in range(share):
                text = json.dumps({"room": "bench", "text": f"m{number}"})
                await ws.send(f'{{"id": {number + 10}, "event": "say", "data": {text}}}')
                async for raw in ws:
                    if f'"id": {number + 10}' in str(raw) or f'"id":{number + 10}' in str(raw):
                        break

        await asyncio.gather(*(talk(ws, messages // len(senders)) for ws in senders))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - started
        cpu = sum(cpu_seconds(pid) for _, pid in running) - cpu_before
        for task in readers:
            task.cancel()
        for ws in ears + senders:
            await ws.close()
        return {
            "nodes": count,
            "deliveries": received,
            "expected": expected,
            "seconds": round(elapsed, 2),
            "deliveries_per_s": round(received / elapsed),
            "server_cpu_us_per_delivery": round(cpu / max(received, 1) * 1e6, 1),
        }


async def storm(redis_url: str, size: int, work: Path) -> dict:
    async with nodes(redis_url, 1, work) as running:
        url = running[0][0]
        started = time.perf_counter()
        results = await asyncio.gather(
            *(open_ws(url, f"storm{i}") for i in range(size)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
        accepted = [r for r in results if not isinstance(r, BaseException)]
        for ws in accepted:
            await ws.close()
        return {"storm": size, "accepted": len(accepted), "seconds": round(elapsed, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=300)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--storm", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        async with redis_server(work) as url:
            for count in (1, 3):
                print(json.dumps(await fanout(url, count, args.listeners, args.messages, work)))
            print(json.dumps(await storm(url, args.storm, work)))


if __name__ == "__main__":
    asyncio.run(main())
