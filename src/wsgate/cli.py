"""The ``wsgate`` command: ``demo``, ``serve``, ``token``, ``users add``, ``revoke``, ``asyncapi``,
``typescript`` and ``check``.

Every settings field is a flag of the same name (``jwt_secret`` ->
``--jwt-secret``); a flag wins over its ``WSGATE_*`` environment variable
because it is passed to the settings as an init argument. Built on the
public API only (``wsgate`` and, for the demo's commands, ``wsgate.demo``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, get_args

from pydantic import SecretStr, ValidationError

import wsgate
from wsgate import App, ConfigurationError, Settings, StoreUnavailable
from wsgate.demo.settings import DemoSettings


def add_settings_flags(
    parser: argparse.ArgumentParser,
    only: Sequence[str] | None = None,
    model: type[Settings] = Settings,
) -> None:
    """One flag per settings field; values stay strings and the settings parse them."""
    group = parser.add_argument_group("settings (each also WSGATE_<NAME>)")
    for name, field in model.model_fields.items():
        if only is not None and name not in only:
            continue
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            group.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=field.description,
            )
        else:
            choices = get_args(field.annotation) if name.startswith("log_") else None
            group.add_argument(
                flag,
                dest=name,
                default=None,
                metavar=name.upper(),
                choices=choices or None,
                help=field.description,
            )


S = TypeVar("S", bound=Settings)


def settings_from(args: argparse.Namespace, model: type[S]) -> S:
    given = {
        name: getattr(args, name)
        for name in model.model_fields
        if getattr(args, name, None) is not None
    }
    return model(**given)


def parse_claim(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE as JSON when it parses (``n=3``, ``tags=["a"]``), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--claim takes KEY=VALUE, not {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


# -- commands ---------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from wsgate.demo.app import create_app
    from wsgate.demo.seed import seed_demo_users

    settings = settings_from(args, DemoSettings)
    wsgate.configure_logging(settings.log_level, settings.log_format)
    if not (settings.jwt_secret or settings.jwt_public_key_file or settings.jwt_jwks_url):
        settings = settings.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(48))})
        print(
            "wsgate demo: no JWT key configured; generated a random HMAC secret for this run. "
            "Tokens from `wsgate token` will not verify unless both use WSGATE_JWT_SECRET.",
            file=sys.stderr,
        )
    app = create_app(settings)
    asyncio.run(seed_demo_users(settings.database))
    print(
        f"wsgate demo: serving http://{settings.host}:{settings.port}/ "
        f"(allowed origins: {app.describe_origins()})",
        file=sys.stderr,
    )
    wsgate.run(app, settings)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    module_name, _, attr = args.target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError("serve takes MODULE:APP, e.g. myproject.realtime:app")
    sys.path.insert(0, ".")
    app = getattr(importlib.import_module(module_name), attr)
    base = app.settings if isinstance(app, App) else Settings()
    overrides = settings_from(args, Settings).model_dump(exclude_unset=True)
    settings = base.model_copy(update=overrides)
    wsgate.configure_logging(settings.log_level, settings.log_format)
    wsgate.run(app, settings)
    return 0


def load_app(args: argparse.Namespace) -> App:
    """The App named by ``MODULE:APP``, or with ``--demo`` the demo's gateways.

    The demo App is built from its gateways and a throw-away key only: no
    database is opened or written, nothing is served.
    """
    if args.demo == bool(args.target):
        raise ConfigurationError("name an App as MODULE:APP, or pass --demo (one of the two)")
    if args.demo:
        from wsgate.demo.gateways import Admin, Chat

        settings = DemoSettings(jwt_secret=SecretStr(secrets.token_urlsafe(48)))
        return App([Chat(), Admin()], settings)
    module_name, _, attr = args.target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(
            f"expected MODULE:APP, e.g. myproject.realtime:app, not {args.target!r}"
        )
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists and failed to import: its traceback helps
        raise ConfigurationError(f"no module named {module_name!r}") from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ConfigurationError(f"{args.target} is not a wsgate App")
    return app


def write_output(args: argparse.Namespace, text: str) -> None:
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from wsgate.schema import asyncapi_document

    app = load_app(args)
    title = args.title or ("wsgate demo" if args.demo else args.target)
    document = asyncapi_document(app, title=title, version=args.api_version, host=args.server_host)
    if args.yaml:
        # PyYAML comes with uvicorn[standard]; imported by name as it ships no type stubs.
        yaml: Any = importlib.import_module("yaml")
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    write_output(args, text)
    return 0


def cmd_typescript(args: argparse.Namespace) -> int:
    from wsgate.schema import typescript_declarations

    write_output(args, typescript_declarations(load_app(args)))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = settings_from(args, Settings)
    issuer = wsgate.token_issuer(settings)
    use: Literal["access", "refresh"] = "refresh" if args.refresh else "access"
    token, _ = issuer.issue(
        args.sub, roles=args.role, ttl=args.ttl, use=use, extra_claims=dict(args.claim)
    )
    print(token)
    return 0


def revocation_expiry(settings: DemoSettings) -> float:
    """When a revocation entry made now may go: after every token it may concern has expired."""
    return time.time() + max(settings.access_token_ttl, settings.refresh_token_ttl) + 60


def cmd_users_add(args: argparse.Namespace) -> int:
    """Save a user; replacing one also revokes every token it was issued before.

    A new password or fewer roles must end the sessions made with the old
    ones: an access token carries its roles, and a refresh token would
    otherwise mint new ones for as long as it lives.
    """
    from wsgate.demo.app import revocation_store
    from wsgate.stores import UserStore

    settings = settings_from(args, DemoSettings)

    async def add() -> tuple[str, bool]:
        store = UserStore(settings.database)
        try:
            replaced = await store.get(args.name) is not None
            user = await store.add(args.name, args.password, args.role)
        finally:
            await store.aclose()
        saved = (
            f"user {user.name} saved with roles [{', '.join(user.roles)}] in {settings.database}"
        )
        return saved, replaced

    async def revoke_earlier_tokens() -> None:
        revocations = revocation_store(settings)
        try:
            await revocations.revoke_sub(args.name, expires_at=revocation_expiry(settings))
        finally:
            await revocations.aclose()

    saved, replaced = asyncio.run(add())
    print(saved)
    if not replaced:
        return 0
    try:
        asyncio.run(revoke_earlier_tokens())
    except StoreUnavailable:
        print(
            f"wsgate: the tokens {args.name} was issued before cannot be revoked now (the "
            f"revocation store is unreachable); run: wsgate revoke --sub {args.name}",
            file=sys.stderr,
        )
        return 1
    print(f"revoked every token of {args.name} issued before now; live sockets are cut")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from wsgate.demo.app import revocation_store

    settings = settings_from(args, DemoSettings)
    if bool(args.sub) == bool(args.jti):
        raise ConfigurationError("revoke takes exactly one of --sub NAME or --jti ID")
    # The entry must outlive every token it may concern: the longest token life.
    expires_at = revocation_expiry(settings)

    async def revoke() -> str:
        store = revocation_store(settings)
        try:
            if args.sub:
                await store.revoke_sub(args.sub, expires_at=expires_at)
                return f"revoked every token of {args.sub} issued before now"
            await store.revoke_jti(args.jti, expires_at=expires_at)
            return f"revoked token {args.jti}"
        finally:
            await store.aclose()

    try:
        print(asyncio.run(revoke()))
    except StoreUnavailable:
        # Refused cleanly, never half done: nothing was stored or announced.
        print(
            "wsgate: the revocation store cannot be reached now; nothing was revoked, try again",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Audit the settings ``serve``/``demo`` would read (or a named App's); exit 1 on danger."""
    import os

    from wsgate import check

    env_file: dict[str, str | None] = {}
    if args.env_file:
        from dotenv import dotenv_values  # comes with uvicorn[standard]

        if not os.path.isfile(args.env_file):
            raise ConfigurationError(f"no such env file: {args.env_file}")
        env_file = dict(dotenv_values(args.env_file))
    flags = {n: getattr(args, n) for n in DemoSettings.model_fields if getattr(args, n) is not None}
    findings = check.unknown_variables({**env_file, **os.environ}, DemoSettings)
    settings: Settings | None = None
    if args.target:
        try:
            settings, invalid = check.with_flags(load_app(args).settings, flags)
            findings += invalid
        except Exception as exc:  # a finding, never a traceback: the App would not start
            findings.append(check.refused_app(args.target, exc))
    else:
        settings, invalid = check.load_settings(DemoSettings, flags, env_file)
        findings += invalid
    if settings is not None:
        cookies = settings.secure_cookies if isinstance(settings, DemoSettings) else None
        findings += asyncio.run(
            check.audit(settings, secure_cookies=cookies, public_url=args.public_url)
        )
    print(check.findings_json(findings) if args.json else check.findings_text(findings), end="")
    return check.exit_code(findings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsgate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the secured demo chat app")
    add_settings_flags(demo, model=DemoSettings)
    demo.set_defaults(func=cmd_demo)

    serve = commands.add_parser("serve", help="run a wsgate App (MODULE:APP) under uvicorn")
    serve.add_argument("target", metavar="MODULE:APP")
    add_settings_flags(
        serve,
        only=("host", "port", "connect_timeout", "trusted_proxies", "log_level", "log_format"),
    )
    serve.set_defaults(func=cmd_serve)

    token = commands.add_parser("token", help="print a signed access token (development)")
    token.add_argument("--sub", required=True)
    token.add_argument("--role", action="append", default=[], help="repeat for several roles")
    token.add_argument("--ttl", type=float, default=900.0, help="seconds (default 900)")
    token.add_argument("--refresh", action="store_true", help="a refresh token instead")
    token.add_argument(
        "--claim",
        action="append",
        default=[],
        type=parse_claim,
        metavar="KEY=VALUE",
        help="an extra claim; VALUE is JSON when it parses (repeat for several)",
    )
    add_settings_flags(
        token,
        only=(
            "jwt_secret",
            "jwt_private_key_file",
            "jwt_public_key_file",
            "jwt_algorithms",
            "jwt_issuer",
            "jwt_audience",
            "max_token_lifetime",
            "max_refresh_token_lifetime",
        ),
    )
    token.set_defaults(func=cmd_token)

    users = commands.add_parser("users", help="manage demo users")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    revocation_flags = (
        "database",
        "redis_url",
        "redis_prefix",
        "redis_timeout",
        "access_token_ttl",
        "refresh_token_ttl",
    )
    add = users_commands.add_parser(
        "add",
        help="add a demo user, or replace one (its earlier tokens are then revoked)",
    )
    add.add_argument("name")
    add.add_argument("--password", required=True)
    add.add_argument("--role", action="append", default=[], help="repeat for several roles")
    add_settings_flags(add, only=revocation_flags, model=DemoSettings)
    add.set_defaults(func=cmd_users_add)

    revoke = commands.add_parser("revoke", help="revoke tokens; live sockets are cut")
    revoke.add_argument("--sub", help="every token of this user issued before now")
    revoke.add_argument("--jti", help="one token by its jti")
    add_settings_flags(revoke, only=revocation_flags, model=DemoSettings)
    revoke.set_defaults(func=cmd_revoke)

    asyncapi = commands.add_parser(
        "asyncapi", help="print the AsyncAPI 3.0 document of an App's gateways (JSON)"
    )
    add_target(asyncapi)
    asyncapi.add_argument("--yaml", action="store_true", help="YAML instead of JSON")
    asyncapi.add_argument("--title", help="info.title (default: MODULE:APP)")
    asyncapi.add_argument("--api-version", default="0.0.0", help="info.version (default 0.0.0)")
    asyncapi.add_argument(
        "--server-host", help="host[:port] clients connect to (default: the settings' host:port)"
    )
    asyncapi.set_defaults(func=cmd_asyncapi)

    typescript = commands.add_parser(
        "typescript", help="write TypeScript declarations for socket.io-client clients"
    )
    add_target(typescript)
    typescript.set_defaults(func=cmd_typescript)

    audit = commands.add_parser(
        "check", help="audit the effective settings; exit 1 on a dangerous one"
    )
    audit.add_argument(
        "target", nargs="?", metavar="MODULE:APP", help="audit this App's settings, not the env's"
    )
    audit.add_argument("--json", action="store_true", help='print {"findings": [...]}')
    audit.add_argument("--env-file", metavar="FILE", help="read WSGATE_* from FILE too (.env)")
    audit.add_argument("--public-url", help="the URL users reach (https behind a TLS proxy)")
    audit.set_defaults(demo=False)
    add_settings_flags(audit, model=DemoSettings)
    audit.set_defaults(func=cmd_check)
    return parser


def add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="MODULE:APP", help="the App to describe")
    parser.add_argument("--demo", action="store_true", help="describe the demo app instead")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigurationError, ValidationError, ValueError) as exc:
        print(f"wsgate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
