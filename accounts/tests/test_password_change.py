"""A new password ends everything the user held before it, whichever path set it: the admin's password
form, set_password + save anywhere, `manage.py changepassword`, POST /api/auth/password. (The sockets:
test_sockets.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User

from .conftest import PASSWORD, assert_contract_error, bearer, login

NEW_PASSWORD = "Brand-New-Battery-77"


def assert_everything_before_is_refused(tokens: dict[str, Any], session_client: APIClient) -> None:
    refresh = APIClient().post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert_contract_error(refresh, 401, "token_revoked")
    assert_contract_error(APIClient().get("/api/auth/me", **bearer(tokens["access"])), 401, "token_revoked")
    # The session the old login started is over as well.
    assert_contract_error(session_client.get("/api/auth/me"), 401, "not_authenticated")


def assert_the_new_password_works_at_once(user: User) -> None:
    """No second-resolution cutoff: a login in the same second as the change gets tokens that work."""
    fresh = login(APIClient(), user, NEW_PASSWORD)
    assert APIClient().get("/api/auth/me", **bearer(fresh["access"])).status_code == 200
    assert APIClient().post("/api/auth/refresh", {"refresh": fresh["refresh"]}, format="json").status_code == 200


def test_a_password_set_in_the_admin_form_revokes_every_token_and_session_issued_before(make_user):
    operator = make_user("operator", is_staff=True, is_superuser=True)
    victim = make_user()
    device = APIClient()
    tokens = login(device, victim)
    other_device = login(APIClient(), victim)
    admin = Client()
    admin.force_login(operator)

    response = admin.post(
        f"/admin/accounts/user/{victim.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )

    assert response.status_code == 302, response.content[:2000]
    assert_everything_before_is_refused(tokens, device)
    assert_contract_error(APIClient().get("/api/auth/me", **bearer(other_device["access"])), 401, "token_revoked")
    assert_the_new_password_works_at_once(victim)
    assert admin.get("/admin/accounts/user/").status_code == 200  # the operator's own session is untouched


def test_set_password_and_a_save_of_only_the_password_field_revoke_while_other_saves_do_not(make_user):
    user = make_user()
    device = APIClient()
    tokens = login(device, user)
    user.nickname = "Renamed"
    user.save()
    user.last_name = "Other"
    user.save(update_fields=["last_name"])
    assert APIClient().get("/api/auth/me", **bearer(tokens["access"])).status_code == 200
    assert device.get("/api/auth/me").status_code == 200

    user.set_password(NEW_PASSWORD)
    user.save(update_fields=["password"])

    assert_everything_before_is_refused(tokens, device)
    assert_the_new_password_works_at_once(user)


def test_manage_py_changepassword_revokes_too(make_user, monkeypatch):
    user = make_user()
    device = APIClient()
    tokens = login(device, user)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", user.username, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert_everything_before_is_refused(tokens, device)
    assert_the_new_password_works_at_once(user)


# --- POST /api/auth/password --------------------------------------------------------------------------
def test_the_rest_password_change_revokes_everything_else_and_answers_a_fresh_pair(make_user):
    user = make_user()
    device = APIClient()
    tokens = login(device, user)
    caller = APIClient()
    mine = login(caller, user)

    response = caller.post(
        "/api/auth/password",
        {"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
        **bearer(mine["access"]),
    )

    assert response.status_code == 200, response.content
    fresh = response.json()
    assert set(fresh) == {"access", "refresh"}
    assert_everything_before_is_refused(tokens, device)
    assert_contract_error(APIClient().get("/api/auth/me", **bearer(mine["access"])), 401, "token_revoked")
    assert APIClient().get("/api/auth/me", **bearer(fresh["access"])).status_code == 200
    assert APIClient().post("/api/auth/refresh", {"refresh": fresh["refresh"]}, format="json").status_code == 200
    assert_the_new_password_works_at_once(user)


def test_the_rest_password_change_from_a_session_keeps_that_session(make_user):
    user = make_user()
    browser = APIClient(enforce_csrf_checks=True)
    login(browser, user)
    csrf = browser.cookies["csrftoken"].value
    response = browser.post(
        "/api/auth/password",
        {"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
        HTTP_X_CSRFTOKEN=csrf,
    )
    assert response.status_code == 200, response.content
    assert browser.get("/api/auth/me").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"old_password": "Wrong-Password-1", "new_password": NEW_PASSWORD}, "old_password"),
        ({"old_password": PASSWORD, "new_password": "123"}, "new_password"),
        ({"old_password": PASSWORD}, "new_password"),
        ({"old_password": 7, "new_password": NEW_PASSWORD}, "old_password"),
    ],
)
def test_the_rest_password_change_refuses_a_wrong_current_or_weak_new_password_and_changes_nothing(
    make_user, body, field
):
    user = make_user()
    tokens = login(APIClient(), user)
    response = APIClient().post("/api/auth/password", body, format="json", **bearer(tokens["access"]))
    assert field in assert_contract_error(response, 400, "validation_error")["fields"]
    assert APIClient().get("/api/auth/me", **bearer(tokens["access"])).status_code == 200
    login(APIClient(), user)  # the old password still works


def test_the_rest_password_change_needs_authentication_and_is_throttled_per_user(make_user, settings):
    assert_contract_error(
        APIClient().post("/api/auth/password", {"old_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"),
        401,
    )
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "password_change_user": "3/hour",
        },
    }
    tokens = login(APIClient(), make_user())
    wrong = {"old_password": "Wrong-Password-1", "new_password": NEW_PASSWORD}
    for _ in range(3):
        assert (
            APIClient().post("/api/auth/password", wrong, format="json", **bearer(tokens["access"])).status_code == 400
        )
    throttled = APIClient().post("/api/auth/password", wrong, format="json", **bearer(tokens["access"]))
    assert_contract_error(throttled, 429, "rate_limited")
