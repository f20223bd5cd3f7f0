"""``wsgate typescript``: declarations that type-check clients with ``tsc --strict``.

The generated module is compiled with real clients against socket.io-client's
own ``Socket<Listen, Emit>`` types (npm ``typescript`` and ``socket.io-client``,
installed by tests/node_tools.py); each misuse file must fail on exactly the
lines it marks, so a generator that emitted ``any`` everywhere would fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node_tools import install
from wsgate.schema.jsonschema_ts import Converter

TESTS = Path(__file__).parent
CLIENTS = TESTS / "typescript"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
ERROR_LINE = re.compile(r"^(?P<file>[^(\s]+)\((?P<line>\d+),\d+\): error (?P<code>TS\d+)", re.M)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return install()


def generate(tmp_path: Path, *target: str) -> Path:
    out = tmp_path / "wsgate-api.ts"
    result = subprocess.run(
        [sys.executable, "-m", "wsgate", "typescript", *target, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        cwd=TESTS,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def tsc(node_modules: Path, project: Path, *files: str) -> subprocess.CompletedProcess[str]:
    """``tsc --strict --noEmit`` on ``files`` of ``project`` (which holds the generated module)."""
    link = project / "node_modules"
    if not link.exists():
        link.symlink_to(node_modules, target_is_directory=True)
    for name in files:
        shutil.copy(CLIENTS / name, project / name)
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "es2022",
            "module": "esnext",
            "moduleResolution": "bundler",
            "types": [],
        },
        "files": list(files),
    }
    (project / "tsconfig.json").write_text(json.dumps(config))
    return subprocess.run(
        ["node", str(node_modules / "typescript" / "bin" / "tsc"), "-p", "tsconfig.json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=project,
        check=False,
    )


def marked_lines(name: str) -> set[int]:
    lines = (CLIENTS / name).read_text().splitlines()
    return {n for n, line in enumerate(lines, 1) if line.rstrip().endswith("// expect-error")}


def error_lines(output: str, name: str) -> set[int]:
    return {int(m["line"]) for m in ERROR_LINE.finditer(output) if m["file"].endswith(name)}


def test_demo_declarations_compile_with_a_real_client(node_modules: Path, tmp_path: Path) -> None:
    generate(tmp_path, "--demo")
    result = tsc(node_modules, tmp_path, "demo_client.ts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_misusing_the_demo_declarations_fails_to_compile(
    node_modules: Path, tmp_path: Path
) -> None:
    generate(tmp_path, "--demo")
    result = tsc(node_modules, tmp_path, "demo_misuse.ts")
    assert result.returncode != 0
    expected = marked_lines("demo_misuse.ts")
    assert len(expected) >= 10
    assert error_lines(result.stdout, "demo_misuse.ts") == expected, result.stdout


def test_every_mapped_shape_compiles_and_is_checked(node_modules: Path, tmp_path: Path) -> None:
    generate(tmp_path, "schema_zoo:app")
    good = tsc(node_modules, tmp_path, "zoo_client.ts")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = tsc(node_modules, tmp_path, "zoo_misuse.ts")
    assert error_lines(bad.stdout, "zoo_misuse.ts") == marked_lines("zoo_misuse.ts"), bad.stdout


def test_stdout_by_default_and_the_socket_io_import() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsgate", "typescript", "--demo"],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert 'import type { Socket } from "socket.io-client";' in result.stdout
    assert "export type RootSocket = Socket<RootListenEvents, RootEmitEvents>;" in result.stdout
    assert "export type AdminSocket = Socket<AdminListenEvents, AdminEmitEvents>;" in result.stdout


# -- the converter on its own: each JSON-schema shape pydantic emits ----------------------


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, "unknown"),
        (True, "unknown"),
        (False, "never"),
        ({"type": "string"}, "string"),
        ({"type": "integer"}, "number"),
        ({"type": "null"}, "null"),
        ({"type": ["string", "null"]}, "string | null"),
        ({"const": "cat"}, '"cat"'),
        ({"enum": ["a", 1, None, True]}, '"a" | 1 | null | true'),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "number | null"),
        ({"oneOf": [{"$ref": "#/x/A"}, {"$ref": "#/x/B"}]}, "A | B"),
        ({"anyOf": [{"type": "string"}, {}]}, "unknown"),
        ({"allOf": [{"$ref": "#/x/A"}]}, "A"),
        ({"type": "array", "items": {"type": "string"}}, "string[]"),
        ({"type": "array", "items": {"enum": ["a", "b"]}}, 'Array<"a" | "b">'),
        ({"type": "array"}, "unknown[]"),
        (
            {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]},
            "[number, string, ...unknown[]]",
        ),
        (
            {
                "type": "array",
                "items": [{"type": "integer"}],
                "additionalItems": False,
            },
            "[number]",
        ),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}], "maxItems": 1},
            "[number]",
        ),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
            "[number, ...string[]]",
        ),
        ({"type": "object"}, "{\n  [key: string]: unknown;\n}"),
        ({"type": "object", "additionalProperties": False}, "{ [key: string]: never }"),
        (
            {"type": "object", "additionalProperties": {"type": "number"}},
            "{\n  [key: string]: number;\n}",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b-c": {"type": "integer"}},
                "required": ["a"],
            },
            '{\n  a: string;\n  "b-c"?: number;\n}',
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "required": ["a"],
                "additionalProperties": {"type": "integer"},
            },
            "{\n  a: string;\n} & { [key: string]: number }",
        ),
        ({"$ref": "#/components/schemas/Thing"}, "Thing"),
        ({"type": "string", "format": "binary", "description": "x"}, "string"),
        ({"not": {"type": "string"}}, "unknown"),
    ],
)
def test_converter_maps_each_shape(schema: object, expected: str) -> None:
    assert Converter(ref_name).convert(schema) == expected


def test_comments_cannot_close_early() -> None:
    ts = Converter(ref_name).convert(
        {
            "type": "object",
            "properties": {"a": {"type": "string", "description": "ends */ here"}},
        }
    )
    assert "*/ here" not in ts and "*\\/ here" in ts
