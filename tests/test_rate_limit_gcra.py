"""The event rate limit is a token bucket (GCRA), issue 11.

"50/s, burst 100" must mean: a quiet connection sends 100 events at once,
and right after that burst capacity comes back at 50 per second. The moving
window it replaced refused a client for a full 2 s after a burst and kept
up to 100 timestamps per connection. The arithmetic is checked against a
reference token bucket written the other way round (credit that refills,
not a theoretical arrival time), on clocks hypothesis draws; the real-server
tests show the returned capacity over ``/ws`` and Socket.IO.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clients import connect
from support import free_port, make_token, serve, settings_for
from wsgate import App
from wsgate.demo.gateways import Chat
from wsgate.security.limits import EventRateLimiter

NS = 1_000_000_000


class ReferenceBucket:
    """A token bucket as a textbook draws it: credit refills with time, an event spends one.

    Credit is kept in nanoseconds of "time owed" so the comparison with the
    limiter is exact: a full bucket holds ``burst * interval``, an event
    costs ``interval``.
    """

    def __init__(self, burst: int, interval: int) -> None:
        self.capacity = burst * interval
        self.interval = interval
        self.credit = self.capacity
        self.last: int | None = None

    def allow(self, now: int) -> bool:
        if self.last is not None:
            self.credit = min(self.capacity, self.credit + (now - self.last))
        self.last = now
        if self.credit >= self.interval:
            self.credit -= self.interval
            return True
        return False


rates = st.one_of(
    st.sampled_from([1.0, 2.0, 3.0, 7.0, 20.0, 50.0, 1000.0]),
    st.floats(min_value=0.01, max_value=100_000, allow_nan=False, allow_infinity=False),
)
gaps = st.lists(st.integers(min_value=0, max_value=3 * NS), min_size=1, max_size=300)


@settings(max_examples=300, deadline=None)
@given(rate=rates, steps=gaps, start=st.integers(min_value=0, max_value=10**15))
def test_it_decides_exactly_as_a_token_bucket(rate: float, steps: list[int], start: int) -> None:
    limiter = EventRateLimiter(rate)
    reference = ReferenceBucket(limiter.burst, limiter.interval_ns)
    now = start
    for gap in steps:
        now += gap
        assert limiter.allow_at("c", now) == reference.allow(now)


@settings(max_examples=300, deadline=None)
@given(rate=rates, steps=gaps)
def test_no_interval_lets_through_more_than_the_burst_plus_the_rate(
    rate: float, steps: list[int]
) -> None:
    """In any span of d ns, at most ``burst + d / interval`` events are allowed."""
    limiter = EventRateLimiter(rate)
    allowed: list[int] = []
    now = 0
    for gap in steps:
        now += gap
        if limiter.allow_at("c", now):
            allowed.append(now)
    for i, first in enumerate(allowed):
        for j in range(i, len(allowed)):
            span = allowed[j] - first
            assert j - i + 1 <= limiter.burst + span // limiter.interval_ns


@given(rate=st.sampled_from([1.0, 5.0, 50.0, 333.0]), wait=st.integers(min_value=0, max_value=400))
def test_after_a_burst_capacity_returns_at_the_rate(rate: float, wait: int) -> None:
    """A full burst, then ``k`` intervals later exactly ``k`` more events (until full again)."""
    limiter = EventRateLimiter(rate)
    assert [limiter.allow_at("c", 0) for _ in range(limiter.burst)] == [True] * limiter.burst
    assert not limiter.allow_at("c", 0)
    later = wait * limiter.interval_ns
    granted = 0
    while granted <= limiter.burst and limiter.allow_at("c", later):
        granted += 1
    assert granted == min(wait, limiter.burst)


def test_fifty_per_second_burst_one_hundred() -> None:
    """The default, spelled out: 100 at once, then one every 20 ms, not 2 s of refusals."""
    limiter = EventRateLimiter(50)
    assert limiter.burst == 100 and limiter.interval_ns == 20_000_000
    assert sum(limiter.allow_at("c", 0) for _ in range(150)) == 100
    assert not limiter.allow_at("c", 19_999_999)
    assert limiter.allow_at("c", 20_000_000)
    assert not limiter.allow_at("c", 20_000_000)
    # 100 ms after the burst: five more (the moving window refused until 2 s).
    assert sum(limiter.allow_at("c", 120_000_000) for _ in range(10)) == 5
    # Refused events cost nothing: a flood of refusals does not push the next grant away.
    for _ in range(1000):
        limiter.allow_at("c", 130_000_000)
    assert limiter.allow_at("c", 140_000_000)


def test_one_number_per_connection_and_none_after_close() -> None:
    limiter = EventRateLimiter(50)
    for conn in range(100):
        for _ in range(300):
            limiter.allow_at(f"c{conn}", 0)
    assert limiter.tracked() == 100
    for conn in range(100):
        limiter.forget(f"c{conn}")
    assert limiter.tracked() == 0


def test_an_explicit_burst_and_absurd_rates() -> None:
    one = EventRateLimiter(1000, burst=1)
    assert one.allow_at("c", 0) and not one.allow_at("c", 0)
    assert one.allow_at("c", one.interval_ns)
    huge = EventRateLimiter(1e12)  # an interval under a nanosecond still costs one
    assert huge.interval_ns == 1
    tiny = EventRateLimiter(0.001)  # one event per 1000 s, burst rounds up to one
    assert tiny.burst == 1
    assert tiny.allow_at("c", 0) and not tiny.allow_at("c", 999 * NS)


# -- on a real server ------------------------------------------------------------------------


def refused(reply: Any) -> bool:
    if isinstance(reply, dict) and "error" in reply:
        assert reply["error"]["status"] == 429
        assert reply["error"]["code"] == "rate_limited"
        return True
    return False


async def test_capacity_returns_at_the_rate_right_after_a_burst(transport: str) -> None:
    """A 100-event burst empties the bucket; 0.1 s later events are accepted again at 50/s.

    Nothing here is timed against the server: every bound follows from the
    bucket's rule and from when this client sent and received. After the
    burst's last reply the bucket holds at least nothing, so after 0.12 s it
    holds at least 6 events' worth; and an event sent ``k`` pacing slots
    later (``asyncio.sleep`` only ever delays it further) finds at least
    ``50 * k / 40`` events' worth of refill, so each is accepted on a machine
    of any speed. The moving window refused them all for 2 s.
    """
    port = free_port()
    app = App([Chat()], settings_for(port, rate_limit=50))
    async with serve(app, port) as url:
        async with connect(transport, url, token=make_token("burster")) as client:
            started = time.monotonic()
            burst = await asyncio.gather(*(client.call("ping", timeout=15) for _ in range(130)))
            limited = sum(refused(reply) for reply in burst)
            assert limited >= 1, "130 at once must overflow a bucket of 100"
            accepted = len(burst) - limited
            assert accepted >= 100 and all(r == "pong" for r in burst if not refused(r))

            # 0.12 s later the bucket holds at least 6 events' worth: 5 at once all pass.
            await asyncio.sleep(0.12)
            soon = await asyncio.gather(*(client.call("ping", timeout=5) for _ in range(5)))
            assert soon == ["pong"] * 5, soon

            # Then paced at 40/s for half a second, starting at once.
            paced_start = time.monotonic()
            paced = []
            for k in range(1, 21):
                delay = paced_start + k / 40 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                paced.append(await client.call("ping", timeout=5))
            assert paced == ["pong"] * 20, paced

            # And capacity is not simply reset: a second flood gets at most what
            # refilled since the first event was sent (plus the burst).
            again = await asyncio.gather(*(client.call("ping", timeout=15) for _ in range(130)))
            elapsed = time.monotonic() - started
            total = accepted + 5 + 20 + sum(not refused(r) for r in again)
            assert total <= 100 + 50 * elapsed + 1, (total, elapsed)
            assert client.connected
