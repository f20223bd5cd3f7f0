"""An App whose events use the types pydantic describes in every way the generators map.

Imported by the schema tests and named on the command line as ``schema_zoo:app``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from wsgate import App, Context, Gateway, Settings, emits, public, roles, subscribe, use_guards

SECRET = "zoo-secret-long-enough-for-hs256-0123456789abcdef"


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


class Point(BaseModel):
    x: int
    y: int = 0


class Tree(BaseModel):
    """A recursive model: a node and its children."""

    label: str
    children: list[Tree] = []


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=0, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


Pet = Annotated[Cat | Dog, Field(discriminator="kind")]


class Everything(BaseModel):
    """One of each."""

    name: str = Field(min_length=1, description="Who is asking.")
    nickname: str | None = None
    colour: Colour
    mode: Literal["fast", "slow"] = "fast"
    tags: list[str] = []
    scores: dict[str, float] = {}
    pair: tuple[int, str]
    numbers: tuple[int, ...] = ()
    point: Point
    pet: Pet
    tree: Tree | None = None
    anything: Any = None
    with_space: int = Field(default=0, alias="with space")


class Summary(TypedDict):
    name: str
    total: float


Tick = TypedDict("Tick", {"n": int, "from": str})


def always(ctx: Context) -> bool:
    return True


@emits("tick", Tick, description="Once a second.")
@emits("bare")
class Zoo(Gateway, namespace="/zoo"):
    """Every shape of body and ack."""

    @subscribe("everything")
    async def everything(self, ctx: Context, body: Everything) -> Summary:
        """Takes one of each."""
        return {"name": body.name, "total": sum(body.scores.values())}

    @subscribe("points")
    async def points(self, ctx: Context, body: list[Point]) -> list[Point]:
        return body

    @public
    @subscribe("nothing")
    async def nothing(self, ctx: Context) -> None:
        return None

    @subscribe("untyped")
    async def untyped(self, ctx: Context, body: int):  # type: ignore[no-untyped-def]
        return body

    @roles("keeper", "vet")
    @use_guards(always)
    @subscribe("feed")
    async def feed(self, ctx: Context, body: Pet) -> Pet:
        return body

    @subscribe("tree")
    async def tree(self, ctx: Context, body: Tree) -> Tree:
        return body


@roles("keeper")
class Keepers(Gateway, namespace="/keepers"):
    @subscribe("count")
    async def count(self, ctx: Context, body: int) -> int:
        return body + 1


app = App([Zoo(), Keepers()], Settings(jwt_secret=SECRET))
