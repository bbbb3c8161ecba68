"""The credential re-check of open sockets (accounts.tokens, run by realtime.watch every few seconds on each
process): one query for any number of sockets, and a change marker that every revocation moves so that
most rounds read only the users whose credentials changed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connection
from django.test import RequestFactory

from accounts import services
from accounts.models import User
from accounts.tokens import credential_changes, revoked_sockets
from realtime.auth import SocketAuth
from realtime.watch import SocketSnapshot

from .conftest import PASSWORD


def token_snapshot(user: User) -> SocketSnapshot:
    auth = SocketAuth("token", jti=f"jti-{user.pk}", issued_at=time.time(), generation=0, family=f"fam-{user.pk}")
    return SocketSnapshot(user.pk, auth, None)


@pytest.mark.django_db
def test_the_recheck_of_2000_token_sockets_is_one_query_with_one_parameter_and_finds_the_deactivated_user(
    django_assert_max_num_queries: Any,
) -> None:
    users = User.objects.bulk_create([User(username=f"recheck{n}", password="!") for n in range(2000)])
    User.objects.filter(pk=users[1234].pk).update(is_active=False)  # around the services: only a full round sees it
    snapshots = [token_snapshot(user) for user in users]
    parameters: list[int] = []

    def count_parameters(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        parameters.append(len(params or ()))
        return execute(sql, params, many, context)

    with django_assert_max_num_queries(1), connection.execute_wrapper(count_parameters):
        refused = revoked_sockets(snapshots)
    assert refused == {1234: (4401, "token revoked")}
    assert parameters == [1], "the 2,000 user ids travel as one parameter"


@pytest.mark.django_db
def test_every_revocation_moves_the_change_marker_that_rounds_read_even_when_its_close_event_is_lost(
    make_user: Any, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    monkeypatch.setattr(services, "publish_user_revoked", lambda *args, **kwargs: None)  # every event lost
    untouched, deactivated, new_password, logged_out, reused_family = (make_user() for _ in range(5))
    since = time.time() - 1
    with django_assert_num_queries(1):
        assert credential_changes(since, []).user_ids == set()

    services.deactivate_user(user=deactivated)
    new_password.set_password(PASSWORD + "-new")
    new_password.save()
    request = RequestFactory().post("/api/auth/logout")
    services.logout(request=request, user=logged_out, access={"jti": "abc", "exp": time.time() + 60}, refresh_token=None)
    services.revoke_token_family(user_id=reused_family.pk, family="family-1")

    changed = credential_changes(since, []).user_ids
    assert changed == {deactivated.pk, new_password.pk, logged_out.pk, reused_family.pk}
    assert untouched.pk not in changed
    assert credential_changes(time.time() + 1, []).user_ids == set(), "a later round no longer reads them"
    refused = revoked_sockets([token_snapshot(deactivated), token_snapshot(untouched)])
    assert set(refused) == {0}
