"""Reads of a fixed shape that the ORM compiles once per database instead of once per call.

Django builds and compiles a query's SQL anew every time it runs: for the fixed lookups of a hot path (the
message a change applies to, the membership rule inside the seq UPDATE) the compiling cost several times the
query's own round trip. A CompiledQuery keeps what the ORM produced for one shape (its SQL, the positions of
the arguments among its parameters, and for model rows the compiler's column layout, converters and related
populators) and runs it with new values. The ORM stays the one place where each rule is written: the query
is an ordinary QuerySet, built once per database with marker values.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

# Marker values that no real argument takes (ids are positive; marker strings hold a NUL, which no stored
# text may contain): the positions where a marker lands in the compiled parameters are that argument's.
# Within a 32-bit integer's range, which the ORM checks an integer column's lookups against.
_INT_MARKER_BASE = -2_100_000_000
_STR_MARKER = "\x00compiled-query-argument-{}"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    positions: dict[str, tuple[int, ...]]
    compiler: Any  # the SQLCompiler that produced `sql`: its select layout reads the rows
    converters: Any  # the ORM's conversions of each column's database value
    populators: Any  # for model rows: what fills the selected relations


class CompiledQuery:
    """`build(**arguments)` returns the QuerySet; `arguments` name each argument's type (int or str).

    Only exact values may be arguments (an `=` or `IN` of one value): a lookup that transforms its value
    (`contains`, `startswith`) would not carry the marker into the parameters, and compiling refuses it.
    Everything else in the query is fixed at its first run: build no query from the time or the settings."""

    def __init__(self, build: Callable[..., QuerySet[Any]], **arguments: type) -> None:
        self._build = build
        self._markers: dict[str, Any] = {}
        for index, (name, kind) in enumerate(arguments.items()):
            if kind is int:
                self._markers[name] = _INT_MARKER_BASE - index
            elif kind is str:
                self._markers[name] = _STR_MARKER.format(index)
            else:
                raise TypeError(f"argument {name}: int or str, not {kind!r}")
        self._by_alias: dict[str, _Compiled] = {}

    def _compiled(self, using: str) -> _Compiled:
        compiled = self._by_alias.get(using)
        if compiled is None:
            compiler = self._build(**self._markers).query.get_compiler(using=using)
            sql, params = compiler.as_sql()
            positions = {
                name: tuple(i for i, value in enumerate(params) if value == marker)
                for name, marker in self._markers.items()
            }
            missing = [name for name, found in positions.items() if not found]
            if missing:
                raise ValueError(f"arguments {missing} do not reach the compiled parameters unchanged")
            converters = compiler.get_converters([column[0] for column in compiler.select[: compiler.col_count]])
            populators = (
                get_related_populators(compiler.klass_info, compiler.select, using) if compiler.klass_info else []
            )
            compiled = _Compiled(sql, tuple(params), positions, compiler, converters, populators)
            self._by_alias[using] = compiled  # a race compiles twice and keeps either: both are the same
        return compiled

    def sql_with_params(self, using: str = DEFAULT_DB_ALIAS, **values: Any) -> tuple[str, list[Any]]:
        """The SQL and its parameters for these values: to run, or to embed in a larger statement."""
        compiled = self._compiled(using)
        params = list(compiled.params)
        for name, value in values.items():
            for position in compiled.positions[name]:
                params[position] = value
        return compiled.sql, params

    def rows(self, using: str = DEFAULT_DB_ALIAS, **values: Any) -> list[tuple[Any, ...]]:
        """The raw rows (a values_list query's tuples, converted as the ORM converts them)."""
        sql, params = self.sql_with_params(using, **values)
        compiled = self._compiled(using)
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not compiled.converters:
            return rows
        return [tuple(row) for row in compiled.compiler.apply_converters(rows, compiled.converters)]

    def objects(self, using: str = DEFAULT_DB_ALIAS, **values: Any) -> list[Model]:
        """Model instances, with the relations the QuerySet selected (select_related) in place, as the ORM's
        own iteration makes them (django.db.models.query.ModelIterable)."""
        rows = self.rows(using, **values)
        compiled = self._compiled(using)
        klass_info, select = compiled.compiler.klass_info, compiled.compiler.select
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        init_list = [column[0].target.attname for column in select[start:end]]
        model = klass_info["model"]
        made = []
        for row in rows:
            instance = model.from_db(using, init_list, row[start:end])
            for populator in compiled.populators:
                populator.populate(row, instance)
            made.append(instance)
        return made

    def first_object(self, using: str = DEFAULT_DB_ALIAS, **values: Any) -> Model | None:
        return next(itertools.chain(self.objects(using, **values), [None]))


_UPDATES: dict[tuple[type[Model], tuple[str, ...], str], tuple[str, list[Any]]] = {}


def save_fields(instance: Model, fields: tuple[str, ...], using: str = DEFAULT_DB_ALIAS) -> None:
    """`instance.save(update_fields=fields)` with its UPDATE written once per model and set of fields, for
    a hot path's row (the message a change rewrites): Django builds and compiles the statement on every
    save. Values are prepared by each field as the ORM prepares them (JSON, times); no save signals are sent,
    so only for models that have none, and no field's pre_save runs (no auto_now fields here)."""
    key = (type(instance), fields, using)
    prepared = _UPDATES.get(key)
    if prepared is None:
        meta = instance._meta
        columns = [meta.get_field(name) for name in fields]
        quote = connections[using].ops.quote_name
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in columns)
        sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
        prepared = (sql, columns)
        _UPDATES[key] = prepared
    sql, columns = prepared
    connection = connections[using]
    params = [field.get_db_prep_save(getattr(instance, field.attname), connection) for field in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, instance.pk])
