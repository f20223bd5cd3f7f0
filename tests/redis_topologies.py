"""Redis Sentinel and Redis Cluster set-ups of our own, on free ports, for the tests.

Each is a context manager that starts ``redis-server`` processes (a master,
a replica and a sentinel; or three cluster masters), waits until they are
ready (bounded), yields the ``redis_url`` wsgate takes, and stops exactly the
processes it started, by PID. Nothing persists: each server gets
``--save "" --appendonly no`` and a directory under the test's tmp_path.
``redis-sentinel`` is not needed: ``redis-server CONF --sentinel`` is the
same program.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import RedisError

from conftest import missing_service
from wsgate.stores.redis_urls import slot_owner_of

SERVICE = "wsgate-test"


def redis_binaries() -> None:
    """Skip (locally) or fail (CI) when the Redis programs are missing."""
    for program in ("redis-server", "redis-cli"):
        if shutil.which(program) is None:
            missing_service(f"{program} is not installed")


def cluster_free_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class Servers:
    """The processes of one set-up, stopped in reverse order of start."""

    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    async def start(self, name: str, *args: str, cwd: Path) -> asyncio.subprocess.Process:
        await asyncio.to_thread(cwd.mkdir, parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            "redis-server",
            *args,
            cwd=str(cwd),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    async def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.returncode is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_until(check: object, what: str, attempts: int = 600) -> None:
    """Await ``check()`` until it is truthy (0.1 s apart, bounded)."""
    for _ in range(attempts):
        with contextlib.suppress(RedisError, OSError):
            if await check():  # type: ignore[operator]
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def server_args(port: int) -> list[str]:
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


@contextlib.asynccontextmanager
async def sentinel_setup(tmp_path: Path) -> AsyncIterator[tuple[str, Servers]]:
    """A master, a replica and one sentinel; yields ``redis+sentinel://...`` for them."""
    redis_binaries()
    servers = Servers()
    master, replica, sentinel = cluster_free_port(), cluster_free_port(), cluster_free_port()
    servers.ports = {"master": master, "replica": replica, "sentinel": sentinel}
    try:
        await servers.start("master", *server_args(master), cwd=tmp_path / "master")
        await servers.start(
            "replica",
            *server_args(replica),
            "--replicaof",
            "127.0.0.1",
            str(master),
            cwd=tmp_path / "replica",
        )
        conf = tmp_path / "sentinel" / "sentinel.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"port {sentinel}\n"
            "bind 127.0.0.1\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        await servers.start("sentinel", str(conf), "--sentinel", cwd=conf.parent)

        async def replica_synced() -> bool:
            async with aioredis.Redis(port=replica) as client:
                info = await client.info("replication")
                return bool(info.get("master_link_status") == "up")

        async def sentinel_knows() -> bool:
            # The master and its replica: the sentinel learns replicas from the master's
            # INFO (every 10 s), and a failover with no known replica never happens.
            async with aioredis.Redis(port=sentinel) as client:
                addr = await client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
                replicas = await client.execute_command("SENTINEL", "replicas", SERVICE)
                return bool(addr) and bool(replicas)

        await wait_until(replica_synced, "the replica to sync")
        await wait_until(sentinel_knows, "the sentinel to know the master and its replica")
        yield f"redis+sentinel://127.0.0.1:{sentinel}/{SERVICE}/0", servers
    finally:
        await servers.stop()


@contextlib.asynccontextmanager
async def cluster_setup(
    tmp_path: Path, *, replica_for: str | None = None
) -> AsyncIterator[tuple[str, Servers]]:
    """Three cluster masters, slots spread by ``redis-cli --cluster create``.

    With ``replica_for`` (a key), a fourth node joins as the replica of the
    master owning that key's slot (``servers.ports["replica"]``), ready for
    a ``CLUSTER FAILOVER``.
    """
    redis_binaries()
    servers = Servers()
    ports = [cluster_free_port() for _ in range(4 if replica_for else 3)]
    try:
        for index, port in enumerate(ports):
            servers.ports[f"node{index}"] = port
            await servers.start(
                f"node{index}",
                *server_args(port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "2000",
                cwd=tmp_path / f"cluster-{port}",
            )

        async def answers(port: int) -> bool:
            async with aioredis.Redis(port=port) as client:
                return bool(await client.ping())

        for port in ports:
            await wait_until(lambda port=port: answers(port), f"cluster node {port}")
        create = await asyncio.create_subprocess_exec(
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in ports[:3]),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(create.communicate(), 60)
        if create.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed:\n" + output.decode())

        async def cluster_ok(port: int) -> bool:
            async with aioredis.Redis(port=port) as client:
                info = await client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                return "cluster_state:ok" in text

        for port in ports[:3]:
            await wait_until(lambda port=port: cluster_ok(port), f"cluster state ok on {port}")
        if replica_for is not None:
            servers.ports["replica"] = ports[3]
            await add_replica(ports[3], ports[0], replica_for)
        nodes = ",".join(f"127.0.0.1:{port}" for port in ports[:3])
        yield f"redis+cluster://{nodes}", servers
    finally:
        await servers.stop()


async def add_replica(replica: int, member: int, key: str) -> None:
    """Make the node on ``replica`` the replica of the master owning ``key``'s slot."""
    owner = await slot_owner(member, key)
    async with aioredis.Redis(host=owner[0], port=owner[1]) as master:
        owner_id = _text(await master.execute_command("CLUSTER", "MYID"))
    async with aioredis.Redis(port=replica) as client:
        await client.execute_command("CLUSTER", "MEET", "127.0.0.1", member)

        async def knows_owner() -> bool:
            nodes = _text(await client.execute_command("CLUSTER", "NODES"))
            return owner_id in nodes

        await wait_until(knows_owner, "the new node to meet the cluster")
        await client.execute_command("CLUSTER", "REPLICATE", owner_id)

        async def synced() -> bool:
            info = await client.info("replication")
            return bool(info.get("master_link_status") == "up")

        await wait_until(synced, "the cluster replica to sync")


async def slot_owner(port: int, key: str) -> tuple[str, int]:
    """The master ``(host, port)`` owning ``key``'s slot, as the node on ``port`` sees it."""
    async with aioredis.Redis(port=port) as client:
        ranges = await client.execute_command("CLUSTER SLOTS")
    owner = slot_owner_of(ranges, key_slot(key.encode()))
    assert owner is not None
    return owner


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
