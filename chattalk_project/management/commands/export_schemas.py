"""`python manage.py export_schemas [--check]`: write the committed API schemas (schema.graphql,
docs/openapi.yaml) from the code, or with --check only say whether they are current (exit status 1 if not)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chattalk_project.schema_files import REGENERATE, SCHEMA_FILES


class Command(BaseCommand):
    help = "Write schema.graphql and docs/openapi.yaml from the code (--check: only compare)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true", help="compare only; exit 1 when a file is stale")

    def handle(self, *args: Any, check: bool = False, **options: Any) -> None:
        stale = []
        for schema_file in SCHEMA_FILES:
            if schema_file.is_current():
                self.stdout.write(f"{schema_file.path.name}: current")
            elif check:
                stale.append(schema_file.path.name)
                self.stdout.write(f"{schema_file.path.name}: STALE")
            else:
                schema_file.write()
                self.stdout.write(f"{schema_file.path.name}: written")
        if stale:
            raise CommandError(f"stale: {', '.join(stale)}; run `{REGENERATE}`")
