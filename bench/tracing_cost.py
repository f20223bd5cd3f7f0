"""Micro-benchmark: what tracing costs per event, off and on.

Why: issue 12 asks that tracing be free when no OpenTelemetry SDK is
configured, also when the API package is installed (it is a dependency of
many libraries, so it often is). This runs bench/event_cost.py's
measurement (the port's per-event path, no socket) in a fresh process per
mode, the modes interleaved and repeated, and prints the best figure of
each:

- ``no-api``: ``opentelemetry`` cannot be imported (wsgate installed without ``[otel]``);
- ``api-no-sdk``: the API is there, no SDK configured (OpenTelemetry's proxy provider);
- ``sdk-sampled-out``: an SDK provider whose sampler drops every span;
- ``sdk-in-memory``: an SDK provider exporting every span to memory (the cost of tracing on).

    .venv/bin/python bench/tracing_cost.py [--repeat 3] [--events 2000] [--rounds 15]

Needs ``opentelemetry-sdk`` (in the ``test`` extra). Figures are
nanoseconds per event; never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.abc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

MODES = ("no-api", "api-no-sdk", "sdk-sampled-out", "sdk-in-memory")
HERE = Path(__file__).resolve().parent


class _NoOpenTelemetry(importlib.abc.MetaPathFinder):
    """Makes ``import opentelemetry`` fail, as on an install without the extra."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"{name} is hidden by bench/tracing_cost.py")
        return None


def run_mode(mode: str, events: int, rounds: int) -> dict[str, float]:
    """One measurement in this process (a fresh one per mode: the global provider sticks)."""
    if mode == "no-api":
        sys.meta_path.insert(0, _NoOpenTelemetry())
    elif mode.startswith("sdk"):
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        if mode == "sdk-sampled-out":
            provider = TracerProvider(sampler=ALWAYS_OFF)
        else:
            provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    sys.path.insert(0, str(HERE))
    import event_cost

    from wsgate.core import tracing

    results = asyncio.run(event_cost.measure(events, rounds, only=("ping", "echo")))
    if mode == "no-api":
        assert not tracing.available()
    return dict(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.events, args.rounds)))
        return
    best: dict[str, dict[str, float]] = {mode: {} for mode in MODES}
    for _ in range(args.repeat):
        for mode in MODES:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--mode",
                    mode,
                    "--events",
                    str(args.events),
                    "--rounds",
                    str(args.rounds),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            for case, ns in json.loads(out.strip().splitlines()[-1]).items():
                best[mode][case] = min(best[mode].get(case, float("inf")), ns)
    cases = list(best[MODES[0]])
    print(f"{'mode':<18}" + "".join(f"{case:>24}" for case in cases) + "   (ns/event)")
    base = best["no-api"]
    for mode in MODES:
        cells = "".join(
            f"{best[mode][case]:>15.0f} ({best[mode][case] / base[case]:4.2f}x)" for case in cases
        )
        print(f"{mode:<18}{cells}")


if __name__ == "__main__":
    main()
