"""The servers the benchmark compares, and how to start each one.

Why a separate module: the harness in run.py must not know anything about a
server but its command line. wsgate is driven only through the public
``wsgate demo`` command of demo-contract.md (never its internals), so this
adapter is all that changes if the demo's flags change.

Both servers get the same secret, the same allowed origin (their own
``http://127.0.0.1:PORT``) and are reached only on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

WSGATE_LIMIT_FLAGS: list[str] = [
    # The demo's rate limit (50 events/s per connection by default) stays ON:
    # its check runs on every event. It is only set high enough that a
    # closed-loop client doing thousands of events/s is not refused, since a
    # refused event would measure the refusal path, not the echo path.
    "--rate-limit",
    "1000000",
    # The baseline logs at WARNING with uvicorn's access log off; the demo's
    # default is INFO. Same log level on both sides, so neither pays for lines
    # the other does not write.
    "--log-level",
    "warning",
]
"""Flags added to ``wsgate demo`` so that its protections run but do not refuse the load."""


@dataclass(frozen=True)
class ServerSpec:
    """Where a server will listen and with which secrets; one per started process."""

    port: int
    jwt_secret: str
    workdir: Path

    @property
    def origin(self) -> str:
        """The allowed origin: the server's own, as a browser page served there would send."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL the load generator connects to."""
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Target:
    """A server under test: a name and how to build its command line."""

    name: str

    def command(self, spec: ServerSpec) -> list[str]:
        """The argv that starts this server on ``spec``."""
        if self.name in ("baseline", "baseline-gc"):
            gc_flags = ["--gc-threshold", "50000"] if self.name == "baseline-gc" else []
            return [
                sys.executable,
                str(BENCH_DIR / "baseline_server.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(spec.port),
                "--jwt-secret",
                spec.jwt_secret,
                "--allowed-origins",
                spec.origin,
                *gc_flags,
            ]
        if self.name == "wsgate":
            return [
                sys.executable,
                "-m",
                "wsgate",
                "demo",
                "--host",
                "127.0.0.1",
                "--port",
                str(spec.port),
                "--jwt-secret",
                spec.jwt_secret,
                "--database",
                str(spec.workdir / "wsgate-demo.db"),
                "--allowed-origins",
                spec.origin,
                *WSGATE_LIMIT_FLAGS,
            ]
        raise ValueError(f"unknown target {self.name!r}")

    def env(self) -> dict[str, str]:
        """The environment for the server: ours, minus any WSGATE_* that would override flags."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
        src = str(REPO_DIR / "src")
        env["PYTHONPATH"] = src + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else src
        return env


BASELINE = Target("baseline")
WSGATE = Target("wsgate")
TARGETS: dict[str, Target] = {
    "baseline": BASELINE,
    "wsgate": WSGATE,
    # An experiment, not a comparison target: the baseline with the cyclic GC's
    # generation-0 threshold raised (see profile_baseline.md). profile.py takes it.
    "baseline-gc": Target("baseline-gc"),
}


def wsgate_available() -> tuple[bool, str]:
    """Whether ``python -m wsgate demo --help`` runs here; the reason when it does not.

    Checked once before a run, so that ``--target both`` can still measure the
    baseline (and say why the wsgate column is empty) while the demo is being
    built.
    """
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "wsgate", "demo", "--help"],
            env=WSGATE.env(),
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"could not run: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return False, f"`python -m wsgate demo --help` exited {proc.returncode}: {last[0]}"
    return True, ""
