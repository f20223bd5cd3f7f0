"""Who is on the other end of a connection, once their token was verified."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified identity of a connection.

    ``claims`` keeps every claim of the token so that guards can look at
    custom ones; ``sub`` and ``roles`` are lifted out because almost every
    guard needs them. ``expires_at`` and ``jti`` drive the live session.
    """

    sub: str
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None
    issued_at: float | None = None
    jti: str | None = None

    def has_roles(self, *required: str) -> bool:
        """True when every role in ``required`` was granted."""
        return all(role in self.roles for role in required)
