"""The demo page as a person sees it, in a real Chromium against a real demo server.

Every test keeps a screenshot under ``test-artifacts/browser/``. The page
runs under its strict CSP throughout (no ``bypass_csp``): a CSP violation
would show up as a console error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from browser_support import PASSWORDS, Watched, chromium, screenshot, sign_in, watched_page
from support import demo_settings_for, free_port, serve
from wsgate.demo.app import create_app
from wsgate.stores import UserStore

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) before expect is needed
    expect = None

Demo = Callable[..., contextlib.AbstractAsyncContextManager[str]]
OpenPage = Callable[[], Awaitable[Watched]]
WAIT = 10_000  # ms: the longest any single page update may take before a test fails

# One Chromium for the module (launching it takes a second or more); each
# test gets fresh browser contexts, so no cookie or page state is shared.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as instance:
        yield instance


@pytest_asyncio.fixture(loop_scope="module")
async def open_page(browser: Any) -> AsyncIterator[OpenPage]:
    """Opens pages, each in a context of its own (its own cookies), closed after the test."""
    contexts: list[Any] = []

    async def open_one() -> Watched:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        return await watched_page(context)

    yield open_one
    for context in contexts:
        await context.close()


@pytest.fixture
def demo_with(tmp_path: Path) -> Demo:
    """Start the demo (users alice and admin) with settings overrides; yields its URL."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[str]:
        database = tmp_path / "browser.db"
        users = UserStore(database)
        await users.add("alice", PASSWORDS["alice"])
        await users.add("admin", PASSWORDS["admin"], ("admin",))
        await users.aclose()
        port = free_port()
        app = create_app(demo_settings_for(port, database=database, **overrides))
        async with serve(app, port) as url:
            yield url

    return start


@pytest_asyncio.fixture(loop_scope="module")
async def demo(demo_with: Demo) -> AsyncIterator[str]:
    async with demo_with() as url:
        yield url


async def join_events(page: Any, url: str) -> float:
    """How many ``join`` events the server has counted, whatever their outcome (from /metrics)."""
    response = await page.context.request.get(url + "/metrics")
    total = 0.0
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            if sample.name == "wsgate_events_total" and sample.labels.get("event") == "join":
                total += sample.value
    return total


async def test_normal_load_leaves_a_clean_console(demo: str, open_page: OpenPage) -> None:
    """Signed out, signing in, and reloading signed in: no error, warning, 401 or 404."""
    watched = await open_page()
    page = watched.page
    await page.goto(demo + "/")
    await expect(page.locator("#login-card")).to_be_visible(timeout=WAIT)
    await expect(page.locator("#conn-text")).to_have_text("signed out")
    await screenshot(page, "load-signed-out")
    await sign_in(page, demo)
    await page.reload()
    # The session probe recognises the cookie: straight back to the chat, no form.
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=WAIT)
    await expect(page.locator("#who")).to_have_text("alice")
    assert await page.locator("#login-card").is_hidden()
    await screenshot(page, "load-signed-in")
    icon = await page.context.request.get(demo + "/static/favicon.svg")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert watched.problems() == []


async def test_sign_in_and_chat_in_a_real_browser(demo: str, open_page: OpenPage) -> None:
    page = (await open_page()).page
    await sign_in(page, demo)
    await expect(page.locator("#who")).to_have_text("alice")
    await expect(page.locator("#conn-text")).to_have_text(
        re.compile(r"^connected · (websocket|polling)$")
    )
    await page.click("form#join button")
    await expect(page.locator("#room-now")).to_have_text("in general", timeout=WAIT)
    await page.fill("form#say input[name=text]", "<b>hello</b> from chromium")
    await page.click("form#say button")
    item = page.locator("#messages li", has_text="from chromium")
    await expect(item).to_contain_text("alice in general<b>hello</b> from chromium", timeout=WAIT)
    assert await page.locator("#messages b", has_text="hello").count() == 0  # shown as text
    await screenshot(page, "chat")


async def test_only_the_admin_gets_the_broadcast_box(demo: str, open_page: OpenPage) -> None:
    alice = (await open_page()).page
    admin = (await open_page()).page
    await sign_in(alice, demo, "alice")
    await sign_in(admin, demo, "admin")
    assert await alice.locator("form#broadcast").is_hidden()
    await expect(admin.locator("form#broadcast")).to_be_visible()
    await expect(admin.locator("#roles")).to_have_text("admin")

    await admin.fill("form#broadcast input[name=text]", "maintenance at noon")
    await admin.click("form#broadcast button")
    announcement = "#messages li.announcement"
    await expect(alice.locator(announcement)).to_contain_text("maintenance at noon", timeout=WAIT)
    await expect(admin.locator(announcement)).to_contain_text("maintenance at noon", timeout=WAIT)
    # The "forge" attack is no attack for an admin: the page says it was allowed.
    await admin.click("li[data-attack=forge] button")
    row = admin.locator("li[data-attack=forge]")
    await expect(row).to_have_attribute("data-result", "allowed", timeout=WAIT)
    await screenshot(admin, "admin")
    await screenshot(alice, "admin-announcement-seen-by-alice")


async def test_room_pattern_is_a_valid_regex_chromium_enforces(
    demo: str, open_page: OpenPage
) -> None:
    """Chromium compiles ``pattern`` with the v flag; an invalid one would check nothing."""
    watched = await open_page()
    page = watched.page
    await sign_in(page, demo)
    room = page.locator("#room")
    joins_before = await join_events(page, demo)

    await room.fill("bad room!")
    assert await room.evaluate("el => el.validity.patternMismatch") is True
    await page.click("form#join button")
    assert await room.evaluate("el => el.matches(':invalid')") is True
    await screenshot(page, "room-pattern-rejected")
    await asyncio.sleep(0.5)  # time for a join that should not have been sent to be answered
    assert await join_events(page, demo) == joins_before  # the server never saw it
    await expect(page.locator("#room-now")).to_have_text("")

    await room.fill("good_room-1")
    assert await room.evaluate("el => el.validity.valid") is True
    await page.click("form#join button")
    await expect(page.locator("#room-now")).to_have_text("in good_room-1", timeout=WAIT)
    assert await join_events(page, demo) == joins_before + 1  # the counter does count joins
    assert not watched.saw("(?i)pattern attribute")
    assert watched.problems() == []


async def test_a_400_shows_the_failing_field(demo: str, open_page: OpenPage) -> None:
    """With the form's own check bypassed, the server's 400 names the field under the form."""
    page = (await open_page()).page
    await sign_in(page, demo)
    room = page.locator("#room")
    await room.evaluate("el => el.removeAttribute('pattern')")  # what a bypass would do
    await room.fill("bad room!")
    await page.click("form#join button")
    error = page.locator("#join-error")
    await expect(error).to_have_text(
        re.compile(r"^room: String should match pattern"), timeout=WAIT
    )
    await expect(room).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#messages li.error")).to_contain_text("400 bad_request")
    await screenshot(page, "join-400-field")


# Each "try it" button and the refusal the page must show. The flood goes
# last: for two seconds after it, the socket's other events are refused too.
ATTACKS = {
    "forge": r"^403 forbidden: ",
    "oversize": r"^413 payload_too_large: Messages are limited to 65536 bytes",
    "bad-room": r"^400 bad_request: .* — room: String should match pattern",
    "expired": r"^connect refused: token_expired: ",
    "flood": r"^429 \w+: .* \d+ of 120 events accepted, \d+ refused \(the burst is 100 events",
}


async def test_try_it_shows_each_refusal(demo: str, open_page: OpenPage) -> None:
    """A person clicking every button in turn: each shows the server's refusal."""
    watched = await open_page()
    page = watched.page
    await sign_in(page, demo)
    for attack, expected in ATTACKS.items():
        await page.click(f"li[data-attack={attack}] button")
        row = page.locator(f"li[data-attack={attack}]")
        await expect(row).to_have_attribute("data-result", "stopped", timeout=WAIT)
        await expect(row.locator("output")).to_have_text(re.compile(expected))
        # Refused events never cost the page its connection.
        await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        await screenshot(page, f"try-it-{attack}")
    # No announcement went out for the forged broadcast.
    assert await page.locator("#messages li.announcement").count() == 0


async def test_session_panel_counts_down_and_refreshes_in_band(
    demo_with: Demo, open_page: OpenPage
) -> None:
    """A 6 s token: the page renews it on the live socket before it expires.

    About 8 s: the test must outlive the first token to show that the socket
    was moved to the new one instead of being cut.
    """
    async with demo_with(access_token_ttl=6) as url:
        page = (await open_page()).page
        await sign_in(page, url)
        signed_in = time.monotonic()
        await expect(page.locator("#who")).to_have_text("alice")
        await expect(page.locator("#roles")).to_have_text("none")
        life = page.locator("#life")
        await expect(life).to_have_text(re.compile(r"^expires in 0:0[0-7] \(at "))
        first = await life.text_content()
        await expect(life).not_to_have_text(first or "", timeout=WAIT)  # it counts down
        refreshed = page.locator("#refresh-log li", has_text="in-band refresh")
        await expect(refreshed).to_have_count(1, timeout=WAIT)
        await screenshot(page, "session-refreshed-in-band")
        await asyncio.sleep(max(0.0, signed_in + 8 - time.monotonic()))  # past the first exp
        await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        await expect(page.locator("#messages li", has_text="connected as alice")).to_have_count(1)
        assert await page.locator("#messages li.error").count() == 0


async def test_state_expired_when_the_token_cannot_be_renewed(
    demo_with: Demo, open_page: OpenPage
) -> None:
    """Without its refresh cookie the page cannot renew: the server expires the session."""
    async with demo_with(access_token_ttl=3) as url:
        page = (await open_page()).page
        await sign_in(page, url)
        await page.context.clear_cookies(name="refresh_token")
        await expect(page.locator("#conn-text")).to_have_text(
            "expired · token_expired", timeout=WAIT
        )
        await expect(page.locator("#ended")).to_have_text(
            "Your session ended (token_expired). Sign in again.", timeout=WAIT
        )
        await screenshot(page, "state-expired")


async def test_state_revoked_when_signed_out_elsewhere(demo: str, open_page: OpenPage) -> None:
    page = (await open_page()).page
    await sign_in(page, demo)
    # Another tab of the same browser signs out: the token is revoked, the socket cut.
    response = await page.context.request.post(demo + "/auth/logout", headers={"Origin": demo})
    assert response.status == 200
    await expect(page.locator("#conn-text")).to_have_text("revoked · token_revoked", timeout=WAIT)
    await expect(page.locator("#ended")).to_contain_text("token_revoked")
    await screenshot(page, "state-revoked")


async def test_state_disconnected_with_reason_then_connecting_again(
    tmp_path: Path, open_page: OpenPage
) -> None:
    """The server goes away: the page says why, retries, and is back when the server is."""
    database = tmp_path / "restart.db"
    users = UserStore(database)
    await users.add("alice", PASSWORDS["alice"])
    await users.aclose()
    port = free_port()
    page = (await open_page()).page
    conn = page.locator("#conn")
    conn_text = page.locator("#conn-text")
    async with serve(create_app(demo_settings_for(port, database=database)), port) as url:
        await sign_in(page, url)
    await expect(conn_text).to_have_text(re.compile(r"^disconnected · [a-z ]+$"), timeout=WAIT)
    reason = (await conn_text.text_content() or "").split(" · ")[1]
    await expect(page.locator("#messages li.error")).to_have_text(
        re.compile("disconnected: " + reason)
    )
    await screenshot(page, "state-disconnected")
    await expect(conn_text).to_have_text(
        re.compile(r"^connecting · (attempt \d+|retrying) after " + reason + "$"), timeout=WAIT
    )
    await screenshot(page, "state-connecting")
    async with serve(create_app(demo_settings_for(port, database=database)), port):
        await expect(conn).to_have_attribute("data-state", "connected", timeout=WAIT)
        await screenshot(page, "state-reconnected")
