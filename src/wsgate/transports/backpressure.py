"""Read backpressure: a connection's reader waits while its own outbox is backed up.

A client may send requests faster than it reads the replies (a burst of
pings, of garbage, of events with acks). Without this, the reader decodes
every request at once, each reply is queued, and once the outbox holds
``max_queued`` frames the connection is closed as a slow consumer, although
the client is reading, only not as fast as it writes (CI saw it: 957 of
2,000 replies, then the close). With it, the reader stops taking requests
while the outbox is past a quarter of the cap, and reads on once the writer
has brought it under an eighth: the client is slowed down by TCP (its writes
wait) instead of being cut off, and the outbox stays bounded either way.
A client that reads nothing at all is still closed as a slow consumer: when
the reader has waited :data:`MAX_READ_PAUSE` seconds and the outbox is
still backed up, and sooner when broadcasts fill the outbox to its cap.
"""

from __future__ import annotations

import asyncio
from typing import Final

__all__ = ["ReadGate"]

PAUSE_FRACTION: Final = 4
"""The reader pauses with ``max_queued // PAUSE_FRACTION`` frames waiting."""

RESUME_FRACTION: Final = 8
"""...and resumes once the writer is down to ``max_queued // RESUME_FRACTION``."""

MAX_READ_PAUSE = 10.0
"""Seconds a reader waits for its writer before the client counts as not reading at all."""


class ReadGate:
    """Where a connection's reader waits for its writer to catch up.

    Explicitly two states: open (``_waiter is None``, the reader reads) or
    held (the reader awaits ``_waiter``). The writer reports the outbox
    length after each frame it sends (:meth:`sent`); closing the connection
    :meth:`release`\\ s the reader so it can see the disconnect.
    """

    __slots__ = ("_waiter", "pause_at", "resume_at")

    def __init__(self, max_queued: int) -> None:
        self.pause_at = max(max_queued // PAUSE_FRACTION, 1)
        self.resume_at = max_queued // RESUME_FRACTION
        self._waiter: asyncio.Future[None] | None = None

    def backed_up(self, queued: int) -> bool:
        """Whether the reader should wait before taking another request."""
        return queued >= self.pause_at

    async def wait(self) -> bool:
        """Hold the reader until :meth:`sent` sees the outbox drained, or :meth:`release`.

        False when :data:`MAX_READ_PAUSE` passed first: the caller closes the
        connection as a slow consumer.
        """
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(waiter, MAX_READ_PAUSE)
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True

    def sent(self, queued: int) -> None:
        """The writer sent a frame and ``queued`` remain."""
        waiter = self._waiter
        if waiter is not None and queued <= self.resume_at and not waiter.done():
            waiter.set_result(None)

    def release(self) -> None:
        """Let the reader go whatever the outbox holds (the connection is ending)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
