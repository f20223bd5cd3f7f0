"""``/metrics`` is not for everyone: loopback clients by default, or a bearer token.

Found by the attack session: ``/metrics`` answered anyone who reached the
port. "Loopback" is the *client's* address: a demo bound to 127.0.0.2 is
still scraped from 127.0.0.1 (same machine), and a demo bound to every
interface refuses a scrape arriving on the machine's network address.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from support import SECRET, wsgate_process
from wsgate.security.metrics_access import MetricsAccess, MetricsVerdict, is_loopback

TOKEN = "metrics-token-0123456789abcdef"


def outside_address() -> str | None:
    """This machine's address on a real network interface (no packet is sent), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if is_loopback(address) else address


@pytest.fixture
def outside() -> Iterator[str]:
    address = outside_address()
    if address is None:
        pytest.skip("no non-loopback interface on this machine")
    yield address


async def test_default_serves_loopback_clients_whatever_the_bind_address(tmp_path: object) -> None:
    env = {"WSGATE_JWT_SECRET": SECRET, "WSGATE_DATABASE": f"{tmp_path}/demo.db"}
    async with wsgate_process("demo", env=env, host="127.0.0.2") as (url, _output):
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.1")
        async with httpx.AsyncClient(transport=transport) as http:
            scraped = await http.get(f"{url}/metrics")
            assert scraped.status_code == 200 and "wsgate_" in scraped.text
            # A local reverse proxy relays the internet from 127.0.0.1: refused.
            for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
                relayed = await http.get(f"{url}/metrics", headers={header: "203.0.113.7"})
                assert relayed.status_code == 403, header
                assert relayed.json()["error"]["code"] == "forbidden"
                assert "wsgate_" not in relayed.text


async def test_default_refuses_a_scrape_from_the_network(tmp_path: object, outside: str) -> None:
    env = {"WSGATE_JWT_SECRET": SECRET, "WSGATE_DATABASE": f"{tmp_path}/demo.db"}
    async with (
        wsgate_process("demo", env=env, host="0.0.0.0") as (url, _output),
        httpx.AsyncClient() as http,
    ):
        port = url.rsplit(":", 1)[1]
        remote = await http.get(f"http://{outside}:{port}/metrics")
        assert remote.status_code == 403
        assert remote.json()["error"] == {
            "status": 403,
            "code": "forbidden",
            "message": "Metrics are served to loopback clients only",
        }
        assert (await http.get(f"http://{outside}:{port}/healthz")).status_code == 200
        assert (await http.get(f"{url}/metrics")).status_code == 200


async def test_a_metrics_token_is_required_from_everyone(tmp_path: object) -> None:
    env = {
        "WSGATE_JWT_SECRET": SECRET,
        "WSGATE_DATABASE": f"{tmp_path}/demo.db",
        "WSGATE_METRICS_TOKEN": TOKEN,
    }
    address = outside_address()
    async with (
        wsgate_process("demo", env=env, host="0.0.0.0" if address else "127.0.0.1") as (
            url,
            output,
        ),
        httpx.AsyncClient() as http,
    ):
        bare = await http.get(f"{url}/metrics")
        assert bare.status_code == 401
        assert bare.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert (await http.get(f"{url}/metrics", headers=good)).status_code == 200
        if address is not None:
            port = url.rsplit(":", 1)[1]
            remote = await http.get(f"http://{address}:{port}/metrics", headers=good)
            assert remote.status_code == 200 and "wsgate_" in remote.text
    assert not any(TOKEN in line for line in output)


async def test_a_short_metrics_token_stops_the_start(tmp_path: object) -> None:
    env = {
        "WSGATE_JWT_SECRET": SECRET,
        "WSGATE_DATABASE": f"{tmp_path}/demo.db",
        "WSGATE_METRICS_TOKEN": "short",
    }
    with pytest.raises(RuntimeError, match="at least 16"):
        async with wsgate_process("demo", env=env):
            pass


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.2", False),
        ("::ffff:192.0.2.2", False),
        ("localhost", False),  # a name proves nothing
        (None, False),
        ("", False),
    ],
)
def test_loopback_is_the_client_address(host: str | None, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_the_token_is_compared_whole() -> None:
    access = MetricsAccess(TOKEN)
    assert access.judge("127.0.0.1", []) is MetricsVerdict.TOKEN_MISSING
    prefix = [(b"authorization", f"Bearer {TOKEN[:-1]}".encode())]
    assert access.judge("127.0.0.1", prefix) is MetricsVerdict.TOKEN_MISSING
    exact = [(b"authorization", f"Bearer {TOKEN}".encode())]
    assert access.judge("192.0.2.2", exact) is MetricsVerdict.ALLOWED
