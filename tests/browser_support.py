"""Chromium for the browser tests: launch, watch the console, keep screenshots.

Debian's chromium driven by the playwright package (no browser download);
the tests skip without either, except in CI where they fail
(:func:`conftest.missing_service`). Screenshots go to
``test-artifacts/browser/`` (git-ignored), one per test, kept whether the
test passes or fails so a reviewer can look at what the page showed.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import missing_service

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"

PASSWORDS = {"alice": "browser-test-alice-password", "admin": "browser-test-admin-password"}


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Debian chromium under playwright; skip (fail in CI) without them."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing_service("playwright is not installed")
    if executable is None:
        missing_service("Debian's chromium is not installed")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watched:
    """A page and what its console and network said: errors, warnings and HTTP failures."""

    page: Any
    console: list[tuple[str, str]] = field(default_factory=list)
    failed_responses: list[tuple[int, str]] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and responses of 400 or more."""
        found = [f"console {kind}: {text}" for kind, text in self.console if kind != "log"]
        found += [f"HTTP {status} {url}" for status, url in self.failed_responses]
        return found

    def saw(self, pattern: str) -> bool:
        return any(re.search(pattern, text) for _, text in self.console)


async def watched_page(context: Any) -> Watched:
    """A new page of ``context`` whose console messages and failed responses are recorded."""
    page = await context.new_page()
    watched = Watched(page)
    page.on("console", lambda msg: watched.console.append((msg.type, msg.text)))
    page.on("pageerror", lambda exc: watched.console.append(("pageerror", str(exc))))

    def on_response(response: Any) -> None:
        if response.status >= 400:
            watched.failed_responses.append((response.status, response.url))

    page.on("response", on_response)
    return watched


async def screenshot(page: Any, name: str) -> Path:
    """Save a full-page PNG under ``test-artifacts/browser/`` and print where it is."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


async def sign_in(page: Any, url: str, user: str = "alice") -> None:
    """Sign in through the page's form and wait for the socket to be connected."""
    from playwright.async_api import expect  # the page's CSP forbids wait_for_function's eval

    await page.goto(url + "/")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORDS[user])
    await page.click("form#login button")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)
