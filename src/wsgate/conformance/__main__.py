"""``python -m wsgate.conformance {engineio,socketio} --port P``: serve a fixture on 127.0.0.1."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn
from starlette.types import ASGIApp


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsgate.conformance")
    parser.add_argument("protocol", choices=["engineio", "socketio"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    app: ASGIApp
    if args.protocol == "engineio":
        from wsgate.conformance.engineio import EngineIOFixture

        app = EngineIOFixture()
    else:
        from wsgate.conformance.socketio import SocketIOFixture

        app = SocketIOFixture()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
