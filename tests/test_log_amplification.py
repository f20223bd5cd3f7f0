"""Floods and garbage cost a bounded number of log lines: counted against ``wsgate demo``.

Issue 11 measured, on the demo: 20,000 three-byte malformed messages before
login added 18 MiB of log (a traceback each) and 2.9 s of server CPU, and one
flooding connection wrote 129 ``limited`` lines in 40 s. Each test floods a
real server and counts the lines it wrote: garbage is a metric
(``wsgate_malformed_total``), never a traceback; a flood is one ``limited``
line per connection, with its count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import httpx
import pytest
import websockets

from clients import connect, ws_url
from support import SECRET, make_token, wsgate_process

pytestmark = pytest.mark.timeout(120)

ENV = {"WSGATE_JWT_SECRET": SECRET}


def metric(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{url}/metrics")).text


async def wait_for_line(lines: list[str], pattern: str, timeout: float = 10.0) -> list[str]:
    """Lines matching ``pattern`` once there is at least one (polled, bounded)."""
    for _ in range(int(timeout / 0.05)):
        found = [line for line in lines if re.search(pattern, line)]
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


async def test_malformed_ws_frames_are_answered_and_counted_not_logged(tmp_path: Path) -> None:
    """2,000 broken frames after auth: 2,000 error replies (ids recovered), zero log lines."""
    args = ("demo", "--database", str(tmp_path / "d.db"), "--rate-limit", "100000")
    async with wsgate_process(*args, env=ENV) as (url, lines):
        async with connect("websocket", url, token=make_token("garbage")) as client:
            before = len(lines)
            for i in range(1000):
                await client.send_raw(f'{{"id": {i}, "event": "ping", "data": ')
                await client.send_raw(b"\x00\xff")
            for _ in range(600):  # 30 s at most
                if len(client.frames) >= 2000:
                    break
                await asyncio.sleep(0.05)
            replies = client.frames
            assert len(replies) == 2000
            by_id = [f for f in replies if "id" in f]
            assert sorted(f["id"] for f in by_id) == list(range(1000))
            assert all(f["error"]["status"] == 400 for f in by_id)
            pushed = [f for f in replies if "id" not in f]
            assert all(f["event"] == "exception" for f in pushed)
            # The connection still works.
            assert await client.call("ping") == "pong"
            during = lines[before:]
        metrics = await scrape(url)
    assert metric(metrics, "wsgate_malformed_total", 'transport="websocket"') == 2000
    assert not [line for line in during if "Traceback" in line or "malformed" in line.lower()]
    assert len(during) < 20, during[:20]


async def test_pre_auth_garbage_is_one_refusal_per_socket_without_traceback(
    tmp_path: Path,
) -> None:
    async with wsgate_process("demo", "--database", str(tmp_path / "d.db"), env=ENV) as (
        url,
        lines,
    ):
        before = len(lines)
        for _ in range(30):
            async with websockets.connect(ws_url(url), open_timeout=5) as ws:
                await ws.send("\x00{not json")
                with contextlib.suppress(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 4401
        metrics = await scrape(url)
        await wait_for_line(lines, "refused")
        during = lines[before:]
    assert metric(metrics, "wsgate_malformed_total", 'transport="websocket"') == 30
    assert not [line for line in during if "Traceback" in line]
    refusals = [line for line in during if "wsgate.audit: refused" in line]
    assert len(refusals) == 30


@pytest.mark.parametrize("transport", ["websocket", "socketio"])
async def test_a_flood_is_one_limited_line_with_its_count(tmp_path: Path, transport: str) -> None:
    """1,000 events at once against 50/s, burst 100: one ``limited`` line for the flood."""
    async with wsgate_process("demo", "--database", str(tmp_path / "d.db"), env=ENV) as (
        url,
        lines,
    ):
        async with connect(transport, url, token=make_token("flooder")) as client:
            replies = await asyncio.gather(
                *(client.call("ping", timeout=30) for _ in range(1000)), return_exceptions=True
            )
        refused = [r for r in replies if isinstance(r, dict) and "error" in r]
        assert refused and all(r["error"]["code"] == "rate_limited" for r in refused)
        limited = await wait_for_line(lines, r"wsgate\.audit: limited .*sub=flooder")
        await asyncio.sleep(0.3)  # nothing more comes
        limited = [line for line in lines if re.search(r"audit: limited .*sub=flooder", line)]
    assert len(limited) == 1, limited
    count = int(re.search(r"count=(\d+)", limited[0]).group(1))  # type: ignore[union-attr]
    assert count == len(refused)
    assert "limit=rate" in limited[0]


async def test_malformed_socketio_packets_before_connect_are_counted_not_logged(
    tmp_path: Path,
) -> None:
    """Garbage before CONNECT, over many Engine.IO sessions: a metric, no traceback, few lines."""
    async with wsgate_process("demo", "--database", str(tmp_path / "d.db"), env=ENV) as (
        url,
        lines,
    ):
        before = len(lines)
        host = url.removeprefix("http://")
        sent = 0
        for _ in range(40):
            with contextlib.suppress(websockets.ConnectionClosed):
                async with websockets.connect(
                    f"ws://{host}/socket.io/?EIO=4&transport=websocket", open_timeout=5
                ) as ws:
                    await asyncio.wait_for(ws.recv(), 5)  # the Engine.IO open packet
                    for packet in ("4\x00{", "4", "49", "42[", "4Z{}"):
                        await ws.send(packet)
                        sent += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(ws.recv(), 0.5)
        await asyncio.sleep(0.5)
        metrics = await scrape(url)
        during = lines[before:]
    assert not [line for line in during if "Traceback" in line]
    assert len([line for line in during if "wsgate" in line or "engineio" in line]) < 100
    assert metric(metrics, "wsgate_malformed_total", 'transport="socketio"') >= 40


def test_metric_helper_reads_labelled_samples() -> None:
    text = 'wsgate_malformed_total{transport="websocket"} 3.0\n'
    assert metric(text, "wsgate_malformed_total", 'transport="websocket"') == 3.0
    assert json.dumps(metric(text, "wsgate_malformed_total", 'transport="socketio"')) == "0.0"
