"""The committed API schemas (schema.graphql, docs/openapi.yaml) are what the code serves, so a client that
generates its types from them gets the real API. When one fails: run `python manage.py export_schemas` and
commit the files."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from chattalk_project.schema_files import REGENERATE, SCHEMA_FILES, SchemaFile, graphql_sdl

pytestmark = pytest.mark.django_db


def _difference(schema_file: SchemaFile) -> str:
    committed = schema_file.path.read_text(encoding="utf-8").splitlines() if schema_file.path.exists() else []
    diff = difflib.unified_diff(committed, schema_file.render().splitlines(), "committed", "code", lineterm="", n=1)
    return "\n".join(list(diff)[:40])


@pytest.mark.parametrize("schema_file", SCHEMA_FILES, ids=lambda f: f.path.name)
def test_the_committed_schema_file_matches_the_code(schema_file: SchemaFile) -> None:
    assert schema_file.is_current(), (
        f"{schema_file.path.name} differs from the code: run `{REGENERATE}` and commit it.\n{_difference(schema_file)}"
    )


def test_the_openapi_file_is_the_schema_the_server_serves() -> None:
    served = Client().get("/api/schema/").content.decode()
    assert served == SCHEMA_FILES[1].render()


def test_the_graphql_file_is_the_schema_introspection_describes() -> None:
    from graphql import build_client_schema, get_introspection_query, print_schema

    answer = Client().post("/graphql", {"query": get_introspection_query()}, content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert print_schema(build_client_schema(answer.json()["data"])) + "\n" == graphql_sdl()


def test_export_schemas_check_names_a_stale_file_and_the_command_that_fixes_it(tmp_path: Path) -> None:
    stale = SchemaFile(tmp_path / "schema.graphql", lambda: "type Query { x: Int }\n")
    stale.path.write_text("type Query { old: Int }\n")
    from chattalk_project.management.commands import export_schemas

    original = export_schemas.SCHEMA_FILES
    export_schemas.SCHEMA_FILES = (stale,)
    try:
        with pytest.raises(CommandError, match=r"stale: schema\.graphql; run `python manage.py export_schemas`"):
            call_command("export_schemas", "--check")
        assert stale.path.read_text() == "type Query { old: Int }\n"  # --check never writes
        call_command("export_schemas")
        assert stale.is_current()
    finally:
        export_schemas.SCHEMA_FILES = original
