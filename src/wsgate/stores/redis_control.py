"""The control plane on Redis: requests to every node, answers back, and who is alive.

Remote operations (:mod:`wsgate.core.remote`) ask every node and wait, up
to a timeout, for the answers. Pub/sub fits: a request is worth nothing
once its caller stopped waiting, so nothing is stored or replayed (unlike
broadcasts, which go through the fan-out stream). Names (all under the
deployment's hash-tagged prefix, so they stay in one Cluster slot and apart
from other deployments):

- ``{P}:control``: requests, published to every node;
- ``{P}:node:<node_id>``: answers addressed to the node that asked;
- ``{P}:nodes``: a sorted set of live nodes, scored by the expiry of their
  presence lease in Redis' own clock; each node renews its own every
  :data:`PRESENCE_EVERY` seconds. A request waits for the nodes alive when
  it was sent; those that do not answer in time are named as missing, so a
  partial answer is never taken for a complete one.

Bounds: at most :data:`MAX_PENDING` requests of this node wait for answers
at once (more are refused as unavailable), and at most
:data:`MAX_HANDLING` requests of other nodes are handled here at once (more
are dropped: the asker sees this node as missing). Every message is JSON
checked on arrival; one that is not what it should be is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from redis.exceptions import RedisError

from wsgate.stores.redis_connector import DEFAULT_TIMEOUT, RedisConnector
from wsgate.stores.revocation import StoreUnavailable

log = logging.getLogger("wsgate.stores")

Handler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]
"""This node's answer to another node's request (the core's remote operations)."""
Answers = tuple[dict[str, Mapping[str, Any]], tuple[str, ...]]
"""The answers by node, and the live nodes that gave none in time."""

PRESENCE_LEASE = 15.0
"""Seconds a node counts as alive after its last presence renewal."""
PRESENCE_EVERY = 5.0
"""Seconds between presence renewals."""
MAX_PENDING = 256
"""Requests of this node waiting for answers at once."""
MAX_HANDLING = 256
"""Requests of other nodes being handled here at once."""
RECONNECT_CAP = 1.0
"""Longest wait between subscription attempts (with jitter)."""
STALE_CHECK_EVERY = 0.5
"""Longest wait on the subscription before looking whether an outage made it suspect."""

# KEYS[1] the node set; ARGV: lease ms, this node (or "" to only read). Drops
# expired nodes, renews this one, returns the live ones.
_PRESENCE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[2] ~= '' then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


class RedisControl:
    """Requests and answers between the nodes sharing one Redis (see the module docstring).

    Built from a URL (``prefix`` and ``timeout`` then apply) or from the
    node's shared :class:`~wsgate.stores.redis_connector.RedisConnector`.
    """

    def __init__(
        self,
        url: str | RedisConnector,
        *,
        prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        node_id: str | None = None,
    ) -> None:
        self.connector = RedisConnector.shared(url, prefix=prefix, timeout=timeout)
        self.keys = self.connector.keys
        self.timeout = self.connector.timeout
        self.node_id = node_id or uuid.uuid4().hex
        self.requests_channel = self.keys.name("control")
        self.answers_channel = self.keys.node_channel(self.node_id)
        self.nodes_key = self.keys.name("nodes")
        self._client: Any = self.connector.client
        self._presence = self._client.register_script(_PRESENCE_LUA)
        self._handler: Handler | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._pending: dict[str, _Pending] = {}
        self._handling: set[asyncio.Task[None]] = set()
        self._closed = False
        self._subscribed_at = float("inf")
        self._stale = False
        self.connector.health.on_recover(self._outage_ended)

    async def _outage_ended(self) -> None:
        """Renew a subscription made before the outage: its connection is suspect.

        A subscription whose peer vanished without closing (a partition, a
        failover to another address) reads nothing for ever: other nodes'
        requests would never reach this one, nor their answers.
        """
        if self._subscribed_at < self.connector.health.outage_began:
            self._stale = True

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, handler: Handler) -> None:
        self._handler = handler
        self.connector.start()
        if self._closed or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="wsgate-control")

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109
        """True once the subscription is live (within ``timeout`` seconds)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self._ready.is_set()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._task, *self._handling) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pending in self._pending.values():
            pending.done.set()
        with contextlib.suppress(RedisError, OSError, StoreUnavailable):
            await self._client.zrem(self.nodes_key, self.node_id)
        await self.connector.aclose()

    # -- asking -------------------------------------------------------------------------

    async def ask(self, request: dict[str, Any], timeout: float) -> Answers:  # noqa: ASYNC109
        """Publish ``request`` to every node and gather their answers (see the module doc)."""
        if self._closed:
            raise StoreUnavailable("the control plane is closed")
        # Our answers channel must be live before asking, or answers are lost.
        if not await self.wait_ready(min(timeout, self.timeout)):
            raise StoreUnavailable("the control subscription is not live")
        self.connector.check("ask")
        try:
            alive = await self._presence(
                keys=[self.nodes_key], args=[int(PRESENCE_LEASE * 1000), ""]
            )
        except RedisError as exc:
            raise self.connector.health.failed("ask", exc) from exc
        expected = {_text(node) for node in alive} - {self.node_id}
        # Checked where the entry is added (no await between): concurrent asks
        # cannot all pass the check before any of them registers.
        if len(self._pending) >= MAX_PENDING:
            raise StoreUnavailable("too many remote operations waiting for answers")
        request_id = uuid.uuid4().hex
        pending = _Pending(expected)
        self._pending[request_id] = pending
        try:
            message = _encode({**request, "id": request_id, "from": self.node_id})
            try:
                # execute_command: redis-py 5's async RedisCluster has no publish().
                await self._client.execute_command("PUBLISH", self.requests_channel, message)
            except RedisError as exc:
                raise self.connector.health.failed("ask", exc) from exc
            if expected:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pending.done.wait(), timeout)
        finally:
            del self._pending[request_id]
        missing = tuple(sorted(expected - pending.replies.keys()))
        return dict(pending.replies), missing

    # -- the subscription ---------------------------------------------------------------

    async def _follow(self) -> None:
        delay = 0.05
        while not self._closed:
            client = self.connector.dedicated("control")
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.requests_channel, self.answers_channel)
                confirmed = 0
                while confirmed < 2:  # both subscriptions confirmed: nothing is lost from here
                    message = await pubsub.get_message(timeout=self.timeout)
                    if message is None:
                        raise StoreUnavailable("Redis did not confirm the control subscription")
                    if message.get("type") == "subscribe":
                        confirmed += 1
                self._subscribed_at = time.monotonic()
                self._stale = False
                await self._renew_presence()
                self._ready.set()
                delay = 0.05
                renew_at = time.monotonic() + PRESENCE_EVERY
                while True:
                    if self._stale:
                        raise StoreUnavailable("Redis came back after an outage")
                    wait = min(max(renew_at - time.monotonic(), 0.0), STALE_CHECK_EVERY)
                    message = await pubsub.get_message(timeout=wait)
                    if message is not None and message.get("type") == "message":
                        self._received(message.get("channel"), message.get("data"))
                    if time.monotonic() >= renew_at:
                        await self._renew_presence()
                        renew_at = time.monotonic() + PRESENCE_EVERY
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, StoreUnavailable) as exc:
                if self._ready.is_set():
                    log.error("control subscription lost (%s); reconnecting", type(exc).__name__)
                self._ready.clear()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311  (jitter)
            delay = min(delay * 2, RECONNECT_CAP)

    async def _renew_presence(self) -> None:
        await self._presence(keys=[self.nodes_key], args=[int(PRESENCE_LEASE * 1000), self.node_id])

    def _received(self, channel: Any, data: Any) -> None:
        try:
            message = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            log.warning("ignored a malformed control message")
            return
        if not isinstance(message, dict):
            return
        if _text(channel) == self.answers_channel:
            self._answer_arrived(message)
            return
        sender = message.get("from")
        request_id = message.get("id")
        if sender == self.node_id or not isinstance(sender, str) or not isinstance(request_id, str):
            return  # our own request (answered locally already), or not a request
        if len(self._handling) >= MAX_HANDLING or self._handler is None:
            log.warning("dropped a remote request: %d already being handled", MAX_HANDLING)
            return
        task = asyncio.get_running_loop().create_task(self._answer(sender, request_id, message))
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    def _answer_arrived(self, message: Mapping[str, Any]) -> None:
        pending = self._pending.get(message.get("re"))  # type: ignore[arg-type]
        node = message.get("node")
        reply = message.get("reply")
        if pending is None or not isinstance(node, str) or not isinstance(reply, dict):
            return  # late (the asker stopped waiting), or not an answer
        pending.add(node, reply)

    async def _answer(self, sender: str, request_id: str, request: Mapping[str, Any]) -> None:
        assert self._handler is not None
        reply = await self._handler(request)
        message = _encode({"re": request_id, "node": self.node_id, "reply": reply})
        try:
            await self._client.execute_command("PUBLISH", self.keys.node_channel(sender), message)
        except RedisError as exc:
            log.error("could not answer a remote request (%s)", type(exc).__name__)


class _Pending:
    """Answers to one request, and the event set when every expected node gave one."""

    __slots__ = ("done", "expected", "replies")

    def __init__(self, expected: set[str]) -> None:
        self.expected = expected
        self.replies: dict[str, Mapping[str, Any]] = {}
        self.done = asyncio.Event()

    def add(self, node: str, reply: Mapping[str, Any]) -> None:
        if len(self.replies) >= MAX_PENDING_NODES and node not in self.expected:
            return
        self.replies[node] = reply
        if self.expected <= self.replies.keys():
            self.done.set()


MAX_PENDING_NODES = 1024
"""Answers kept for one request (nodes that joined after it was sent count too, up to this)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _encode(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message)
    except TypeError:  # e.g. an integer beyond 64 bits, valid JSON that orjson refuses
        return json.dumps(message).encode()
