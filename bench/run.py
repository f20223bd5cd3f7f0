"""wsgate benchmark harness (issue 5): wsgate demo vs a hand-written python-socketio server.

Why it is built this way:

- Both servers are started here, on 127.0.0.1 and free ports, as separate
  processes, and a fresh server serves each (scenario, repetition), so one
  run's garbage, rooms or fragmented heap never bleeds into the next figure.
- Runs are interleaved A B A B (baseline, wsgate, baseline, wsgate, ...), so
  that a slow drift of the machine (thermal, a neighbour) hits both sides alike.
- The load comes from a Node socket.io-client process (loadgen.js) whose own
  CPU use, and the server's, over each measured window is reported with the
  figure: a server near 100% of one core and a client well below it is a
  server-bound figure; a client near 100% means the client may be the limit.
- Every loop is bounded in count and in time, the load generator has a hard
  timeout, and only 127.0.0.1 is ever contacted.

Usage:
    .venv/bin/python bench/run.py [--quick] [--only 1,2,...|names] [--target wsgate|baseline|both]

Scenarios: 1 handshakes, 2 echo, 3 idle (memory), 4 fanout, 5 jwt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt_cost
from targets import BENCH_DIR, REPO_DIR, TARGETS, ServerSpec, Target, wsgate_available

SCENARIOS = ["handshakes", "echo", "idle", "fanout", "jwt"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENT = ["lean"]
"""The load generator's client ("lean" or "socketio"), set once from --client."""
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Params:
    """The size of each scenario; --quick trades precision for a run under 3 minutes."""

    reps: int
    handshake_warmup_s: float
    handshake_s: float
    handshake_concurrency: int
    echo_warmup_s: float
    echo_s: float
    echo_clients: int
    idle_connections: int
    fanout_members: int
    fanout_messages: int

    @staticmethod
    def for_mode(quick: bool) -> Params:
        """The issue's sizes in full mode; fewer idle connections and shorter windows in quick."""
        if quick:
            return Params(
                reps=2,
                handshake_warmup_s=1.0,
                handshake_s=3.0,
                handshake_concurrency=50,
                echo_warmup_s=1.0,
                echo_s=3.0,
                echo_clients=100,
                idle_connections=1000,
                fanout_members=1000,
                fanout_messages=40,
            )
        return Params(
            reps=3,
            handshake_warmup_s=2.0,
            handshake_s=10.0,
            handshake_concurrency=50,
            echo_warmup_s=2.0,
            echo_s=10.0,
            echo_clients=100,
            idle_connections=5000,
            fanout_members=1000,
            fanout_messages=100,
        )


@dataclass
class Figure:
    """One measured quantity for one target over repetitions."""

    values: list[float] = field(default_factory=list)

    def summary(self) -> tuple[float, float, float] | None:
        """(median, min, max), or None when nothing was measured."""
        if not self.values:
            return None
        return statistics.median(self.values), min(self.values), max(self.values)


@dataclass(frozen=True)
class Metric:
    """How a figure is read out of a load-generator result, and how it is shown."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    fmt: str = ",.0f"


METRICS: dict[str, list[Metric]] = {
    "handshakes": [
        Metric("handshakes_per_s", "1. handshakes/s (cookie JWT + Origin, ws, whoami)", "/s", True),
        Metric(
            "handshakes_per_s_per_cpu",
            "1. handshakes per server CPU-second",
            "/CPU-s",
            True,
        ),
        Metric("p50_ms", "1. handshake p50", "ms", False, ".2f"),
        Metric("p99_ms", "1. handshake p99", "ms", False, ".2f"),
    ],
    "echo": [
        Metric("acks_per_s", "2. echo acks/s (100 clients, closed loop)", "/s", True),
        Metric("acks_per_s_per_cpu", "2. echo acks per server CPU-second", "/CPU-s", True),
        Metric("p50_ms", "2. echo p50", "ms", False, ".2f"),
        Metric("p99_ms", "2. echo p99", "ms", False, ".2f"),
    ],
    "idle": [
        Metric(
            "kib_per_conn", "3. server RSS per idle authenticated connection", "KiB", False, ".1f"
        ),
    ],
    "fanout": [
        Metric("deliveries_per_s", "4. room fan-out deliveries/s", "/s", True),
        Metric(
            "deliveries_per_s_per_cpu",
            "4. fan-out deliveries per server CPU-second",
            "/CPU-s",
            True,
        ),
    ],
}


# ---------------------------------------------------------------- /proc helpers


def _children(pid: int) -> list[int]:
    """Direct and indirect children of ``pid`` (a server may fork workers)."""
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        by_parent.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for c in by_parent.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def tree_cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a process and its children, from /proc/PID/stat."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle, not iowait) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user/nice
    return (sum(fields[:8]) - idle) / CLK_TCK


def tree_rss_bytes(pid: int) -> int:
    """Resident set size of a process and its children, from /proc/PID/statm."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


# ---------------------------------------------------------------- environment


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (inherited by the servers and the load generator).

    5,000 idle connections need 5,000 sockets in the server and 5,000 in the
    client, plus the listening socket and a few files; the common soft limit
    of 1,024 would fail the idle scenario long before memory tells anything.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ensure_node_modules() -> None:
    """Install the load generator's pinned dependencies (npm ci) on a fresh clone."""
    if (BENCH_DIR / "node_modules" / "socket.io-client").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("bench needs Node.js >= 18 and npm for the load generator (bench/loadgen.js)")
    print("installing the load generator (npm ci in bench/) ...", flush=True)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BENCH_DIR, check=True, timeout=300)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "python": platform.python_version(),
        "node": node.stdout.strip(),
        "kernel": platform.release(),
    }


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- tokens


def mint_tokens(secret: str, count: int, prefix: str) -> list[str]:
    """Access tokens as the demo expects them: HS256, typ at+jwt, token_use access, jti.

    Each token has its own ``sub`` and ``jti``, so no per-user connection cap is
    hit and no verified-token cache can turn a handshake into a lookup: scenario
    1 measures a full verification per handshake.
    """
    now = int(time.time())
    header = {"typ": "at+jwt"}
    return [
        jwt.encode(
            {
                "sub": f"{prefix}-{i}",
                "iat": now,
                "exp": now + 3600,
                "jti": uuid.uuid4().hex,
                "roles": ["user"],
                "token_use": "access",
            },
            secret,
            algorithm="HS256",
            headers=header,
        )
        for i in range(count)
    ]


# ---------------------------------------------------------------- servers


class Server:
    """One server process on a free port; started, polled until /healthz answers, stopped."""

    def __init__(self, target: Target, workdir: Path, secret: str) -> None:
        self.target = target
        self.spec = ServerSpec(port=free_port(), jwt_secret=secret, workdir=workdir)
        self.log_path = workdir / f"{target.name}-{self.spec.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait (bounded) until GET /healthz returns 200."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.target.command(self.spec),
                cwd=self.spec.workdir,
                env=self.target.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        url = self.spec.url + "/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.target.name} exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.target.name} not ready in {timeout}s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        """The server's process id (only valid once started)."""
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s: only the process this object started."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's output, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running(target: Target, workdir: Path, secret: str) -> Iterator[Server]:
    """A started server, always stopped afterwards."""
    server = Server(target, workdir, secret)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- load generator


def run_loadgen(
    config: dict[str, Any],
    server: Server,
    workdir: Path,
    on_event: Callable[[dict[str, Any], subprocess.Popen[str]], None] | None = None,
) -> dict[str, Any]:
    """Run loadgen.js with ``config``; sample the server's CPU at its window markers.

    Returns the generator's result plus ``server_cpu_pct`` (percent of one core
    the server used inside the measured window). A watchdog kills the generator
    (by its pid) if it outlives its own hard timeout.
    """
    hard_ms = int(config.setdefault("hardTimeoutMs", 120_000))
    config.setdefault("client", CLIENT[0])
    cfg_path = workdir / f"loadgen-{uuid.uuid4().hex[:8]}.json"
    cfg_path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        ["node", str(BENCH_DIR / "loadgen.js"), str(cfg_path)],
        cwd=BENCH_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(hard_ms / 1000 + 15, proc.kill)
    watchdog.start()
    result: dict[str, Any] = {"error": "load generator gave no result"}
    cpu_start: tuple[float, float, float, float] | None = None
    cpu_end: tuple[float, float, float, float] | None = None

    def sample() -> tuple[float, float, float, float]:
        return (
            time.monotonic(),
            tree_cpu_seconds(server.pid),
            tree_cpu_seconds(proc.pid),
            system_busy_seconds(),
        )

    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            event = msg.get("event")
            if event == "measure_start":
                cpu_start = sample()
            elif event == "measure_end":
                cpu_end = sample()
            elif event == "result":
                result = msg
            elif on_event is not None:
                on_event(msg, proc)
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, None) and "error" not in result:
        result["error"] = f"load generator exited {proc.returncode}"
    if "error" in result and proc.stderr is not None:
        result["stderr"] = proc.stderr.read()[-2000:]
    if cpu_start and cpu_end and cpu_end[0] > cpu_start[0]:
        wall = cpu_end[0] - cpu_start[0]
        server_pct, client_pct, busy_pct = (
            100 * (cpu_end[i] - cpu_start[i]) / wall for i in (1, 2, 3)
        )
        result["server_cpu_pct"] = server_pct
        # Everything else that ran on the machine meanwhile (other jobs, the
        # harness, the kernel's softirq work): a high figure flags a noisy run.
        result["other_cpu_pct"] = max(0.0, busy_pct - server_pct - client_pct)
        # Work per server CPU-second: on a machine shared with other jobs the
        # server is not always at 100% of a core, and this figure moves less
        # than the raw rate does. Both are reported.
        for key in ("handshakes_per_s", "acks_per_s", "deliveries_per_s"):
            if isinstance(result.get(key), (int, float)) and server_pct > 1:
                result[key + "_per_cpu"] = result[key] / (server_pct / 100)
    return result


# ---------------------------------------------------------------- scenarios


def scenario_handshakes(server: Server, p: Params, workdir: Path) -> dict[str, Any]:
    """1: new connection per handshake, fresh token each, one whoami, disconnect."""
    # Enough tokens for ~6,000 handshakes/s (far above what a Python server
    # reaches here); the generator stops early, and says so, if they run out.
    count = int((p.handshake_warmup_s + p.handshake_s) * 6000)
    tokens_file = workdir / "tokens-handshakes.json"
    tokens_file.write_text(json.dumps(mint_tokens(server.spec.jwt_secret, count, "hs")))
    return run_loadgen(
        {
            "scenario": "handshakes",
            "url": server.spec.url,
            "origin": server.spec.origin,
            "tokensFile": str(tokens_file),
            "concurrency": p.handshake_concurrency,
            "warmupMs": int(p.handshake_warmup_s * 1000),
            "durationMs": int(p.handshake_s * 1000),
            "hardTimeoutMs": int((p.handshake_warmup_s + p.handshake_s) * 1000) + 30_000,
        },
        server,
        workdir,
    )


def scenario_echo(server: Server, p: Params, workdir: Path) -> dict[str, Any]:
    """2: 100 connected clients, each in a closed loop of echo + ack."""
    tokens_file = workdir / "tokens-echo.json"
    tokens_file.write_text(json.dumps(mint_tokens(server.spec.jwt_secret, p.echo_clients, "e")))
    return run_loadgen(
        {
            "scenario": "echo",
            "url": server.spec.url,
            "origin": server.spec.origin,
            "tokensFile": str(tokens_file),
            "clients": p.echo_clients,
            "textLength": 32,
            "warmupMs": int(p.echo_warmup_s * 1000),
            "durationMs": int(p.echo_s * 1000),
            "hardTimeoutMs": int((p.echo_warmup_s + p.echo_s) * 1000) + 45_000,
        },
        server,
        workdir,
    )


def scenario_idle(server: Server, p: Params, workdir: Path) -> dict[str, Any]:
    """3: server RSS before and after N idle authenticated connections, per connection."""
    warmup = 50
    n = p.idle_connections
    tokens_file = workdir / "tokens-idle.json"
    tokens_file.write_text(json.dumps(mint_tokens(server.spec.jwt_secret, n + warmup, "i")))
    rss: dict[str, int] = {}

    def settle() -> int:
        """RSS once it stops moving (bounded to 3 s): allocations trail the acks a little."""
        last = tree_rss_bytes(server.pid)
        for _ in range(30):
            time.sleep(0.1)
            now = tree_rss_bytes(server.pid)
            if abs(now - last) < 64 * 1024:
                return now
            last = now
        return last

    def on_event(msg: dict[str, Any], proc: subprocess.Popen[str]) -> None:
        if msg.get("event") == "warm":
            time.sleep(0.5)
            rss["before"] = settle()
        elif msg.get("event") == "ready":
            rss["connected"] = int(msg.get("connected", 0))
            time.sleep(1.0)
            rss["after"] = settle()
        else:
            return
        assert proc.stdin is not None
        proc.stdin.write("next\n")
        proc.stdin.flush()

    result = run_loadgen(
        {
            "scenario": "idle",
            "url": server.spec.url,
            "origin": server.spec.origin,
            "tokensFile": str(tokens_file),
            "connections": n,
            "warmup": warmup,
            "connectConcurrency": 100,
            "connectDeadlineMs": 120_000,
            "holdMs": 60_000,
            "hardTimeoutMs": 240_000,
        },
        server,
        workdir,
        on_event,
    )
    if "before" in rss and "after" in rss and rss.get("connected"):
        result["rss_before_mib"] = rss["before"] / 2**20
        result["rss_after_mib"] = rss["after"] / 2**20
        result["kib_per_conn"] = (rss["after"] - rss["before"]) / rss["connected"] / 1024
    return result


def scenario_fanout(server: Server, p: Params, workdir: Path) -> dict[str, Any]:
    """4: 1,000 listeners + 1 sender in one room; count every delivery."""
    tokens_file = workdir / "tokens-fanout.json"
    tokens_file.write_text(
        json.dumps(mint_tokens(server.spec.jwt_secret, p.fanout_members + 1, "f"))
    )
    return run_loadgen(
        {
            "scenario": "fanout",
            "url": server.spec.url,
            "origin": server.spec.origin,
            "tokensFile": str(tokens_file),
            "members": p.fanout_members,
            "messages": p.fanout_messages,
            "room": "bench",
            "window": 10,
            "connectConcurrency": 100,
            "deliveryTimeoutMs": 60_000,
            "hardTimeoutMs": 180_000,
        },
        server,
        workdir,
    )


RUNNERS: dict[str, Callable[[Server, Params, Path], dict[str, Any]]] = {
    "handshakes": scenario_handshakes,
    "echo": scenario_echo,
    "idle": scenario_idle,
    "fanout": scenario_fanout,
}


def problems(scenario: str, r: dict[str, Any]) -> list[str]:
    """Anything in a result that makes its figure suspect (refusals, losses, errors)."""
    out: list[str] = []
    if r.get("error"):
        out.append(f"error: {r['error']}")
    for key in (
        "failed",
        "connect_failed",
        "bad_acks",
        "stalled",
        "lost",
        "foreign_messages",
        "listeners_with_duplicates",
    ):
        if r.get(key):
            out.append(f"{key}={r[key]}")
    for key in ("errors", "connect_errors", "ack_errors", "say_errors", "join_errors"):
        if r.get(key):
            out.append(f"{key}={r[key]}")
    if scenario == "idle" and r.get("still_connected", 0) < r.get("connected", 0):
        out.append(f"dropped while idle: {r['connected'] - r['still_connected']}")
    return out


# ---------------------------------------------------------------- reporting


def fmt_summary(s: tuple[float, float, float] | None, f: str) -> str:
    """``median (min-max)`` or ``n/a``."""
    if s is None:
        return "n/a"
    return f"{s[0]:{f}} ({s[1]:{f}}-{s[2]:{f}})"


def ratio(base: Figure, ws: Figure) -> str:
    """wsgate median / baseline median."""
    b, w = base.summary(), ws.summary()
    if b is None or w is None or b[0] == 0:
        return "n/a"
    return f"{w[0] / b[0]:.2f}x"


def report(results: dict[str, dict[str, list[dict[str, Any]]]], targets: list[str]) -> str:
    """The comparison table (Markdown), one row per figure, plus CPU rows."""
    lines = [
        "| figure | baseline median (min-max) | wsgate median (min-max) | wsgate/baseline |",
        "|---|---|---|---|",
    ]
    for scenario, metrics in METRICS.items():
        if scenario not in results:
            continue
        per_target = results[scenario]
        for m in metrics:
            figs = {
                t: Figure(
                    [float(r[m.key]) for r in per_target.get(t, []) if r.get(m.key) is not None]
                )
                for t in ("baseline", "wsgate")
            }
            better = "higher" if m.higher_is_better else "lower"
            lines.append(
                f"| {m.label} ({m.unit}, {better} is better) "
                f"| {fmt_summary(figs['baseline'].summary(), m.fmt)} "
                f"| {fmt_summary(figs['wsgate'].summary(), m.fmt)} "
                f"| {ratio(figs['baseline'], figs['wsgate'])} |"
            )
        if scenario != "idle":
            for key, who in (
                ("server_cpu_pct", "server"),
                ("client_cpu_pct", "load generator"),
                ("other_cpu_pct", "everything else on the machine"),
            ):
                figs = {
                    t: Figure([float(r[key]) for r in per_target.get(t, []) if key in r])
                    for t in ("baseline", "wsgate")
                }
                lines.append(
                    f"| &nbsp;&nbsp;{scenario}: {who} CPU, % of one core "
                    f"| {fmt_summary(figs['baseline'].summary(), '.0f')} "
                    f"| {fmt_summary(figs['wsgate'].summary(), '.0f')} | |"
                )
    del targets
    return "\n".join(lines)


def parse_only(value: str | None) -> list[str]:
    """``--only 1,3`` or ``--only echo,jwt`` -> scenario names, in the canonical order."""
    if not value:
        return list(SCENARIOS)
    chosen: set[str] = set()
    for item in value.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item.isdigit() and 1 <= int(item) <= len(SCENARIOS):
            chosen.add(SCENARIOS[int(item) - 1])
        elif item in SCENARIOS:
            chosen.add(item)
        else:
            raise SystemExit(f"unknown scenario {item!r}; choose from 1-5 or {SCENARIOS}")
    return [s for s in SCENARIOS if s in chosen]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios against the chosen targets and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows; under 3 minutes")
    parser.add_argument("--only", help="comma list of scenarios: 1-5 or " + ",".join(SCENARIOS))
    parser.add_argument("--target", choices=["wsgate", "baseline", "both"], default="both")
    parser.add_argument("--reps", type=int, help="repetitions per target (default 2 quick, 3 full)")
    parser.add_argument(
        "--client",
        choices=["lean", "socketio"],
        default="lean",
        help="load generator client: lean Socket.IO over `ws` (default) or npm socket.io-client",
    )
    parser.add_argument("--json", type=Path, help="also write every raw result to this file")
    args = parser.parse_args(argv)

    started = time.monotonic()
    params = Params.for_mode(args.quick)
    if args.reps:
        params = Params(**{**params.__dict__, "reps": max(1, args.reps)})
    scenarios = parse_only(args.only)
    CLIENT[0] = args.client
    fd_limit = raise_fd_limit()
    info = machine()
    print(
        f"machine: {info['cpus']} CPUs, {info['cpu_model']}, Python {info['python']}, "
        f"Node {info['node']}, fd limit {fd_limit}"
    )
    print(
        f"mode: {'quick' if args.quick else 'full'}, repetitions {params.reps}, "
        f"scenarios {', '.join(scenarios)}, client {args.client}"
    )

    targets = ["baseline", "wsgate"] if args.target == "both" else [args.target]
    if "wsgate" in targets and any(s != "jwt" for s in scenarios):
        ok, why = wsgate_available()
        if not ok:
            if args.target == "wsgate":
                print(f"wsgate demo is not runnable: {why}", file=sys.stderr)
                return 1
            print(f"NOTE: wsgate demo is not runnable ({why}); measuring the baseline only")
            targets = ["baseline"]
    if any(s != "jwt" for s in scenarios):
        ensure_node_modules()

    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="wsgate-bench-") as tmp:
        workdir = Path(tmp)
        for scenario in scenarios:
            if scenario == "jwt":
                continue
            per_target: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
            results[scenario] = per_target
            for rep in range(params.reps):
                for name in targets:  # A B A B: interleaved repetitions
                    secret = secrets.token_urlsafe(32)
                    t0 = time.monotonic()
                    try:
                        with running(TARGETS[name], workdir, secret) as server:
                            r = RUNNERS[scenario](server, params, workdir)
                    except RuntimeError as exc:
                        r = {"error": str(exc)}
                    r["target"] = name
                    r["rep"] = rep + 1
                    per_target[name].append(r)
                    headline = next(
                        (
                            f"{m.key}={r[m.key]:{m.fmt}}"
                            for m in METRICS[scenario]
                            if r.get(m.key) is not None
                        ),
                        "no figure",
                    )
                    cpu = ""
                    if "server_cpu_pct" in r or "client_cpu_pct" in r:
                        cpu = (
                            f" server CPU {r.get('server_cpu_pct', 0):.0f}%"
                            f" client CPU {r.get('client_cpu_pct', 0):.0f}%"
                            f" other CPU {r.get('other_cpu_pct', 0):.0f}%"
                        )
                    if scenario == "idle" and "rss_after_mib" in r:
                        cpu = (
                            f" (RSS {r['rss_before_mib']:.0f} -> {r['rss_after_mib']:.0f} MiB"
                            f" for {r.get('connected', 0)} connections)"
                        )
                    issues = problems(scenario, r)
                    print(
                        f"  {scenario} #{rep + 1} {name:8s} {headline}{cpu}"
                        f" [{time.monotonic() - t0:.1f}s]"
                        + (f"  !! {'; '.join(issues)}" if issues else ""),
                        flush=True,
                    )
                    if r.get("stderr"):
                        print("    " + r["stderr"].strip().replace("\n", "\n    ")[-800:])

    print()
    noisy = [
        r
        for per_target in results.values()
        for rs in per_target.values()
        for r in rs
        if r.get("other_cpu_pct", 0) > 25
    ]
    if noisy:
        print(
            f"NOTE: in {len(noisy)} run(s) other processes used more than 25% of a core "
            "during the measured window; rates from a shared machine are noisy (the "
            "per-CPU-second rows are steadier). Re-run on a quiet machine for final figures.\n"
        )
    if results:
        print(
            f"## wsgate vs baseline ({'quick' if args.quick else 'full'}, "
            f"{params.reps} repetitions each, interleaved)\n"
        )
        print(report(results, targets))
        print()
    jwt_rows: list[jwt_cost.Row] = []
    if "jwt" in scenarios:
        print("## 5. JWT verification cost (PyJWT, in-process) and a verified-token cache\n")
        jwt_rows = jwt_cost.measure(quick=args.quick)
        print(jwt_cost.table(jwt_rows))
        print()
    elapsed = time.monotonic() - started
    print(f"total time: {elapsed:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "params": params.__dict__,
                    "targets": targets,
                    "results": results,
                    "jwt": [r.__dict__ for r in jwt_rows],
                    "elapsed_s": elapsed,
                    "repo": str(REPO_DIR),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
