"""The API's two schemas as committed files, for clients that generate their types from them (a React SPA's
codegen): `schema.graphql` (GraphQL SDL) and `docs/openapi.yaml` (OpenAPI 3). Both are produced from the code
by one command, `python manage.py export_schemas`; a test fails when a committed file and the code differ.

The text must not depend on where it is produced: English descriptions whatever the caller's language, and no
request (so no host name in the OpenAPI servers list).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import translation

REGENERATE = "python manage.py export_schemas"


def graphql_sdl() -> str:
    from graphql import print_schema

    from .schema import schema

    return print_schema(schema.graphql_schema).rstrip("\n") + "\n"


def openapi_yaml() -> str:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiYamlRenderer

    with translation.override("en"):
        document = SchemaGenerator().get_schema(request=None, public=True)
        return OpenApiYamlRenderer().render(document, renderer_context={}).decode()


@dataclass(frozen=True)
class SchemaFile:
    path: Path
    render: Callable[[], str]

    def is_current(self) -> bool:
        return self.path.exists() and self.path.read_text(encoding="utf-8") == self.render()

    def write(self) -> None:
        self.path.write_text(self.render(), encoding="utf-8")


SCHEMA_FILES = (
    SchemaFile(Path(settings.BASE_DIR) / "schema.graphql", graphql_sdl),
    SchemaFile(Path(settings.BASE_DIR) / "docs" / "openapi.yaml", openapi_yaml),
)
