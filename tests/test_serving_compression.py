"""Servers wsgate starts refuse permessage-deflate (OWASP WebSocket cheat sheet).

Compression of frames that carry secrets beside attacker-chosen text is the
CRIME/BREACH pattern, and each compressing socket holds ~300 KB of zlib
state. ``wsgate demo`` is started as a user starts it, and a client that
offers the extension (as browsers and ``websockets`` do by default) must
get a plain connection that still works.
"""

from __future__ import annotations

import json
from pathlib import Path

from websockets.asyncio.client import connect as ws_connect

from support import SECRET, make_token, wsgate_process


async def test_a_client_offering_permessage_deflate_gets_no_compression(tmp_path: Path) -> None:
    env = {"WSGATE_JWT_SECRET": SECRET}
    async with wsgate_process("demo", "--database", str(tmp_path / "d.db"), env=env) as (url, _):
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with ws_connect(ws_url, compression="deflate") as ws:
            offered = ws.request.headers.get("Sec-WebSocket-Extensions") if ws.request else None
            assert offered is not None and "permessage-deflate" in offered
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            assert ws.protocol.extensions == []
            # The uncompressed connection works end to end.
            await ws.send(json.dumps({"type": "auth", "token": make_token()}))
            ready = json.loads(await ws.recv())
            assert ready["event"] == "ready", ready
