"""`field__any`: the rows of `__in`, with the whole list as one query parameter (PostgreSQL and SQLite)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection


@pytest.mark.django_db
def test_any_matches_the_rows_of_in_with_the_list_as_one_parameter() -> None:
    groups = Group.objects.bulk_create([Group(name=f"lookup-{n}") for n in range(3000)])
    wanted = [group.pk for group in groups[::3]] + [10**9]
    parameters: list[int] = []

    def count_parameters(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        parameters.append(len(params or ()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_parameters):
        found = set(Group.objects.filter(pk__any=wanted).values_list("pk", flat=True))
        assert Group.objects.filter(pk__any=[]).count() == 0
    assert found == set(Group.objects.filter(pk__in=wanted).values_list("pk", flat=True)) == set(wanted[:-1])
    assert parameters == [1, 0]  # the empty list matches nothing, with no parameter at all


@pytest.mark.django_db
def test_any_works_on_a_foreign_key() -> None:
    permission = Permission.objects.first()
    assert permission is not None
    found = Permission.objects.filter(content_type__any=[permission.content_type_id]).values_list("pk", flat=True)
    assert permission.pk in set(found)
