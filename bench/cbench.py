#!/usr/bin/env python3
"""Server-bound Socket.IO benchmark: a C load client (cload.c) drives each target in turn.

Adapted from the project's shared benchmark peers (bench-peers/cbench.py, written for the
issue 9 speed comparison); wsgate's copy adds the ``sio-idle`` mode (memory per idle
authenticated connection), signs tokens the hand-written python-socketio baseline accepts too,
and prints each target's ratio to reference targets.

The server is pinned to CPU 1 and the client to CPU 0, so that the server, not the client, is
the limit. Targets are shell commands with {port}, run with bench/ as the working directory;
every target gets the same HS256 secret (WSGATE_JWT_SECRET),
WSGATE_ALLOWED_ORIGINS=http://app.bench.test, and wsgate's two per-client caps lifted (rate
limit, connections per user) so a closed-loop client is not refused.

    python bench/cbench.py --reps 3 \\
        --target wsgate='exec ../.venv/bin/wsgate demo --host 127.0.0.1 --port {port}' \\
        --target nestjs='bash /tmp/bench-peers/nestjs/start.sh {port}'

Modes: sio-connect (new websocket, CONNECT with the cookie token, whoami, close; 16 blocking
workers), sio-echo (100 clients, closed loop, echo {"text"}), sio-fanout (1,000 members of a
room, 100 `say` from one more), sio-idle (N connections, each authenticated and answered one
whoami, held idle: server RSS after minus before, over N), ws-echo (bare websocket echo on
PATH /). Needs gcc, taskset and PyJWT; Linux (/proc). Prints a table: median (min-max) over the
repetitions, p99 where measured, the server's CPU share (a figure is server-bound only when
that is near 100%), errors; then each target's median over each ``--ref`` target's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt

HERE = Path(__file__).resolve().parent
CLOAD = "/tmp/cload-wsgate-bench"
ORIGIN = "http://app.bench.test"
WORK = f"/tmp/cbench-wsgate-{os.getpid()}"
"""Server logs and databases of this run (not shared with another run at the same time)."""
KEY = {
    "sio-echo": "acks_per_s",
    "ws-echo": "acks_per_s",
    "sio-fanout": "deliveries_per_s",
    "sio-connect": "conns_per_s",
    "sio-idle": "bytes_per_conn",
}


def ensure_cload() -> None:
    src = HERE / "cload.c"
    if not os.path.exists(CLOAD) or os.path.getmtime(CLOAD) < src.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", CLOAD, str(src)], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tree(pid: int) -> list[int]:
    """The process and its descendants, from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server and its children."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def tree_rss(pid: int) -> int:
    """Resident bytes of the server and its children (the bash wrapper included: it is idle)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for p in tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
        except OSError:
            continue
    return total


def prioritize(pid: int, nice: int) -> None:
    """Give the process's session (its own: started with a new session) the nice value.

    With the kernel's autogroup scheduling on, a process's nice value counts only against
    its own session's other processes; other sessions are weighed by their autogroup's
    nice value, which is what this sets."""
    if not nice:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError as exc:
        print(f"cbench: cannot set autogroup nice of {pid}: {exc}", file=sys.stderr)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)


def client_args(mode: str, port: int, args: argparse.Namespace, tokfile: str) -> list[str]:
    """cload's command line for ``mode`` (see the header of cload.c)."""
    a = args
    if mode == "ws-echo":
        rest = ["/", a.clients, a.warmup, a.duration, a.len]
    elif mode == "sio-echo":
        rest = [tokfile, ORIGIN, a.clients, a.warmup, a.duration, a.len]
    elif mode == "sio-connect":
        rest = [tokfile, ORIGIN, a.n, a.procs]
    elif mode == "sio-idle":
        rest = [tokfile, ORIGIN, a.idle, a.hold]
    else:
        rest = [tokfile, ORIGIN, a.receivers, a.messages, a.len]
    return [mode, str(port), *(str(x) for x in rest)]


def run(
    name: str, command: str, mode: str, args: argparse.Namespace, secret: str, tokfile: str
) -> dict[str, Any] | None:
    port = free_port()
    env = dict(
        os.environ,
        WSGATE_JWT_SECRET=secret,
        WSGATE_ALLOWED_ORIGINS=ORIGIN,
        PYTHONUNBUFFERED="1",
        NODE_ENV="production",
        NEST_LOG_LEVELS="error,warn",
        WSGATE_RATE_LIMIT="1000000",
        WSGATE_MAX_CONNECTIONS_PER_USER="1000000",
        WSGATE_DATABASE=f"{WORK}/{name}.db",
        WSGATE_LOG_LEVEL="warning",
    )
    log = open(f"{WORK}/{name}.log", "wb")  # noqa: SIM115 - closed in finally
    srv = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            "bash",
            "-c",
            command.replace("{port}", str(port)),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=HERE,
    )
    prioritize(srv.pid, args.nice)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)
        client = subprocess.Popen(
            [
                "taskset",
                "-c",
                "0",
                CLOAD,
                *client_args(mode, port, args, tokfile),
            ],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        prioritize(client.pid, args.nice)
        marks: dict[str, tuple[float, float, int]] = {}
        result: dict[str, Any] | None = None
        assert client.stdout is not None
        for line in client.stdout:
            if line.startswith("MARK "):
                marks[line.split()[1]] = (time.monotonic(), tree_cpu(srv.pid), tree_rss(srv.pid))
            elif line.startswith("{"):
                result = json.loads(line)
        client.wait(timeout=180)
        if result and "measure_start" in marks and "measure_end" in marks:
            (t0, c0, _), (t1, c1, _) = marks["measure_start"], marks["measure_end"]
            result["server_cpu_pct"] = round(100 * (c1 - c0) / (t1 - t0), 1)
        if result and "before" in marks and "after" in marks:
            before, after = marks["before"][2], marks["after"][2]
            result.update(
                rss_before=before, rss_after=after, bytes_per_conn=(after - before) / args.idle
            )
        if result is not None:
            result["client_exit"] = client.returncode
        return result
    finally:
        try:
            os.killpg(srv.pid, signal.SIGTERM)
            srv.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(srv.pid, signal.SIGKILL)
            srv.wait(timeout=5)
        log.close()


def write_tokens(path: str, count: int, secret: str) -> None:
    """One "SUB TOKEN" line per client. ``typ: at+jwt`` and ``token_use: access`` are there
    because the hand-written baseline (baseline_server.py) requires them, as a careful app
    does; wsgate, NestJS and the lean servers accept them as well."""
    now = int(time.time())
    with open(path, "w") as f:
        for i in range(count):
            claims = {
                "sub": f"cb-{i}",
                "iat": now,
                "exp": now + 3600,
                "jti": secrets.token_hex(8),
                "roles": ["user"],
                "token_use": "access",
            }
            token = jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "at+jwt"})
            f.write(f"cb-{i} {token}\n")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--target", action="append", default=[], metavar="NAME='CMD {port}'")
    ap.add_argument("--modes", default="sio-connect,sio-echo,sio-fanout,sio-idle")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--len", type=int, default=100)
    ap.add_argument("--receivers", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--n", type=int, default=2000, help="sio-connect: connects")
    ap.add_argument("--procs", type=int, default=16, help="sio-connect: blocking client processes")
    ap.add_argument("--idle", type=int, default=2000, help="sio-idle: connections held")
    ap.add_argument("--hold", type=int, default=3, help="sio-idle: seconds idle before RSS")
    ap.add_argument(
        "--ref", action="append", default=[], help="print every target's ratio to this one"
    )
    ap.add_argument("--out", default="/tmp/cbench.json")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="server's and client's scheduling nice value (their autogroups'; negative needs "
        "root): on a machine shared with other jobs the server then gets most of its core",
    )
    ap.add_argument("--report", metavar="JSON", help="only print the tables of an earlier --out")
    args = ap.parse_args()
    if args.report:
        rows = json.loads(Path(args.report).read_text())
        modes = list(dict.fromkeys(x["mode"] for x in rows))
        names = list(dict.fromkeys(x["target"] for x in rows))
        report(rows, modes, names, args.ref)
        return
    targets = dict(t.split("=", 1) for t in args.target)
    modes = args.modes.split(",")
    ensure_cload()
    os.makedirs(WORK, exist_ok=True)
    os.sched_setaffinity(0, {0})
    secret = secrets.token_hex(32)
    tokfile = f"{WORK}/tokens.txt"
    write_tokens(tokfile, max(args.receivers + 1, args.idle, 1), secret)
    rows: list[dict[str, Any]] = []
    for mode in modes:
        for rep in range(args.reps):
            for name, command in targets.items():  # interleaved: A B C, A B C, ...
                r = run(name, command, mode, args, secret, tokfile)
                rows.append({"target": name, "mode": mode, "rep": rep, "result": r})
                print(f"{mode} rep {rep + 1} {name}: {json.dumps(r)}", file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    report(rows, modes, list(targets), args.ref)


def per_cpu(r: dict[str, Any], key: str) -> float | None:
    """A rate divided by the server's share of a core in its window: steadier than the raw
    rate when other jobs take CPU from the server (a loaded machine)."""
    cpu = r.get("server_cpu_pct")
    if key == "bytes_per_conn" or not cpu:
        return None
    return float(r[key]) * 100 / cpu


def report(rows: list[dict[str, Any]], modes: list[str], names: list[str], refs: list[str]) -> None:
    """Medians (min-max) per mode and target, then ratios to each reference target."""
    raw: dict[tuple[str, str], float] = {}
    cpu_norm: dict[tuple[str, str], float] = {}
    print(
        f"{'mode':11} {'target':15} {'median (min-max)':28} {'per server CPU-s':17}"
        f" {'p99 ms':8} {'server CPU%':12} errors"
    )
    for mode in modes:
        key = KEY[mode]
        for name in names:
            rs = [x["result"] for x in rows if x["mode"] == mode and x["target"] == name]
            rs = [r for r in rs if r and key in r]
            if not rs:
                print(f"{mode:11} {name:15} FAILED (see {WORK}/{name}.log)")
                continue
            v = [float(r[key]) for r in rs]
            raw[mode, name] = statistics.median(v)
            normed = [n for n in (per_cpu(r, key) for r in rs) if n is not None]
            if normed:
                cpu_norm[mode, name] = statistics.median(normed)
            p99 = (
                statistics.median([r["rtt_p99_ms"] for r in rs]) if "rtt_p99_ms" in rs[0] else None
            )
            cpu = statistics.median([r.get("server_cpu_pct", 0) for r in rs])
            errs = sum(
                r.get("errors", 0)
                + r.get("unanswered", 0)
                + r.get("duplicates", 0)
                + r.get("client_exit", 0)
                for r in rs
            )
            spread = f"{raw[mode, name]:>10,.0f} ({min(v):,.0f}-{max(v):,.0f})"
            norm = f"{cpu_norm[mode, name]:>12,.0f}" if (mode, name) in cpu_norm else "-"
            p99s = "-" if p99 is None else f"{p99:.2f}"
            print(f"{mode:11} {name:15} {spread:28} {norm:17} {p99s:8} {cpu:<12.0f} {errs}")
    for ref in refs:
        print(f"\nratio to {ref}: raw medians [per server CPU-second] (sio-idle: lower is better)")
        for mode in modes:
            cells = []
            for name in names:
                if name == ref or (mode, name) not in raw or not raw.get((mode, ref)):
                    continue
                cell = f"{name} {raw[mode, name] / raw[mode, ref]:.2f}x"
                if (mode, name) in cpu_norm and cpu_norm.get((mode, ref)):
                    cell += f" [{cpu_norm[mode, name] / cpu_norm[mode, ref]:.2f}x]"
                cells.append(cell)
            print(f"  {mode:11} " + ", ".join(cells))


if __name__ == "__main__":
    main()
