"""One Engine.IO session: its state, its bounded outbox, its heartbeat and its one parked poll.

A session is served by one transport at a time: HTTP long-polling (the
client's GETs collect the outbox, at most one GET parked at a time) or a
websocket (one writer task drains the outbox). Every frame the session
sends is already encoded when it is queued, so a broadcast queues the same
string for every recipient. The outbox is bounded in frames: a client that
stops reading while frames pile up is closed (``slow_consumer``) instead of
buffered without bound, and that holds for acks as much as for events,
since both go through :meth:`Session.send`. A client that only sends faster
than it reads is held back instead: its reader waits while the outbox is
backed up (:mod:`wsgate.transports.backpressure`).

The heartbeat is one timer per session (``loop.call_later``): ``ping`` every
``ping_interval``, then ``ping_timeout`` for the ``pong``.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Final

from starlette.types import Message, Send

from wsgate.transports.backpressure import ReadGate
from wsgate.transports.engineio.packet import CLOSE, NOOP, PING

if TYPE_CHECKING:
    from wsgate.transports.engineio.server import EngineConfig

__all__ = ["Session", "SessionState", "Transport"]

log = logging.getLogger("wsgate.engineio")

CLOSE_SEND_TIMEOUT: Final = 5.0
"""How long a websocket close frame may wait for a client's socket to drain."""


MAX_FRAMES_PER_POLL: Final = 16
"""Frames in one long-polling response; the rest wait for the next GET, which comes at once.

python-engineio's client refuses a payload of more than 16 packets (its
``max_decode_packets``), and a bounded response is a bounded write anyway."""

_CLOSE_CODES: Final = {"slow_consumer": 1008, "server_shutdown": 1001, "payload_too_large": 1009}
"""Websocket close codes of the reasons that have one of their own (else 1000)."""


class Transport(enum.Enum):
    POLLING = "polling"
    WEBSOCKET = "websocket"


class SessionState(enum.Enum):
    """Where a session is; it moves down the list, except PROBING/UPGRADING back to OPEN."""

    OPEN = "open"
    """Serving on its transport."""
    PROBING = "probing"
    """Polling, and a websocket opened for an upgrade waits for its ``2probe``."""
    UPGRADING = "upgrading"
    """Polling, the probe answered: GETs get a ``noop`` until the client sends ``5``."""
    CLOSING = "closing"
    """Closed by one side: what is queued still goes out, nothing new is queued."""
    CLOSED = "closed"
    """Gone from the server's table; any request naming it gets HTTP 400."""


class Session:
    """One client's Engine.IO session; ``context`` belongs to the layer above (Socket.IO)."""

    __slots__ = (
        "_heartbeat",
        "_on_closing",
        "_on_finished",
        "_outbox",
        "_poll",
        "_read_gate",
        "_waiting_pong",
        "_ws_idle",
        "_ws_inflight",
        "_ws_send",
        "_ws_wakeup",
        "_ws_writer",
        "close_reason",
        "config",
        "context",
        "max_queued",
        "posting",
        "sid",
        "state",
        "transport",
        "upgrade_settled",
    )

    def __init__(
        self,
        sid: str,
        transport: Transport,
        config: EngineConfig,
        on_closing: Callable[[Session, str], None],
        on_finished: Callable[[Session], None],
    ) -> None:
        self.sid = sid
        self.transport = transport
        self.config = config
        self.state = SessionState.OPEN
        self.close_reason: str | None = None
        self.context: Any = None
        self.posting = False
        self.max_queued = config.max_queued_frames
        """Frames that may wait for this client (the engine's ``max_queued_frames``)."""
        self._on_closing = on_closing
        self._on_finished = on_finished
        self._outbox: collections.deque[str | bytes] = collections.deque()
        self._read_gate = ReadGate(self.max_queued)
        self._poll: asyncio.Future[None] | None = None
        self._ws_send: Send | None = None
        self._ws_wakeup: asyncio.Event | None = None
        self._ws_writer: asyncio.Task[None] | None = None
        self._ws_idle = False
        self._ws_inflight: tuple[Coroutine[Any, Any, None], Any] | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._waiting_pong = False
        self.upgrade_settled: asyncio.Event | None = None
        """Set when an upgrade in progress ends (upgraded, or back to polling)."""

    # -- sending ------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Whether frames can still be queued (not closing or closed)."""
        state = self.state
        return state is not SessionState.CLOSING and state is not SessionState.CLOSED

    @property
    def backed_up(self) -> bool:
        """Whether the reader (websocket or POST) should let the client catch up first."""
        return self._read_gate.backed_up(len(self._outbox))

    async def caught_up(self) -> None:
        """Wait until the outbox has drained (writer or GETs), or the session is ending.

        A client that has read nothing for ``MAX_READ_PAUSE`` seconds is
        closed as a slow consumer, as when its outbox reaches the cap.
        """
        if self.accepting and not await self._read_gate.wait():
            log.warning("closing an Engine.IO session: the client is not reading its replies")
            self.close("slow_consumer", flush=False)

    def send(self, frame: str | bytes) -> None:
        """Queue one encoded frame (``"4..."`` text or a binary message); never waits."""
        if not self.accepting:
            return
        if self._ws_idle and not self._outbox:
            self._write_now(frame)
            return
        if len(self._outbox) >= self.max_queued:
            log.warning("closing an Engine.IO session: the client is not reading its messages")
            self.close("slow_consumer", flush=False)
            return
        self._outbox.append(frame)
        self._wake()

    def _write_now(self, frame: str | bytes) -> None:
        """Write ``frame`` from the caller's task while the writer has nothing to do.

        The ASGI ``send`` of a websocket almost always completes without
        waiting (uvicorn writes to the transport at once), so the coroutine
        is driven here, in the caller's task: a broadcast then costs no task
        wake-up per recipient, and a frame is written as soon as it is made.
        Should ``send`` have to wait (a full socket), the suspended coroutine
        is handed to the writer task, which finishes it before anything else
        (:class:`_Resume`); frames queue behind it in the outbox, in order.
        """
        send = self._ws_send
        assert send is not None and self._ws_wakeup is not None
        if isinstance(frame, str):
            message: Message = {"type": "websocket.send", "text": frame}
        else:
            message = {"type": "websocket.send", "bytes": frame}
        coroutine = send(message)
        if not isinstance(coroutine, Coroutine):  # an ASGI server with another kind of send
            self._ws_inflight = (_awaited(coroutine), None)
            self._ws_idle = False
            self._ws_wakeup.set()
            return
        try:
            waiting_on = coroutine.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the socket is gone; the reader sees the disconnect
            log.debug("an Engine.IO websocket write failed: %r", exc)
            self.close("transport_close", flush=False)
            return
        self._ws_inflight = (coroutine, waiting_on)
        self._ws_idle = False
        self._ws_wakeup.set()

    def _wake(self) -> None:
        wakeup = self._ws_wakeup
        if wakeup is not None:
            wakeup.set()
            return
        poll = self._poll
        if poll is not None and not poll.done():
            poll.set_result(None)

    # -- heartbeat ----------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        self._heartbeat = asyncio.get_running_loop().call_later(
            self.config.ping_interval, self._ping
        )

    def _ping(self) -> None:
        if not self.accepting:
            return
        self._waiting_pong = True
        self.send(PING)
        self._heartbeat = asyncio.get_running_loop().call_later(
            self.config.ping_timeout, self._missed_pong
        )

    def _missed_pong(self) -> None:
        self._heartbeat = None
        if self._waiting_pong:
            self.close("ping_timeout", flush=False)

    def pong(self) -> None:
        if not self._waiting_pong:
            return
        self._waiting_pong = False
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.accepting:
            self.start_heartbeat()

    # -- long-polling -------------------------------------------------------------------

    @property
    def polled(self) -> bool:
        """Whether a GET is parked on this session now."""
        return self._poll is not None

    async def collect(self, wait: float) -> list[str | bytes]:
        """Frames for one GET: what is queued, else what arrives within ``wait`` seconds.

        The caller made sure no other GET is parked. A GET never outlives
        ``wait`` (a ping goes out every ``ping_interval`` anyway), nor the
        session: closing answers it.
        """
        if not self._outbox and self.state is not SessionState.CLOSED:
            loop = asyncio.get_running_loop()
            poll = self._poll = loop.create_future()
            timer = loop.call_later(wait, _settle, poll)
            try:
                await poll
            finally:
                timer.cancel()
                self._poll = None
        outbox = self._outbox
        if len(outbox) <= MAX_FRAMES_PER_POLL:
            frames = list(outbox)
            outbox.clear()
        else:
            frames = [outbox.popleft() for _ in range(MAX_FRAMES_PER_POLL)]
        self._read_gate.sent(len(outbox))
        if self.state is SessionState.CLOSING and not outbox:
            self.finish()
        return frames

    def requeue(self, frames: list[str | bytes]) -> None:
        """Put back frames a GET collected but could not deliver (it lost an upgrade race)."""
        self._outbox.extendleft(reversed(frames))
        if frames:
            self._wake()

    def answer_poll_with_noop(self) -> None:
        """End a parked GET with a ``noop`` (the upgrade's way to free the polling side)."""
        poll = self._poll
        if poll is not None and not poll.done():
            self._outbox.appendleft(NOOP)
            poll.set_result(None)

    # -- websocket ----------------------------------------------------------------------

    def attach_websocket(self, send: Send, *, fresh: bool = False) -> None:
        """Serve this session over a websocket from now on (a new session, or an upgrade).

        ``fresh``: a new websocket session with nothing sent yet. Its first
        frame (the open packet) is then written at once from the caller, as
        when the writer is idle, rather than by the writer's first turn: it
        joins the handshake response in one ``write()`` (see
        ``wsgate.transports.ws_protocol``), one system call less per connect.
        """
        self.transport = Transport.WEBSOCKET
        self._ws_send = send
        self._ws_wakeup = asyncio.Event()
        self._ws_writer = asyncio.get_running_loop().create_task(self._write(send))
        if self._outbox:
            self._ws_wakeup.set()
        elif fresh and self._ws_inflight is None:
            self._ws_idle = True

    async def _write(self, send: Send) -> None:
        outbox = self._outbox
        wakeup = self._ws_wakeup
        assert wakeup is not None
        try:
            while True:
                inflight = self._ws_inflight
                if inflight is not None:
                    self._ws_inflight = None
                    await _Resume(*inflight)
                while outbox:
                    frame = outbox.popleft()
                    if isinstance(frame, str):
                        await send({"type": "websocket.send", "text": frame})
                    else:
                        await send({"type": "websocket.send", "bytes": frame})
                    self._read_gate.sent(len(outbox))
                if not self.accepting:
                    code = _CLOSE_CODES.get(self.close_reason or "", 1000)
                    await _send_within(
                        send({"type": "websocket.close", "code": code}), CLOSE_SEND_TIMEOUT
                    )
                    return
                wakeup.clear()
                self._ws_idle = True
                await wakeup.wait()
                self._ws_idle = False
        except (OSError, RuntimeError, TimeoutError) as exc:
            log.debug("an Engine.IO websocket writer stopped: %r", exc)
        finally:
            self._ws_idle = False
            self._ws_send = None
            outbox.clear()
            self.finish()

    # -- closing ------------------------------------------------------------------------

    def close(self, reason: str, *, flush: bool = True, by_client: bool = False) -> None:
        """Stop the session; what is queued goes out first when ``flush`` (the default).

        On polling, a parked GET is answered (``6`` when the client asked to
        close, else ``1``); a session with frames still queued waits for one
        more GET, at most ``ping_timeout``. On a websocket the writer sends
        what is queued, then the close frame.
        """
        if not self.accepting:
            return
        self._mark_closing(reason)
        if not flush:
            self._outbox.clear()
        if self.transport is Transport.WEBSOCKET:
            if self._ws_wakeup is not None:
                self._ws_wakeup.set()
                if not flush and self._ws_writer is not None:
                    # The writer may be stuck on a full socket: abort it if the
                    # close frame has not gone out in time.
                    asyncio.get_running_loop().call_later(
                        CLOSE_SEND_TIMEOUT, self._ws_writer.cancel
                    )
            else:
                self.finish()
            return
        self._outbox.append(NOOP if by_client else CLOSE)
        if self._poll is not None and not self._poll.done():
            self._poll.set_result(None)
        elif len(self._outbox) > 1:
            asyncio.get_running_loop().call_later(self.config.ping_timeout, self.finish)
        else:
            self.finish()

    def finish(self) -> None:
        """Gone: out of the server's table; later requests naming it get HTTP 400."""
        if self.state is SessionState.CLOSED:
            return
        if self.state is not SessionState.CLOSING:
            self._mark_closing("transport_close")
        self.state = SessionState.CLOSED
        poll = self._poll
        if poll is not None and not poll.done():
            poll.set_result(None)
        if self._ws_wakeup is not None:
            self._ws_wakeup.set()  # the writer sends the close frame
        self._outbox.clear()
        self._on_finished(self)

    def _mark_closing(self, reason: str) -> None:
        self.state = SessionState.CLOSING
        self.close_reason = reason
        self._read_gate.release()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        self._on_closing(self, reason)


class _Resume:
    """Awaits a coroutine that another task already started and that is waiting on ``first``.

    :meth:`Session._write_now` runs an ASGI ``send`` in whatever task queued
    the frame; when that ``send`` has to wait, the writer task continues it
    from where it stopped, exactly as if it had awaited it from the start.
    """

    __slots__ = ("coroutine", "first")

    def __init__(self, coroutine: Coroutine[Any, Any, None], first: Any) -> None:
        self.coroutine = coroutine
        self.first = first

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, value = self.coroutine, self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # cancellation included: passed on
                try:
                    value = coroutine.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coroutine.send(sent)
                except StopIteration:
                    return


async def _send_within(coroutine: Awaitable[None], limit: float) -> None:
    """Await an ASGI ``send`` for at most ``limit`` seconds.

    The send is started here and almost always completes at once (uvicorn
    writes to the transport without waiting); only one that has to wait is
    put under ``asyncio.wait_for``. Every session ends with a close frame,
    and ``wait_for`` costs a task and a timer (~1.5% of a connect's CPU).
    """
    if not isinstance(coroutine, Coroutine):  # an ASGI server with another kind of send
        await asyncio.wait_for(coroutine, limit)
        return
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return
    except BaseException:
        coroutine.close()
        raise
    await asyncio.wait_for(_Resume(coroutine, waiting_on), limit)


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
