"""CompiledQuery: a fixed-shape read compiled once per database answers exactly as the ORM would, every time."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.compiled import CompiledQuery

pytestmark = pytest.mark.django_db

User = get_user_model()

PERMISSION_WITH_TYPE = CompiledQuery(
    lambda codename, app: Permission.objects.select_related("content_type").filter(
        codename=codename, content_type__app_label=app
    ),
    codename=str,
    app=str,
)


@pytest.fixture(autouse=True)
def permissions() -> None:
    for model in (Group, Permission):
        content_type = ContentType.objects.get_for_model(model)
        for action in ("add", "change", "view"):
            codename = f"{action}_{model._meta.model_name}"
            Permission.objects.get_or_create(codename=codename, content_type=content_type, defaults={"name": codename})


def test_model_rows_come_with_their_selected_relations_as_the_orm_makes_them() -> None:
    expected = Permission.objects.select_related("content_type").get(
        codename="add_group", content_type__app_label="auth"
    )
    with CaptureQueriesContext(connection) as captured:
        found = PERMISSION_WITH_TYPE.first_object(codename="add_group", app="auth")
        assert found is not None
        assert found.content_type.model == "group"  # loaded with the row: no second query
    assert len(captured.captured_queries) == 1
    assert found == expected
    fields = [f.attname for f in Permission._meta.concrete_fields]
    assert [getattr(found, f) for f in fields] == [getattr(expected, f) for f in fields]
    assert found._state.db == "default" and not found._state.adding


def test_each_run_uses_its_own_values_and_a_miss_is_none() -> None:
    for codename in ("add_group", "change_group", "view_permission"):
        found = PERMISSION_WITH_TYPE.first_object(codename=codename, app="auth")
        assert found is not None and found.codename == codename
    assert PERMISSION_WITH_TYPE.first_object(codename="add_group", app="no_such_app") is None


def test_rows_are_converted_as_the_orm_converts_them() -> None:
    user = User.objects.create_user("compiled", password="x")
    user.groups.add(Group.objects.create(name="readers"))
    joined = CompiledQuery(
        lambda user_id: User.objects.filter(pk=user_id).values_list("date_joined", "is_active", "groups__name"),
        user_id=int,
    )
    assert joined.rows(user_id=user.pk) == list(
        User.objects.filter(pk=user.pk).values_list("date_joined", "is_active", "groups__name")
    )
    assert joined.rows(user_id=user.pk + 1000) == []


def test_an_argument_used_twice_is_filled_in_both_places() -> None:
    a = User.objects.create_user("twice-a", password="x")
    User.objects.create_user("twice-b", password="x")
    both = CompiledQuery(
        lambda user_id: User.objects.filter(pk=user_id, id__gte=user_id).values_list("username"), user_id=int
    )
    assert both.rows(user_id=a.pk) == [("twice-a",)]
    sql, params = both.sql_with_params(user_id=a.pk)
    assert params == [a.pk, a.pk] and sql.count("%s") == 2


def test_an_argument_whose_lookup_transforms_its_value_is_refused() -> None:
    contains = CompiledQuery(lambda name: User.objects.filter(username__contains=name), name=str)
    with pytest.raises(ValueError, match="name"):
        contains.rows(name="x")


def test_only_int_and_str_arguments_are_accepted() -> None:
    with pytest.raises(TypeError):
        CompiledQuery(lambda when: User.objects.filter(date_joined=when), when=float)


def test_save_fields_writes_only_the_named_fields_as_the_orm_would() -> None:
    from django.utils import timezone

    from core.compiled import save_fields

    user = User.objects.create_user("saved", password="x", first_name="Old", last_name="Kept")
    stale = User.objects.get(pk=user.pk)
    user.first_name, user.last_login, user.last_name = "New", timezone.now(), "not saved"
    with CaptureQueriesContext(connection) as captured:
        save_fields(user, ("first_name", "last_login"))
    assert len(captured.captured_queries) == 1
    stored = User.objects.get(pk=user.pk)
    assert (stored.first_name, stored.last_login, stored.last_name) == ("New", user.last_login, "Kept")
    stale.first_name = "Again"
    save_fields(stale, ("first_name", "last_login"))  # the same statement, another row's values
    assert User.objects.get(pk=user.pk).last_login == stale.last_login is None
