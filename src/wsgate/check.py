"""``wsgate check``: audit the settings a server would run with, before it runs.

Most dangerous settings are refused at start-up already (no key, ``none``,
a short HMAC key, HMAC next to a public key, ``*`` as an origin). What is
left is legal but risky: a wildcard origin while cookies carry tokens, a
minute of clock leeway, tokens in query strings, cookies without ``Secure``
behind https, limits raised until they no longer limit, ``/metrics`` on a
public interface, revocations kept in a Redis that forgets them on restart.
This module names each one as a :class:`Finding` with an id, a severity, a
message and the fix, so that a deployment pipeline can fail on them.

It never raises for a bad setting: a value the settings model rejects, or a
combination the App refuses to start with, is a finding too (``settings.invalid``,
``startup.refused``), and so is a Redis that cannot be asked. Messages never
quote a key, a secret or a setting's raw value (a misplaced secret must not
end up in CI logs); they name the setting and what is wrong with it.

:func:`audit_settings` is pure (no I/O); :func:`audit` adds the two probes
that need I/O: building the App the settings describe (then closing it,
nothing is served) and asking Redis for its persistence configuration.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import ValidationError

from wsgate.app import App
from wsgate.core.gateway import Gateway
from wsgate.errors import ConfigurationError
from wsgate.settings import Settings

__all__ = [
    "Finding",
    "Severity",
    "audit",
    "audit_settings",
    "exit_code",
    "findings_json",
    "findings_text",
    "invalid_settings",
    "load_settings",
    "probe_redis",
    "probe_startup",
    "refused_app",
    "unknown_variables",
    "with_flags",
]

ENV_PREFIX = "WSGATE_"
MAX_LEEWAY = 60.0
"""Seconds of clock skew beyond which an expired or not-yet-valid token is accepted too long."""
REDIS_TIMEOUT = 2.0
"""Seconds to wait for Redis to answer ``CONFIG GET``: a check must not hang a pipeline."""

# Beyond these a limit no longer limits anything a client does.
LIMIT_CEILINGS: Mapping[str, float] = {
    "rate_limit": 10_000,
    "max_message_bytes": 16 * 1024 * 1024,
    "max_connections_per_user": 1_000,
    "max_rooms_per_connection": 10_000,
    "max_pending_handshakes": 100_000,
    "connect_timeout": 60,
}


class Severity(StrEnum):
    """How bad a finding is; all but ``low`` make ``wsgate check`` exit non-zero."""

    CRITICAL = "critical"
    """The server would not start, or anyone can get in."""
    HIGH = "high"
    """An attacker with a browser or a socket gains something (a session, data, the server)."""
    MEDIUM = "medium"
    """A protection is weakened or switched off."""
    LOW = "low"
    """Advice: worth a look, not a failure."""


FAILING = frozenset({Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM})


@dataclass(frozen=True, slots=True)
class Finding:
    """One dangerous setting: a stable ``id`` to grep or allow-list, and the ``fix``."""

    id: str
    severity: Severity
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        data = asdict(self)
        data["severity"] = str(self.severity)
        return data


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- the settings themselves (pure) -------------------------------------------------------


def audit_settings(
    settings: Settings,
    *,
    secure_cookies: bool | None = None,
    public_url: str | None = None,
) -> list[Finding]:
    """Findings about ``settings`` alone, without any I/O.

    ``secure_cookies`` is whether the login that sets the token cookies
    marks them ``Secure`` (the demo's ``secure_cookies``; None when wsgate
    does not set cookies). ``public_url`` is where users reach the server
    (behind a TLS proxy it is https even though wsgate listens on http).
    """
    findings: list[Finding] = []
    findings += _jwt_findings(settings)
    findings += _origin_findings(settings)
    if settings.allow_query_token:
        findings.append(
            Finding(
                "tokens.query-string",
                Severity.HIGH,
                "allow_query_token is on: tokens sent as ?token= end up in proxy and server "
                "access logs, browser history and Referer headers",
                f"unset {env_name('allow_query_token')}; send the token in the Socket.IO auth "
                "object, the /ws auth message, an Authorization header or a cookie",
            )
        )
    findings += _cookie_findings(settings, secure_cookies, public_url)
    findings += _limit_findings(settings)
    findings += _metrics_findings(settings, public_url)
    findings += _proxy_findings(settings)
    findings += _redis_findings(settings)
    return findings


def _jwt_findings(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    algorithms = settings.jwt_algorithms or ()
    hmac = [a for a in algorithms if a.upper().startswith("HS")]
    asymmetric = [a for a in algorithms if not a.upper().startswith("HS")]
    secret = settings.secret_text()
    has_public = bool(
        settings.jwt_public_key_file or settings.jwt_private_key_file or settings.jwt_jwks_url
    )
    if (hmac and asymmetric) or (secret and has_public):
        findings.append(
            Finding(
                "jwt.mixed-algorithms",
                Severity.CRITICAL,
                "HMAC and asymmetric JWT algorithms (or an HMAC secret and a public key) are "
                "configured together: a public key used as an HMAC secret forges tokens "
                "(algorithm confusion, RFC 8725 §2.1)",
                "configure either WSGATE_JWT_SECRET with HS* algorithms, or a public key / JWKS "
                "URL with RS*, PS*, ES* or EdDSA algorithms, never both",
            )
        )
    if secret:  # an empty one is no key at all: the App refuses to start (startup.refused)
        needed = max([32, *({"HS384": 48, "HS512": 64}.get(a.upper(), 32) for a in hmac)])
        size = len(secret.encode("utf-8"))
        if size < needed:
            findings.append(
                Finding(
                    "jwt.hmac-key-short",
                    Severity.CRITICAL,
                    f"the HMAC key is {size} bytes; at least {needed} are needed (RFC 7518 §3.2): "
                    "a short key can be brute-forced offline from any one token",
                    f"set {env_name('jwt_secret')} to a random key of {needed}+ bytes, e.g. "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
                )
            )
    if settings.jwt_leeway > MAX_LEEWAY:
        findings.append(
            Finding(
                "jwt.leeway",
                Severity.MEDIUM,
                f"jwt_leeway is {settings.jwt_leeway:g} s: expired tokens are accepted that long "
                f"after exp (more than {MAX_LEEWAY:g} s is no longer clock skew)",
                f"set {env_name('jwt_leeway')} to a few seconds (at most {MAX_LEEWAY:g}) and "
                "keep server clocks in sync with NTP",
            )
        )
    if settings.jwt_audience is None and has_public:
        findings.append(
            Finding(
                "jwt.no-audience",
                Severity.LOW,
                "jwt_audience is unset: a token your identity provider issued for another "
                "service is accepted here too (RFC 8725 §3.9)",
                f"set {env_name('jwt_audience')} (and {env_name('jwt_issuer')}) to the values "
                "the provider puts in tokens meant for this server",
            )
        )
    return findings


def _origin_findings(settings: Settings) -> list[Finding]:
    # A lone "*" is refused at start-up (startup.refused); these are the legal wildcards.
    wildcards = [o for o in settings.allowed_origins if "*." in o]
    if not wildcards:
        return []
    return [
        Finding(
            "origins.wildcard-with-cookies",
            Severity.HIGH,
            f"allowed_origins has {len(wildcards)} wildcard origin(s) while tokens are also "
            "read from the access_token cookie: a page on any matching subdomain (a user's "
            "site, a forgotten staging host, one XSS) opens sockets with the visitor's cookie "
            "(cross-site WebSocket hijacking)",
            f"list the exact origins in {env_name('allowed_origins')} "
            "(https://app.example.com,https://admin.example.com)",
        )
    ]


def _cookie_findings(
    settings: Settings, secure_cookies: bool | None, public_url: str | None
) -> list[Finding]:
    if secure_cookies is None or secure_cookies:
        return []
    https = [o for o in (public_url, *settings.allowed_origins) if o and o.startswith("https://")]
    if not https:
        return []
    return [
        Finding(
            "cookies.not-secure",
            Severity.HIGH,
            "the site is served over https but the token cookies are not marked Secure: "
            "a browser also sends them over plain http, where anyone on the network reads them",
            "set WSGATE_SECURE_COOKIES=true",
        )
    ]


def _limit_findings(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    values: dict[str, float] = {
        "rate_limit": settings.rate_limit,
        "max_message_bytes": settings.max_message_bytes,
        "max_connections_per_user": settings.max_connections_per_user,
        "max_rooms_per_connection": settings.max_rooms_per_connection,
        "max_pending_handshakes": settings.max_pending_handshakes,
        "connect_timeout": settings.connect_timeout,
    }
    for field, ceiling in LIMIT_CEILINGS.items():
        value = values[field]
        if value > ceiling:
            findings.append(
                Finding(
                    f"limits.{field}",
                    Severity.MEDIUM,
                    f"{field} is {value:g}, above {ceiling:g}: this limit no longer protects "
                    "the server from one client",
                    f"unset {env_name(field)} (default "
                    f"{Settings.model_fields[field].default:g}) or set it below {ceiling:g}",
                )
            )
    if settings.max_pending_handshakes_per_address >= settings.max_pending_handshakes:
        findings.append(
            Finding(
                "limits.max_pending_handshakes_per_address",
                Severity.MEDIUM,
                "max_pending_handshakes_per_address is not below max_pending_handshakes: one "
                "address can hold every pending handshake and lock everyone else out",
                f"set {env_name('max_pending_handshakes_per_address')} well below "
                f"{env_name('max_pending_handshakes')} (defaults 100 and 1000)",
            )
        )
    return findings


def _metrics_findings(settings: Settings, public_url: str | None) -> list[Finding]:
    """``/metrics`` answers loopback clients only unless ``metrics_token`` is set.

    So an open ``/metrics`` is not a setting any more; what is left to flag
    is the token itself crossing the network in clear text.
    """
    if settings.metrics_token_text() is None or _is_loopback(settings.host):
        return []
    if any(o and o.startswith("https://") for o in (public_url, *settings.allowed_origins)):
        return []
    return [
        Finding(
            "metrics.token-in-clear",
            Severity.LOW,
            f"metrics_token is set and the server listens on {settings.host!r} with no https "
            "public URL or origin known: a scraper's bearer token may cross the network in clear",
            "serve /metrics behind TLS (a reverse proxy) and pass --public-url https://...; or "
            "unset metrics_token so /metrics answers loopback clients only",
        )
    ]


_EVERYONE = frozenset({"*", "0.0.0.0/0", "::/0"})


def _proxy_findings(settings: Settings) -> list[Finding]:
    if not _EVERYONE.intersection(settings.trusted_proxies):
        return []
    return [
        Finding(
            "proxies.trust-all",
            Severity.HIGH,
            "trusted_proxies trusts every address: any client sets X-Forwarded-For to any "
            "address, so the per-address handshake cap and the addresses in the audit log "
            "are whatever it says",
            f"list only your proxies' addresses in {env_name('trusted_proxies')}",
        )
    ]


def _redis_findings(settings: Settings) -> list[Finding]:
    url = settings.redis_url
    if not url or not url.startswith("redis://"):
        return []
    host = urlsplit(url).hostname or ""
    if _is_loopback(host):
        return []
    return [
        Finding(
            "redis.cleartext",
            Severity.LOW,
            "redis_url reaches a remote Redis without TLS: room messages and revocations "
            "cross the network in clear text",
            "use a rediss:// URL (TLS), or keep Redis on a private network you trust",
        )
    ]


# -- reading the settings as the server would ---------------------------------------------

S = TypeVar("S", bound=Settings)


def load_settings(
    model: type[S],
    overrides: Mapping[str, Any] | None = None,
    env_file: Mapping[str, str | None] | None = None,
) -> tuple[S | None, list[Finding]]:
    """``model`` from the environment, as ``wsgate serve`` reads it; or the findings why not.

    ``overrides`` are command-line flags (they win); ``env_file`` holds the
    variables of a ``.env`` file, used where the environment does not set
    the same variable (the precedence pydantic-settings gives dotenv files).
    """
    given: dict[str, Any] = {}
    if env_file:
        for key, value in env_file.items():
            field = _field_of(key, model)
            if field is not None and value is not None and key.upper() not in _upper(os.environ):
                given[field] = value
    given.update(overrides or {})
    try:
        return model(**given), []
    except ValidationError as exc:
        return None, invalid_settings(exc)


def with_flags(settings: S, flags: Mapping[str, Any]) -> tuple[S | None, list[Finding]]:
    """``settings`` (an App's own) with the command-line ``flags`` its model has, validated.

    The flags win, as with ``wsgate serve MODULE:APP --port ...``; a value
    the model refuses is a ``settings.invalid`` finding.
    """
    model = type(settings)
    given = {name: value for name, value in flags.items() if name in model.model_fields}
    if not given:
        return settings, []
    try:
        return model(**{**settings.model_dump(), **given}), []
    except ValidationError as exc:
        return None, invalid_settings(exc)


def _upper(names: Iterable[str]) -> set[str]:
    return {name.upper() for name in names}


def _field_of(variable: str, model: type[Settings]) -> str | None:
    upper = variable.upper()
    if not upper.startswith(ENV_PREFIX):
        return None
    field = upper[len(ENV_PREFIX) :].lower()
    return field if field in model.model_fields else None


def invalid_settings(exc: ValidationError) -> list[Finding]:
    """One ``settings.invalid`` finding per rejected value; never quotes the value itself."""
    findings = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        findings.append(
            Finding(
                "settings.invalid",
                Severity.CRITICAL,
                f"{field}: {error['msg']}; the server would not start",
                f"fix {env_name(field.split('.')[0])} (or its --flag)",
            )
        )
    return findings


def unknown_variables(environ: Mapping[str, str | None], model: type[Settings]) -> list[Finding]:
    """``WSGATE_*`` variables no setting reads: a typo silently leaves the default in force."""
    return [
        Finding(
            "settings.unknown-variable",
            Severity.LOW,
            f"{name} is set but no setting reads it (a typo leaves the default in force)",
            f"check the spelling against `wsgate serve --help`, or unset {name}",
        )
        for name in sorted(environ)
        if name.upper().startswith(ENV_PREFIX) and _field_of(name, model) is None
    ]


# -- probes (I/O) ------------------------------------------------------------------------


class _Probe(Gateway):
    """A gateway with no events: an App needs one, and building it checks the settings."""


async def probe_startup(settings: Settings) -> list[Finding]:
    """Build (and close) the App ``settings`` describe; a refusal to start is a finding.

    This runs the App's own start-up checks (keys and their strength,
    algorithms, origins, key files), so the check cannot drift from them.
    Nothing is served and no connection is opened.
    """
    try:
        app = App([_Probe()], settings)
    except ConfigurationError as exc:
        return [_refused(str(exc))]
    except Exception as exc:  # a finding, never a traceback; the text may quote a value
        return [_refused(f"{type(exc).__name__} while building the App")]
    await app.aclose()
    return []


def refused_app(target: str, exc: BaseException) -> Finding:
    """``MODULE:APP`` could not be loaded; its settings cannot be audited.

    A :class:`ConfigurationError` or a settings error says what is wrong
    without quoting a value; any other exception is named by its type only
    (its text may hold anything), and importing the module shows it whole.
    """
    if isinstance(exc, ValidationError):
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        reason = f"invalid settings ({', '.join(fields) or 'settings'})"
    elif isinstance(exc, ConfigurationError):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__} while importing {target}"
    return _refused(reason)


def _refused(reason: str) -> Finding:
    fix = "fix the setting the message names"
    if reason.startswith("no JWT key"):
        fix += " (only `wsgate demo` makes up a throw-away key when none is set)"
    return Finding(
        "startup.refused", Severity.CRITICAL, f"the server would not start: {reason}", fix
    )


async def probe_redis(url: str, wait: float = REDIS_TIMEOUT) -> list[Finding]:
    """Ask the Redis that holds revocations whether it keeps them across a restart.

    A Redis with neither RDB snapshots (``save``) nor the append-only file
    forgets every revocation when it restarts, and revoked tokens work again
    until they expire. A Redis that cannot be reached or asked is a finding
    too: the check cannot vouch for it, and the server would refuse every
    connection while it is down (fail closed).
    """
    from redis.exceptions import RedisError, ResponseError

    from wsgate.stores.redis_clients import command_client

    # The stores' own client builder: Sentinel and Cluster URLs are asked as the server would.
    try:
        client = command_client(url, pool_size=1, timeout=wait, name="wsgate-check", retries=0)
    except ValueError as exc:
        return [
            Finding(
                "revocation.redis-url",
                Severity.CRITICAL,
                f"redis_url cannot be used: {exc}",
                "give a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL",
            )
        ]
    try:
        async with asyncio.timeout(wait * 2):
            save = await client.config_get("save")
            appendonly = await client.config_get("appendonly")
    except (RedisError, OSError, TimeoutError) as exc:
        unreachable = not isinstance(exc, ResponseError)
        return [
            Finding(
                "revocation.redis-unreachable" if unreachable else "revocation.redis-unknown",
                Severity.HIGH if unreachable else Severity.MEDIUM,
                (
                    f"the Redis of redis_url could not be reached or asked within {wait:g} s "
                    f"({type(exc).__name__}): the server would refuse every connection"
                    if unreachable
                    else "the Redis of redis_url refused CONFIG GET, so whether it keeps "
                    "revocations across a restart is unknown"
                ),
                (
                    "start Redis or fix WSGATE_REDIS_URL (host, port, password, TLS)"
                    if unreachable
                    else "make sure the Redis keeps data (RDB save or appendonly yes); "
                    "managed services document it"
                ),
            )
        ]
    finally:
        await client.aclose()
    if not save.get("save") and appendonly.get("appendonly", "no") != "yes":
        return [
            Finding(
                "revocation.redis-not-persistent",
                Severity.HIGH,
                "the Redis of redis_url keeps revocations in memory only (save is empty, "
                "appendonly is no): after a restart every revoked token works again until it "
                "expires",
                "turn on persistence: `appendonly yes` (or an RDB `save` schedule) in redis.conf",
            )
        ]
    return []


async def audit(
    settings: Settings,
    *,
    secure_cookies: bool | None = None,
    public_url: str | None = None,
    redis_timeout: float = REDIS_TIMEOUT,
) -> list[Finding]:
    """Every finding: :func:`audit_settings`, then the start-up and Redis probes."""
    findings = audit_settings(settings, secure_cookies=secure_cookies, public_url=public_url)
    findings += await probe_startup(settings)
    if settings.redis_url:
        findings += await probe_redis(settings.redis_url, redis_timeout)
    return findings


# -- output ------------------------------------------------------------------------------


def exit_code(findings: Iterable[Finding]) -> int:
    """1 when any finding is above ``low``, else 0."""
    return 1 if any(f.severity in FAILING for f in findings) else 0


def findings_json(findings: Iterable[Finding]) -> str:
    return json.dumps({"findings": [f.to_dict() for f in findings]}, indent=2) + "\n"


def findings_text(findings: list[Finding]) -> str:
    if not findings:
        return "wsgate check: no dangerous setting found\n"
    order = list(Severity)
    lines = []
    for f in sorted(findings, key=lambda f: order.index(f.severity)):
        lines.append(f"{f.severity.upper():8} {f.id}: {f.message}")
        lines.append(f"{'':8} fix: {f.fix}")
    failing = sum(f.severity in FAILING for f in findings)
    lines.append(f"wsgate check: {len(findings)} finding(s), {failing} failing")
    return "\n".join(lines) + "\n"
