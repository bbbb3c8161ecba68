"""`field__any=[...]`: membership in a list as ONE query parameter, however long the list.

Django's `__in` gives each value its own placeholder, and the database driver prepares every parameter
separately: for the thousands of user ids of a process's periodic socket re-check that preparation, not the
query, was the cost. On PostgreSQL the list goes as one array (`= ANY(%s)`), on SQLite as one JSON text read
by `json_each`; other databases fall back to `IN`. An empty list matches nothing, as `__in` does.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Field, ForeignObject, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self) -> Any:
        return [self.lhs.output_field.get_prep_value(value) for value in self.rhs]

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = [self.lhs.output_field.get_db_prep_value(v, connection, prepared=True) for v in self.rhs]
        if not values:
            return "1 = 0", []
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*lhs_params, values]
        if connection.vendor == "sqlite":
            # lhs is a compiled column reference; the values travel as one parameter.
            return f"{lhs} IN (SELECT value FROM json_each(%s))", [*lhs_params, json.dumps(values)]  # noqa: S608
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]


def register() -> None:
    """Called once from core's AppConfig.ready: every field (foreign keys too) gets `__any`."""
    Field.register_lookup(AnyOf)
    ForeignObject.register_lookup(AnyOf)  # related fields keep lookups of their own
