"""``wsgate asyncapi``: the document, validated by the official AsyncAPI 3.0 JSON schema.

The schema comes from the ``@asyncapi/specs`` npm package and is applied with
``jsonschema`` (it is draft-07, which jsonschema implements fully, and 4.18+
resolves the ``$id``s it bundles): no Node process per validation, and the
same validator checks real replies and pushes of a running App against the
document's own schemas, so the document cannot drift from the wire.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from asyncapi_check import (
    ack_schema,
    body_schema,
    dangling_refs,
    foreign_operation_messages,
    instance_errors,
    operation,
    push_schema,
    resolve,
    schema_errors,
)
from node_tools import install
from support import free_port, serve, settings_for
from wsgate import App, Code, Settings
from wsgate.demo.gateways import Admin, Chat
from wsgate.testing import AppClient

TESTS = Path(__file__).parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}


def wsgate(*args: str, cwd: Path = TESTS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsgate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        cwd=cwd,
        check=False,
    )


def document_of(*args: str) -> dict[str, Any]:
    result = wsgate("asyncapi", *args)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return install()


@pytest.fixture(scope="module")
def demo_document() -> dict[str, Any]:
    return document_of("--demo")


@pytest.fixture(scope="module")
def zoo_document() -> dict[str, Any]:
    return document_of("schema_zoo:app", "--title", "Zoo", "--api-version", "2.1.0")


def assert_valid(node_modules: Path, document: dict[str, Any]) -> None:
    assert schema_errors(node_modules, document) == []
    assert dangling_refs(document) == []
    assert foreign_operation_messages(document) == []


def test_demo_document_is_valid_asyncapi_3(
    node_modules: Path, demo_document: dict[str, Any]
) -> None:
    assert demo_document["asyncapi"] == "3.0.0"
    assert_valid(node_modules, demo_document)


def test_a_document_with_every_kind_of_type_is_valid(
    node_modules: Path, zoo_document: dict[str, Any]
) -> None:
    assert zoo_document["info"]["title"] == "Zoo"
    assert zoo_document["info"]["version"] == "2.1.0"
    assert_valid(node_modules, zoo_document)
    schemas = zoo_document["components"]["schemas"]
    # 2020-12 keywords pydantic emits are rewritten to draft-07, keeping their meaning.
    pair = schemas["Everything"]["properties"]["pair"]
    assert pair["items"] == [{"type": "integer"}, {"type": "string"}]
    assert pair["additionalItems"] is False and "prefixItems" not in pair
    feed = body_schema(zoo_document, "zoo", "feed")
    assert feed["discriminator"] == "kind"
    # The recursive model refers to itself by name.
    assert schemas["Tree-Input"]["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/Tree-Input"
    }
    # A handler without a return annotation documents an open ack; `-> None` a null one.
    assert ack_schema(zoo_document, "zoo", "untyped") == {}
    assert ack_schema(zoo_document, "zoo", "nothing") == {"type": "null"}
    nothing = resolve(
        zoo_document, operation(zoo_document, "zoo", "receive", "nothing")["messages"][0]["$ref"]
    )
    assert "payload" not in nothing
    feed_op = operation(zoo_document, "zoo", "receive", "feed")
    assert feed_op["x-wsgate-roles"] == ["keeper", "vet"]
    assert feed_op["x-wsgate-guards"] == 1 and feed_op["x-wsgate-public"] is False
    assert operation(zoo_document, "zoo", "receive", "nothing")["x-wsgate-public"] is True
    keepers = zoo_document["channels"]["keepers"]
    assert keepers["address"] == "/keepers" and keepers["x-wsgate-connect-roles"] == ["keeper"]
    assert keepers["bindings"]["ws"]["query"]["required"] == ["namespace"]
    # Class roles reach every event of the class, as the registry applies them.
    assert operation(zoo_document, "keepers", "receive", "count")["x-wsgate-roles"] == ["keeper"]
    assert push_schema(zoo_document, "zoo", "tick") == {"$ref": "#/components/schemas/Tick"}
    assert "payload" not in resolve(
        zoo_document, operation(zoo_document, "zoo", "send", "bare")["messages"][0]["$ref"]
    )


def test_the_validator_rejects_broken_documents(
    node_modules: Path, demo_document: dict[str, Any]
) -> None:
    """The checks can fail: each breakage of a valid document is reported."""
    broken = copy.deepcopy(demo_document)
    broken["operations"]["root.receive.echo"]["action"] = "publish"  # AsyncAPI 2 wording
    assert schema_errors(node_modules, broken)
    broken = copy.deepcopy(demo_document)
    broken["components"]["schemas"]["TextBody"]["discriminator"] = {"propertyName": "text"}
    assert schema_errors(node_modules, broken)
    broken = copy.deepcopy(demo_document)
    del broken["servers"]["socketio"]["host"]
    assert schema_errors(node_modules, broken)
    broken = copy.deepcopy(demo_document)
    del broken["components"]["schemas"]["TextBody"]
    assert "#/components/schemas/TextBody" in dangling_refs(broken)
    broken = copy.deepcopy(demo_document)
    broken["operations"]["root.receive.echo"]["messages"] = [
        {"$ref": "#/channels/admin/messages/request:ping"}
    ]
    assert foreign_operation_messages(broken)


def test_the_demo_document_says_what_the_contract_says(demo_document: dict[str, Any]) -> None:
    doc = demo_document
    channels = doc["channels"]
    assert {c["address"] for c in channels.values()} == {"/", "/admin"}
    assert channels["admin"]["x-wsgate-connect-roles"] == ["admin"]
    assert channels["root"]["x-wsgate-connect-roles"] == []
    received = {
        op["x-wsgate-event"]
        for name, op in doc["operations"].items()
        if name.startswith("root.receive.")
    }
    assert received == {
        "admin:broadcast", "auth:refresh", "echo", "join", "leave", "ping", "say", "whoami"
    }  # fmt: skip
    sent = {op["x-wsgate-event"] for name, op in doc["operations"].items() if ".send." in name}
    assert {"message", "announcement", "auth:expired", "auth:revoked", "exception"} <= sent
    assert "message" not in {
        op["x-wsgate-event"] for name, op in doc["operations"].items()
        if name.startswith("admin.send.")
    }  # fmt: skip
    assert operation(doc, "root", "receive", "admin:broadcast")["x-wsgate-roles"] == ["admin"]
    ping = operation(doc, "root", "receive", "ping")
    assert ping["x-wsgate-public"] is True and ping["x-wsgate-roles"] == []
    assert operation(doc, "root", "receive", "echo")["x-wsgate-roles"] == []
    # Bodies as pydantic validates them: the contract's lengths and room pattern.
    text = resolve(doc, body_schema(doc, "root", "echo")["$ref"])["properties"]["text"]
    assert (text["minLength"], text["maxLength"]) == (1, 1000)
    room = resolve(doc, body_schema(doc, "root", "join")["$ref"])["properties"]["room"]
    assert room["pattern"] == "^[A-Za-z0-9_-]+$" and room["maxLength"] == 64
    # The error object: one schema, its codes straight from wsgate.codes.
    schemas = doc["components"]["schemas"]
    assert schemas["Code"]["enum"] == [str(code) for code in Code]
    assert schemas["ErrorObject"]["properties"]["status"]["enum"] == [
        400, 401, 403, 404, 413, 429, 500, 503
    ]  # fmt: skip
    echo = operation(doc, "root", "receive", "echo")
    assert echo["reply"]["messages"][1] == {"$ref": "#/channels/root/messages/error"}
    # Both transports, each with the token sources it accepts.
    servers = doc["servers"]
    assert servers["socketio"]["pathname"] == "/socket.io/"
    assert servers["websocket"]["pathname"] == "/ws"
    security = doc["components"]["securitySchemes"]
    assert security["accessTokenCookie"] == {
        "type": "httpApiKey",
        "in": "cookie",
        "name": "access_token",
        "description": security["accessTokenCookie"]["description"],
    }
    assert security["bearerHeader"]["scheme"] == "bearer"
    assert {s["$ref"].rsplit("/", 1)[1] for s in servers["socketio"]["security"]} == {
        "socketioAuth", "bearerHeader", "accessTokenCookie"
    }  # fmt: skip
    assert "queryToken" not in security  # only when allow_query_token is on


def test_yaml_is_the_same_document(demo_document: dict[str, Any]) -> None:
    import yaml

    result = wsgate("asyncapi", "--demo", "--yaml")
    assert result.returncode == 0, result.stderr
    assert not result.stdout.lstrip().startswith("{")
    assert yaml.safe_load(result.stdout) == demo_document


def test_output_file_and_server_host(tmp_path: Path) -> None:
    target = tmp_path / "api.json"
    result = wsgate("asyncapi", "--demo", "-o", str(target), "--server-host", "chat.example:443")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    document = json.loads(target.read_text())
    assert {s["host"] for s in document["servers"].values()} == {"chat.example:443"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("asyncapi",), "MODULE:APP, or pass --demo"),
        (("typescript", "schema_zoo:app", "--demo"), "MODULE:APP, or pass --demo"),
        (("asyncapi", "schema_zoo"), "expected MODULE:APP"),
        (("typescript", "schema_zoo:SECRET"), "is not a wsgate App"),
        (("asyncapi", "no_such_module_here:app"), "no module named"),
    ],
)
def test_bad_targets_are_refused_plainly(args: tuple[str, ...], message: str) -> None:
    result = wsgate(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_the_demo_document_needs_no_database(tmp_path: Path) -> None:
    """``--demo`` builds the gateways only: no SQLite file appears where it runs."""
    result = wsgate("asyncapi", "--demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


async def test_served_at_asyncapi_path_only_when_enabled(
    node_modules: Path, demo_document: dict[str, Any]
) -> None:
    port = free_port()
    app = App([Chat(), Admin()], settings_for(port, asyncapi_path="/asyncapi.json"))
    async with serve(app, port) as url, httpx.AsyncClient() as http:
        resp = await http.get(f"{url}/asyncapi.json")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/json"
        served = resp.json()
        assert_valid(node_modules, served)
        # The same document as the command's, but for its info.title and server host.
        assert served["channels"] == demo_document["channels"]
        assert served["components"] == demo_document["components"]
        assert {s["host"] for s in served["servers"].values()} == {f"127.0.0.1:{port}"}
    port = free_port()
    async with serve(App([Chat()], settings_for(port)), port) as url, httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/asyncapi.json")).status_code == 404


def test_asyncapi_path_must_be_a_path() -> None:
    with pytest.raises(ValueError, match="asyncapi_path"):
        Settings(jwt_secret="x" * 40, asyncapi_path="asyncapi.json")


# -- the document against the wire: real replies and pushes of a running App ---------------


async def test_replies_and_pushes_of_the_demo_match_its_document(
    demo_document: dict[str, Any],
) -> None:
    doc = demo_document

    def check(schema: dict[str, Any], instance: Any) -> None:
        assert instance_errors(doc, schema, instance) == [], instance

    error_reply = {"$ref": "#/components/schemas/ErrorReply"}
    app = App([Chat(), Admin()], Settings(jwt_secret="wire-secret-long-enough-0123456789abcd"))
    async with AppClient(app) as client:
        async with client.socketio(sub="alice") as alice, client.websocket(sub="bob") as bob:
            assert bob.ready is not None
            check({"$ref": "#/components/schemas/Ready"}, bob.ready)
            for event, body in [
                ("ping", None),
                ("whoami", None),
                ("echo", {"text": "hi"}),
                ("join", {"room": "r1"}),
                ("leave", {"room": "r1"}),
            ]:
                reply = await alice.call(event, body)
                assert "error" not in reply if isinstance(reply, dict) else True, reply
                check(ack_schema(doc, "root", event), reply)
                check(body_schema(doc, "root", event), body) if body is not None else None
            await alice.call("join", {"room": "r2"})
            await bob.call("join", {"room": "r2"})
            said = await bob.call("say", {"room": "r2", "text": "hello"})
            check(ack_schema(doc, "root", "say"), said)
            check(push_schema(doc, "root", "message"), await alice.next_event("message"))
            # Errors: a bad body (400 with fields), a missing role (403), an unknown event (404).
            bad = await alice.call("echo", {"text": ""})
            assert bad["error"]["status"] == 400 and bad["error"]["fields"]
            check(error_reply, bad)
            forbidden = await alice.call("admin:broadcast", {"text": "x"})
            assert forbidden["error"]["status"] == 403
            check(error_reply, forbidden)
            check(error_reply, await bob.call("nope", {}))
            # A failed event without an ack comes back as `exception`.
            await alice.emit("echo", {"text": 5})
            check(push_schema(doc, "root", "exception"), await alice.next_event("exception"))
            # auth:refresh: body and ack.
            refreshed = await alice.call("auth:refresh", {"token": client.token("alice")})
            check(ack_schema(doc, "root", "auth:refresh"), refreshed)
            check(error_reply, await alice.call("auth:refresh", {"token": client.token("eve")}))
        async with client.socketio(sub="root", roles=["admin"], namespace="/admin") as admin:
            async with client.socketio(sub="carol") as carol:
                delivered = await admin.call("admin:broadcast", {"text": "news"})
                check(ack_schema(doc, "admin", "admin:broadcast"), delivered)
                check(
                    push_schema(doc, "root", "announcement"), await carol.next_event("announcement")
                )
                check(
                    push_schema(doc, "admin", "announcement"),
                    await admin.next_event("announcement"),
                )
        # Session notices: revoked, and expired.
        token = client.token("dave")
        async with client.socketio(token=token) as dave:
            jti = jwt.decode(token, options={"verify_signature": False})["jti"]
            assert await app.disconnect_token(jti) == 1
            check(push_schema(doc, "root", "auth:revoked"), await dave.next_event("auth:revoked"))
        async with client.websocket(token=client.token("erin", ttl=1)) as erin:
            expired = await erin.next_event("auth:expired", timeout=5)
            check(push_schema(doc, "root", "auth:expired"), expired)


def test_the_readme_example_is_described(node_modules: Path, tmp_path: Path) -> None:
    """The README's gateway, as a user copies it, gives a valid document with its push."""
    readme = (TESTS.parent / "README.md").read_text()
    section = readme.split("## Your own gateway", 1)[1]
    source = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_app.py").write_text(source)
    result = subprocess.run(
        [sys.executable, "-m", "wsgate", "asyncapi", "readme_app:app"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, "WSGATE_JWT_SECRET": "readme-secret-long-enough-0123456789abcdef"},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert_valid(node_modules, document)
    assert push_schema(document, "root", "announcement") == {"$ref": "#/components/schemas/Echo"}
    assert operation(document, "root", "receive", "admin:broadcast")["x-wsgate-roles"] == ["admin"]


def test_an_unresolvable_return_annotation_leaves_the_ack_undocumented() -> None:
    """A name imported only for type checkers must not stop the App from starting."""
    from wsgate import Context, Gateway, subscribe
    from wsgate.schema import asyncapi_document

    class Lazy(Gateway):
        @subscribe("status")
        async def status(self, ctx: Context) -> OnlyForTypeCheckers:  # type: ignore[name-defined]  # noqa: F821
            return {"ok": True}

    document = asyncapi_document(App([Lazy()], Settings(jwt_secret="x" * 40)))
    assert ack_schema(document, "root", "status") == {}
