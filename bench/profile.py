"""Profile a server under load with py-spy, and say where its time goes.

Why: issue 5 asks the wsgate team to "take what the profile shows". This
starts a server (the baseline or ``wsgate demo``, through targets.py),
drives one scenario with the same load generator as run.py, attaches
py-spy to the server for the measured window, and prints three views of the
samples: by package (where the CPU goes at a glance), by function including
callees (which layer is costly), and by function alone (self time, the hot
leaves). bench/profile_baseline.md is this script's output, read.

Usage:
    .venv/bin/python bench/profile.py [--target baseline|wsgate] [--scenario echo|fanout|handshakes]
        [--seconds 15] [--native] [--out DIR]

Needs py-spy in the venv (``.venv/bin/pip install py-spy``); py-spy samples
the running process from outside, so the server runs unmodified. Sampling at
the default 250 Hz costs the server a few percent: figures printed here are
not benchmark figures.
"""

from __future__ import annotations

import argparse
import collections
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run
from targets import TARGETS

SITE = re.compile(r"\((?:.*/site-packages/|.*/lib/python3\.\d+/)?(?P<path>[^:)]*)(?::\d+)?\)$")


def package_of(frame: str) -> str:
    """The top-level package (or stdlib module) a py-spy frame belongs to."""
    m = SITE.search(frame)
    if not m:
        return frame.split(" ", 1)[0]  # native frames: the symbol
    path = m.group("path")
    if "/" not in path:
        return path.removesuffix(".py")
    return path.split("/", 1)[0]


def function_of(frame: str) -> str:
    """``func (pkg/file.py)`` without the line number, so a function's lines add up."""
    m = SITE.search(frame)
    name = frame.split(" (", 1)[0]
    return f"{name} ({m.group('path')})" if m else name


def summarize(raw: Path, top: int = 25) -> str:
    """Markdown tables from py-spy's raw (collapsed stack) output."""
    total = 0
    by_package: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        # The process/thread header frames py-spy adds are not code.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        leaf = frames[-1]
        self_time[function_of(leaf)] += n
        by_package[package_of(leaf)] += n
        for f in {function_of(f) for f in frames}:
            inclusive[f] += n
    if total == 0:
        return "no samples"

    def table(title: str, counter: collections.Counter[str]) -> str:
        rows = [f"### {title}\n", "| % of samples | frame |", "|---:|---|"]
        rows += [f"| {100 * n / total:.1f} | `{k}` |" for k, n in counter.most_common(top)]
        return "\n".join(rows)

    return "\n\n".join(
        [
            f"{total} samples",
            table("Self time by package (leaf frame's package)", by_package),
            table("Inclusive time by function (the function or its callees)", inclusive),
            table("Self time by function", self_time),
        ]
    )


def main() -> int:
    """Start the server, load it, record it, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="baseline")
    parser.add_argument("--scenario", choices=["echo", "fanout", "handshakes"], default="echo")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="include C frames (uvloop, ...)")
    parser.add_argument("--out", type=Path, default=None, help="keep raw stacks and SVG here")
    args = parser.parse_args()

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    run.raise_fd_limit()
    run.ensure_node_modules()
    params = run.Params.for_mode(quick=True)
    params = replace(
        params,
        echo_warmup_s=2.0,
        echo_s=args.seconds + 2,
        handshake_warmup_s=2.0,
        handshake_s=args.seconds + 2,
        fanout_messages=300,
    )
    with tempfile.TemporaryDirectory(prefix="wsgate-profile-") as tmp:
        workdir = Path(tmp)
        out = args.out or workdir
        out.mkdir(parents=True, exist_ok=True)
        raw = out / f"{args.target}-{args.scenario}.txt"
        with run.running(TARGETS[args.target], workdir, secrets.token_urlsafe(32)) as server:
            cmd = [
                py_spy,
                "record",
                "--pid",
                str(server.pid),
                "--rate",
                str(args.rate),
                "--duration",
                str(int(args.seconds)),
                "--format",
                "raw",
                "--output",
                str(raw),
            ]
            if args.native:
                cmd.append("--native")
            # Start sampling after the warm-up: the load generator connects
            # and warms for ~2 s first, and py-spy's own start takes a moment.
            spy: subprocess.Popen[bytes] | None = None

            def start_spy() -> None:
                nonlocal spy
                spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

            timer = threading.Timer(2.5, start_spy)
            timer.start()
            try:
                result = run.RUNNERS[args.scenario](server, params, workdir)
            finally:
                timer.cancel()
                if spy is not None:
                    try:
                        spy.wait(timeout=args.seconds + 30)
                    except subprocess.TimeoutExpired:
                        spy.kill()
        figures = {
            k: round(v, 2) if isinstance(v, float) else v
            for k, v in result.items()
            if k
            in (
                "acks_per_s",
                "deliveries_per_s",
                "handshakes_per_s",
                "p50_ms",
                "p99_ms",
                "server_cpu_pct",
                "client_cpu_pct",
                "other_cpu_pct",
                "error",
            )
        }
        print(f"# py-spy profile: {args.target} under {args.scenario}\n")
        print(f"load while sampled: {figures}\n")
        if not raw.exists():
            print("py-spy wrote nothing (is ptrace allowed here?)", file=sys.stderr)
            return 1
        print(summarize(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
