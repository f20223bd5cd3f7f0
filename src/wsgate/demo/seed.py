"""First-run demo users, so that a newcomer can sign in straight away."""

from __future__ import annotations

import os
import secrets
import sys

from wsgate.stores import UserStore

DEMO_USERS = (("alice", ()), ("admin", ("admin",)))


async def seed_demo_users(database: str | os.PathLike[str]) -> None:
    """Create ``alice`` and ``admin`` with random passwords when neither exists yet.

    The passwords are printed once, to the terminal that started the demo;
    there is no default password that would work on someone else's install.
    """
    store = UserStore(database)
    try:
        if any([await store.get(name) for name, _ in DEMO_USERS]):
            return
        for name, user_roles in DEMO_USERS:
            password = secrets.token_urlsafe(9)
            await store.add(name, password, user_roles)
            print(f"wsgate demo: created user {name!r} with password {password!r}", file=sys.stderr)
    finally:
        await store.aclose()
