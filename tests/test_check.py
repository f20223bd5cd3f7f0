"""``wsgate check`` as a user runs it: a real subprocess per configuration, real Redis servers.

Each dangerous setting of issue 11 is set the way a deployment sets it (an
environment variable, a ``.env`` file, a flag or an App's own settings) and
must come out as its finding, with a non-zero exit; a clean configuration
exits 0. A setting that would stop the server is a finding, never a
traceback, and no finding quotes a secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import missing_service
from support import SECRET, free_port

ENV = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
# Long enough for HS256, HS384 and HS512 alike.
STRONG = "k" * 64


def wsgate_check(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "wsgate", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, **(env or {})},
        cwd=cwd,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def findings(*args: str, env: dict[str, str] | None = None, **kw: Any) -> tuple[int, list[Any]]:
    result = wsgate_check("--json", *args, env=env, **kw)
    document = json.loads(result.stdout)
    assert set(document) == {"findings"}
    for finding in document["findings"]:
        assert set(finding) == {"id", "severity", "message", "fix"}
        assert finding["severity"] in {"critical", "high", "medium", "low"}
        assert finding["message"] and finding["fix"]
    return result.returncode, document["findings"]


def ids(found: list[Any]) -> set[str]:
    return {f["id"] for f in found}


def test_a_clean_configuration_exits_0() -> None:
    code, found = findings(env={"WSGATE_JWT_SECRET": SECRET})
    assert (code, found) == (0, [])
    text = wsgate_check(env={"WSGATE_JWT_SECRET": SECRET})
    assert text.returncode == 0 and "no dangerous setting found" in text.stdout


def test_a_clean_https_deployment_exits_0() -> None:
    code, found = findings(
        "--public-url",
        "https://chat.example.com",
        env={
            "WSGATE_JWT_SECRET": STRONG,
            "WSGATE_JWT_ALGORITHMS": "HS512",
            "WSGATE_ALLOWED_ORIGINS": "https://chat.example.com",
            "WSGATE_SECURE_COOKIES": "true",
            "WSGATE_JWT_LEEWAY": "30",
        },
    )
    assert (code, found) == (0, [])


DANGEROUS: dict[str, tuple[dict[str, str], str, str]] = {
    "wildcard origin with cookies": (
        {
            "WSGATE_ALLOWED_ORIGINS": "https://app.example.com,https://*.example.com",
            "WSGATE_SECURE_COOKIES": "true",
        },
        "origins.wildcard-with-cookies",
        "high",
    ),
    "HMAC key of 31 bytes": ({"WSGATE_JWT_SECRET": "s" * 31}, "jwt.hmac-key-short", "critical"),
    "HS512 with a 48-byte key": (
        {"WSGATE_JWT_SECRET": "s" * 48, "WSGATE_JWT_ALGORITHMS": "HS512"},
        "jwt.hmac-key-short",
        "critical",
    ),
    "HMAC and RSA algorithms": (
        {"WSGATE_JWT_ALGORITHMS": "HS256,RS256"},
        "jwt.mixed-algorithms",
        "critical",
    ),
    "leeway of two minutes": ({"WSGATE_JWT_LEEWAY": "120"}, "jwt.leeway", "medium"),
    "query-string tokens": ({"WSGATE_ALLOW_QUERY_TOKEN": "true"}, "tokens.query-string", "high"),
    "cookies without Secure on an https origin": (
        {"WSGATE_ALLOWED_ORIGINS": "https://chat.example.com"},
        "cookies.not-secure",
        "high",
    ),
    "rate limit off": ({"WSGATE_RATE_LIMIT": "1000000"}, "limits.rate_limit", "medium"),
    "message size off": (
        {"WSGATE_MAX_MESSAGE_BYTES": str(1 << 30)},
        "limits.max_message_bytes",
        "medium",
    ),
    "connections per user off": (
        {"WSGATE_MAX_CONNECTIONS_PER_USER": "100000"},
        "limits.max_connections_per_user",
        "medium",
    ),
    "handshakes off": (
        {"WSGATE_MAX_PENDING_HANDSHAKES": "10000000"},
        "limits.max_pending_handshakes",
        "medium",
    ),
    "one address may hold every handshake": (
        {"WSGATE_MAX_PENDING_HANDSHAKES": "50", "WSGATE_MAX_PENDING_HANDSHAKES_PER_ADDRESS": "50"},
        "limits.max_pending_handshakes_per_address",
        "medium",
    ),
    "slow handshakes allowed": (
        {"WSGATE_CONNECT_TIMEOUT": "240"},
        "limits.connect_timeout",
        "medium",
    ),
    "every address trusted as a proxy": (
        {"WSGATE_TRUSTED_PROXIES": "10.0.0.1,*"},
        "proxies.trust-all",
        "high",
    ),
    "no key at all": ({"WSGATE_JWT_SECRET": ""}, "startup.refused", "critical"),
    "'*' as an origin": ({"WSGATE_ALLOWED_ORIGINS": "*"}, "startup.refused", "critical"),
    "the none algorithm": ({"WSGATE_JWT_ALGORITHMS": "none"}, "settings.invalid", "critical"),
    "a leeway the settings refuse": ({"WSGATE_JWT_LEEWAY": "301"}, "settings.invalid", "critical"),
}


@pytest.mark.parametrize("case", DANGEROUS, ids=list(DANGEROUS))
def test_each_dangerous_setting_is_flagged(case: str) -> None:
    env, expected, severity = DANGEROUS[case]
    code, found = findings(env={"WSGATE_JWT_SECRET": SECRET, **env})
    assert code == 1, found
    matching = [f for f in found if f["id"] == expected]
    assert matching, found
    assert matching[0]["severity"] == severity
    # Only what is wrong: the strong default key and the other defaults raise nothing else.
    expected_ids = {expected}
    if expected == "jwt.hmac-key-short" or case == "HMAC and RSA algorithms":
        expected_ids.add("startup.refused")  # the App refuses these too
    assert ids(found) == expected_ids, found


def test_a_secret_and_a_public_key_together_are_flagged(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    code, found = findings(
        env={"WSGATE_JWT_SECRET": SECRET, "WSGATE_JWT_PUBLIC_KEY_FILE": str(pem)}
    )
    assert code == 1 and {"jwt.mixed-algorithms", "startup.refused"} <= ids(found), found
    # The public key alone is fine, but tokens of any audience would pass: advice, exit 0.
    code, found = findings(env={"WSGATE_JWT_PUBLIC_KEY_FILE": str(pem)})
    assert (code, ids(found)) == (0, {"jwt.no-audience"}), found
    code, found = findings(
        env={"WSGATE_JWT_PUBLIC_KEY_FILE": str(pem), "WSGATE_JWT_AUDIENCE": "chat"}
    )
    assert (code, found) == (0, [])


def test_an_https_public_url_needs_secure_cookies() -> None:
    env = {"WSGATE_JWT_SECRET": SECRET}
    code, found = findings("--public-url", "https://chat.example.com", env=env)
    assert code == 1 and ids(found) == {"cookies.not-secure"}
    code, found = findings(
        "--public-url", "https://chat.example.com", env={**env, "WSGATE_SECURE_COOKIES": "1"}
    )
    assert (code, found) == (0, [])


def test_no_finding_quotes_a_secret() -> None:
    secret = "do-not-print-me-" * 4
    for env in (
        {"WSGATE_JWT_SECRET": secret, "WSGATE_JWT_ALGORITHMS": "HS256,RS256"},
        {"WSGATE_JWT_SECRET": secret, "WSGATE_PORT": secret},  # a secret pasted in a wrong place
        {"WSGATE_JWT_SECRET": secret[:20]},
        {"WSGATE_JWT_SECRET": secret, "WSGATE_JWT_ALGORITHMS": f"HS256,{secret}"},
    ):
        for args in ((), ("--json",)):
            result = wsgate_check(*args, env=env)
            assert result.returncode == 1
            assert "do-not-print-me" not in result.stdout + result.stderr


def test_the_text_report_names_each_finding_and_its_fix() -> None:
    result = wsgate_check(
        env={
            "WSGATE_JWT_SECRET": SECRET,
            "WSGATE_ALLOW_QUERY_TOKEN": "true",
            "WSGATE_JWT_LEEWAY": "90",
        }
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("HIGH     tokens.query-string: ")
    assert lines[1].strip().startswith("fix: unset WSGATE_ALLOW_QUERY_TOKEN")
    assert lines[2].startswith("MEDIUM   jwt.leeway: ")
    assert lines[-1] == "wsgate check: 2 finding(s), 2 failing"


def test_a_misspelt_variable_is_advice_only() -> None:
    code, found = findings(env={"WSGATE_JWT_SECRET": SECRET, "WSGATE_ALLOWED_ORIGIN": "x"})
    assert code == 0
    assert [(f["id"], f["severity"]) for f in found] == [("settings.unknown-variable", "low")]
    assert "WSGATE_ALLOWED_ORIGIN " in found[0]["message"]


def test_a_remote_redis_without_tls_is_advice() -> None:
    """Pure: no Redis is asked (``audit_settings`` does no I/O)."""
    from wsgate import Settings
    from wsgate.check import audit_settings, exit_code

    remote = audit_settings(Settings(jwt_secret=SECRET, redis_url="redis://10.1.2.3:6379/0"))
    assert [(f.id, f.severity) for f in remote] == [("redis.cleartext", "low")]
    assert exit_code(remote) == 0
    for url in ("rediss://10.1.2.3:6380/0", "redis://127.0.0.1:6379/0", "redis://localhost"):
        assert audit_settings(Settings(jwt_secret=SECRET, redis_url=url)) == []


def test_a_missing_env_file_is_a_usage_error(tmp_path: Path) -> None:
    result = wsgate_check("--env-file", str(tmp_path / "nope.env"))
    assert result.returncode == 2 and "no such env file" in result.stderr


def test_flags_and_an_env_file_are_read_as_the_server_reads_them(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"WSGATE_JWT_SECRET={SECRET}\nWSGATE_ALLOW_QUERY_TOKEN=true\nOTHER_TOOL=1\n",
        encoding="utf-8",
    )
    code, found = findings("--env-file", str(dotenv))
    assert (code, ids(found)) == (1, {"tokens.query-string"})
    # The environment wins over the file, and a flag over both.
    code, found = findings("--env-file", str(dotenv), env={"WSGATE_ALLOW_QUERY_TOKEN": "false"})
    assert (code, found) == (0, [])
    code, found = findings(
        "--env-file", str(dotenv), "--allow-query-token", env={"WSGATE_ALLOW_QUERY_TOKEN": "false"}
    )
    assert ids(found) == {"tokens.query-string"}
    code, found = findings("--env-file", str(dotenv), "--jwt-leeway", "75")
    assert ids(found) == {"tokens.query-string", "jwt.leeway"}


def test_metrics_are_protected_by_default_and_a_token_in_clear_is_advice() -> None:
    """/metrics answers loopback clients only by default: listening everywhere is no finding."""
    env = {"WSGATE_JWT_SECRET": SECRET, "WSGATE_HOST": "0.0.0.0"}
    assert findings(env=env) == (0, [])
    token = {**env, "WSGATE_METRICS_TOKEN": "m" * 32}
    code, found = findings(env=token)
    assert (code, ids(found)) == (0, {"metrics.token-in-clear"})
    assert found[0]["severity"] == "low" and "m" * 32 not in json.dumps(found)
    code, found = findings("--public-url", "https://chat.example.com", env=token)
    assert found and "metrics.token-in-clear" not in ids(found)  # found: cookies, not metrics


def test_an_apps_own_settings_are_audited(tmp_path: Path) -> None:
    (tmp_path / "risky_app.py").write_text(
        "from wsgate import App, Settings\n"
        "from wsgate.demo.gateways import Chat\n"
        f"app = App([Chat()], Settings(jwt_secret={SECRET!r}, allow_query_token=True,"
        f" host='0.0.0.0', metrics_token={'m' * 32!r}))\n",
        encoding="utf-8",
    )
    (tmp_path / "broken_app.py").write_text(
        "from wsgate import App, Settings\n"
        "from wsgate.demo.gateways import Chat\n"
        "app = App([Chat()], Settings(jwt_secret='short'))\n",
        encoding="utf-8",
    )
    (tmp_path / "crashing_app.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    env = {"WSGATE_JWT_SECRET": SECRET}
    code, found = findings("risky_app:app", env=env, cwd=tmp_path)
    assert (code, ids(found)) == (1, {"tokens.query-string", "metrics.token-in-clear"})
    # Flags win over the App's settings, as with `wsgate serve MODULE:APP --host ...`.
    code, found = findings("risky_app:app", "--host", "127.0.0.1", env=env, cwd=tmp_path)
    assert (code, ids(found)) == (1, {"tokens.query-string"})
    code, found = findings("risky_app:app", "--port", "http", env=env, cwd=tmp_path)
    assert (code, ids(found)) == (1, {"settings.invalid"})
    code, found = findings("broken_app:app", env=env, cwd=tmp_path)
    assert (code, ids(found)) == (1, {"startup.refused"})
    assert "at least 32 bytes" in found[0]["message"]
    code, found = findings("crashing_app:app", env=env, cwd=tmp_path)
    assert (code, ids(found)) == (1, {"startup.refused"})
    assert "RuntimeError" in found[0]["message"] and "boom" not in found[0]["message"]


# -- revocation on Redis ----------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(tmp_path: Path, *options: str) -> Iterator[str]:
    """A redis-server of our own on a free port, stopped (by its PID) afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("redis-server is not installed")
        raise AssertionError("unreachable")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_revocation_on_a_redis_without_persistence_is_flagged(tmp_path: Path) -> None:
    with redis_server(tmp_path, "--save", "", "--appendonly", "no") as url:
        code, found = findings(env={"WSGATE_JWT_SECRET": SECRET, "WSGATE_REDIS_URL": url})
    assert code == 1 and ids(found) == {"revocation.redis-not-persistent"}, found
    assert found[0]["severity"] == "high"


@pytest.mark.parametrize(
    "options",
    [("--save", "", "--appendonly", "yes"), ("--save", "60 1", "--appendonly", "no")],
    ids=["appendonly", "rdb"],
)
def test_a_persistent_redis_is_clean(tmp_path: Path, options: tuple[str, ...]) -> None:
    with redis_server(tmp_path, *options) as url:
        code, found = findings(env={"WSGATE_JWT_SECRET": SECRET, "WSGATE_REDIS_URL": url})
    assert (code, found) == (0, [])


def test_an_unreachable_redis_is_a_finding_within_seconds() -> None:
    port = free_port()  # nothing listens there; the probe's timeouts bound the wait
    code, found = findings(
        env={"WSGATE_JWT_SECRET": SECRET, "WSGATE_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    )
    assert code == 1 and ids(found) == {"revocation.redis-unreachable"}, found


def test_a_redis_that_wants_a_password_is_asked_with_the_urls_and_never_quoted(
    tmp_path: Path,
) -> None:
    password = "redis-pass-not-for-printing"
    with redis_server(
        tmp_path, "--save", "", "--appendonly", "no", "--requirepass", password
    ) as url:
        without = url
        with_password = url.replace("redis://", f"redis://:{password}@")
        code, found = findings(env={"WSGATE_JWT_SECRET": SECRET, "WSGATE_REDIS_URL": without})
        assert code == 1 and ids(found) == {"revocation.redis-unreachable"}, found
        result = wsgate_check(
            "--json", env={"WSGATE_JWT_SECRET": SECRET, "WSGATE_REDIS_URL": with_password}
        )
    assert ids(json.loads(result.stdout)["findings"]) == {"revocation.redis-not-persistent"}
    assert password not in result.stdout + result.stderr
