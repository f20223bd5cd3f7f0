"""``wsgate demo``'s App as a plain ASGI app, for ``uvicorn --factory demo_asgi:app``.

Why it exists: issue 9 asks the App to be fast when it is mounted in
someone else's ASGI server too, not only under ``wsgate demo`` (which adds
wsgate's HTTP protocol with its connect deadline and a tuned garbage
collector). This factory builds the very App ``wsgate demo`` serves, from the
same ``WSGATE_*`` environment, and leaves everything else to plain uvicorn.

    cd bench && WSGATE_JWT_SECRET=... ../.venv/bin/uvicorn --factory demo_asgi:app \\
        --host 127.0.0.1 --port 8000 --log-level warning --no-access-log

The demo's users are not seeded (the benchmark signs its own tokens).
"""

from __future__ import annotations

from wsgate import App
from wsgate.demo.app import create_app
from wsgate.demo.settings import DemoSettings


def app() -> App:
    """The demo App for the settings in the environment (a JWT key must be set there)."""
    return create_app(DemoSettings())
