"""The demo page in a real Chromium: sign in, chat, and a cross-site hijack attempt.

Needs Debian's chromium and the playwright package (driving that binary, no
browser download); skips without them, except in CI where it fails.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from conftest import missing_service
from support import demo_settings_for, free_port, serve
from wsgate.demo.app import STATIC, create_app
from wsgate.stores import UserStore

PASSWORD = "browser-test-password"

EVIL_PAGE = """<!doctype html><script src="/static/socket.io.min.js"></script><script>
const s = io("%s", {transports: ["websocket"], withCredentials: true, reconnection: false});
s.on("connect", () => { document.title = "HIJACKED"; });
s.on("connect_error", () => { document.title = "REFUSED"; });
</script>"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing_service("playwright is not installed")
    if chromium is None:
        missing_service("Debian's chromium is not installed")
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    database = tmp_path / "browser.db"
    users = UserStore(database)
    await users.add("alice", PASSWORD)
    await users.aclose()
    port = free_port()
    async with serve(create_app(demo_settings_for(port, database=database)), port) as url:
        yield url


async def sign_in(page: Any, url: str) -> None:
    await page.goto(url + "/")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form#login button")
    from playwright.async_api import expect  # the page's CSP forbids wait_for_function's eval

    await expect(page.locator("#status")).to_have_text("connected", timeout=10_000)


async def test_sign_in_and_chat_in_a_real_browser(browser: Any, demo: str) -> None:
    page = await browser.new_page()
    await sign_in(page, demo)
    assert await page.text_content("#who") == "alice"
    assert not await page.is_visible("form#login")
    await page.click("form#join button")
    await page.wait_for_selector("#messages li:has-text('joined general')")
    await page.fill("form#say input[name=text]", "<b>hello</b> from chromium")
    await page.click("form#say button")
    item = await page.wait_for_selector("#messages li:has-text('from chromium')")
    assert await item.text_content() == "alice: <b>hello</b> from chromium"  # shown as text
    assert await page.query_selector("#messages b") is None


async def test_cross_site_page_cannot_ride_the_cookie(browser: Any, demo: str) -> None:
    """Another origin on the same site gets the cookie sent along; the origin check refuses it."""
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, demo)
    evil_port = free_port()
    evil = Starlette(
        routes=[
            Route("/", lambda request: HTMLResponse(EVIL_PAGE % demo)),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
    )
    async with serve(evil, evil_port) as evil_url:
        attacker = await context.new_page()
        await attacker.goto(evil_url + "/")
        await attacker.wait_for_function("document.title !== ''", timeout=10_000)
        assert await attacker.title() == "REFUSED"
    # The victim's own page is still connected and working.
    assert await page.text_content("#status") == "connected"
