"""The accounts REST API: signup, login, refresh, logout, me, and the contract's error bodies."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import jwt
import pytest
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import aware_utcnow

from accounts import services
from accounts.models import User

from .conftest import PASSWORD, assert_contract_error, bearer, login

pytestmark = pytest.mark.django_db


# --- signup ---------------------------------------------------------------------------------------------
def test_signup_creates_an_ordinary_user_and_never_echoes_the_password(api):
    response = api.post(
        "/api/auth/signup",
        {"username": "newbie", "password": PASSWORD, "email": "newbie@example.com", "nickname": "New"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "username", "nickname", "email"}
    assert body["username"] == "newbie" and body["nickname"] == "New"
    user = User.objects.get(pk=body["id"])
    assert not user.is_staff and not user.is_superuser and user.is_active
    assert user.check_password(PASSWORD)
    assert PASSWORD not in response.content.decode()


@pytest.mark.parametrize(
    "privileged",
    [{"is_staff": True}, {"is_superuser": True}, {"role": "ADMIN"}, {"is_staff": "true", "role": "admin"}],
)
def test_signup_asking_for_staff_superuser_or_a_role_is_refused_and_creates_nobody(api, privileged):
    body = {"username": "climber", "password": PASSWORD, **privileged}
    response = api.post("/api/auth/signup", body, format="json")
    error = assert_contract_error(response, 400, "privileged_field")
    assert set(error["fields"]) == set(privileged)
    assert not User.objects.filter(username="climber").exists()


def test_signup_applies_django_password_validators(api):
    for weak in ["short", "12345678901", "password123", "climber-xyz"]:
        response = api.post("/api/auth/signup", {"username": "climber-xyz", "password": weak}, format="json")
        error = assert_contract_error(response, 400, "validation_error")
        assert "password" in error["fields"], (weak, error)
    assert not User.objects.filter(username="climber-xyz").exists()


def test_signup_refuses_a_taken_username_whatever_its_case(api, make_user):
    make_user("alice")
    response = api.post("/api/auth/signup", {"username": "ALICE", "password": PASSWORD}, format="json")
    assert_contract_error(response, 409, "username_taken")
    assert User.objects.filter(username__iexact="alice").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "username"),
        ({"username": "x1"}, "password"),
        ({"username": 123, "password": PASSWORD}, "username"),
        ({"username": ["a"], "password": PASSWORD}, "username"),
        ({"username": "x2", "password": 12345678}, "password"),
        ({"username": "x" * 151, "password": PASSWORD}, "username"),
        ({"username": "x3", "password": "p" * 257}, "password"),
        ({"username": "x4", "password": PASSWORD, "nickname": "n" * 51}, "nickname"),
        ({"username": "x5", "password": PASSWORD, "email": "not-an-email"}, "email"),
        ({"username": "x6", "password": PASSWORD, "email": {"a": 1}}, "email"),
        ({"username": "bad name!", "password": PASSWORD}, "username"),
    ],
)
def test_signup_bad_fields_are_400_with_the_field_named(api, body, field):
    response = api.post("/api/auth/signup", body, format="json")
    error = assert_contract_error(response, 400, "validation_error")
    assert field in error["fields"], error


@pytest.mark.parametrize("path", ["/api/auth/signup", "/api/auth/login", "/api/auth/refresh"])
@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        ('{"username": ', "application/json", 400, "malformed_request"),
        ("[1, 2]", "application/json", 400, "validation_error"),
        ('"just a string"', "application/json", 400, "validation_error"),
        ("username=a&password=b", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_malformed_bodies_are_4xx_in_the_contract_format(path, raw, content_type, status, code):
    response = APIClient().generic("POST", path, raw, content_type=content_type)
    assert_contract_error(response, status, code)


# --- login and me ---------------------------------------------------------------------------------------
def test_login_returns_tokens_and_user_and_sets_session_and_httponly_cookies(api, make_user):
    user = make_user("bob")
    response = api.post("/api/auth/login", {"username": "bob", "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh", "user"}
    assert body["user"] == {
        "id": user.pk,
        "username": "bob",
        "nickname": "Bob",
        "email": "",
        "is_staff": False,
    }
    session = response.cookies[django_settings.SESSION_COOKIE_NAME]
    assert session.value and session["httponly"]
    refresh_cookie = response.cookies[django_settings.AUTH_REFRESH_COOKIE]
    assert refresh_cookie.value == body["refresh"]
    assert refresh_cookie["httponly"] and refresh_cookie["path"] == "/api/auth/"
    assert refresh_cookie["samesite"] == "Strict"
    assert response.cookies[django_settings.CSRF_COOKIE_NAME].value  # for the pages' forms
    # The session alone now authenticates the pages (and session-cookie WebSockets).
    assert api.get("/api/auth/me").json()["username"] == "bob"


def test_me_answers_the_contract_shape_for_a_bearer_token(make_user):
    user = make_user("carol", email="carol@example.com")
    tokens = login(APIClient(), user)
    response = APIClient().get("/api/auth/me", **bearer(tokens["access"]))
    assert response.status_code == 200
    assert response.json() == {
        "id": user.pk,
        "username": "carol",
        "nickname": "Carol",
        "email": "carol@example.com",
        "is_staff": False,
    }


def test_wrong_password_unknown_user_and_inactive_user_are_the_same_401(api, make_user):
    make_user("dave")
    make_user("ghost", is_active=False)
    for username, password in [("dave", "wrong-password"), ("nobody", PASSWORD), ("ghost", PASSWORD)]:
        response = api.post("/api/auth/login", {"username": username, "password": password}, format="json")
        body = assert_contract_error(response, 401, "invalid_credentials")
        assert body["detail"] == "Wrong username or password."


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "dave"}, {"username": 1, "password": 2}, {"username": "d" * 151, "password": "x"}],
)
def test_login_with_missing_or_wrong_typed_fields_is_400(api, body):
    assert_contract_error(api.post("/api/auth/login", body, format="json"), 400, "validation_error")


def test_me_without_credentials_is_401(api):
    assert_contract_error(api.get("/api/auth/me"), 401, "not_authenticated")


# --- bad tokens -----------------------------------------------------------------------------------------
def _expired_access(user: User) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(from_time=aware_utcnow() - timedelta(minutes=5), lifetime=timedelta(0))
    return str(token)


def _foreign_access(user: User) -> str:
    payload = dict(AccessToken.for_user(user).payload)
    return jwt.encode(payload, "some-other-signing-key-" * 3, algorithm="HS256")


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda user: "not-a-jwt", "token_invalid"),
        (lambda user: "a.b.c", "token_invalid"),
        (lambda user: "x" * 5000, "token_invalid"),
        (_foreign_access, "token_invalid"),
        (_expired_access, "token_expired"),
        (lambda user: str(RefreshToken.for_user(user)), "token_invalid"),  # a refresh token is no access token
    ],
)
def test_bad_access_tokens_are_401_with_their_code(make_user, make_token, code):
    user = make_user()
    response = APIClient().get("/api/auth/me", **bearer(make_token(user)))
    assert_contract_error(response, 401, code)


def test_a_token_of_a_deleted_user_is_401(make_user):
    user = make_user()
    access = str(AccessToken.for_user(user))
    user.delete()
    assert_contract_error(APIClient().get("/api/auth/me", **bearer(access)), 401, "token_invalid")


def test_a_malformed_authorization_header_is_401(make_user):
    response = APIClient().get("/api/auth/me", HTTP_AUTHORIZATION="Bearer a b")
    assert_contract_error(response, 401)


# --- refresh --------------------------------------------------------------------------------------------
def test_refresh_rotates_and_the_rotated_token_refreshes_in_turn(api, make_user):
    tokens = login(api, make_user())
    first = APIClient().post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert first.status_code == 200, first.content
    rotated = first.json()
    assert set(rotated) == {"access", "refresh"} and rotated["refresh"] != tokens["refresh"]
    assert APIClient().get("/api/auth/me", **bearer(rotated["access"])).status_code == 200
    second = APIClient().post("/api/auth/refresh", {"refresh": rotated["refresh"]}, format="json")
    assert second.status_code == 200, second.content
    assert APIClient().get("/api/auth/me", **bearer(second.json()["access"])).status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_its_whole_family_and_no_other(api, make_user):
    user = make_user()
    a = login(api, user)
    other_device = login(APIClient(), user)
    b = APIClient().post("/api/auth/refresh", {"refresh": a["refresh"]}, format="json").json()  # A -> B
    assert APIClient().get("/api/auth/me", **bearer(b["access"])).status_code == 200

    reuse = APIClient().post("/api/auth/refresh", {"refresh": a["refresh"]}, format="json")
    assert_contract_error(reuse, 401, "token_reused")

    # B, the newer token of the same family, is refused too, and so are the family's access tokens.
    again = APIClient().post("/api/auth/refresh", {"refresh": b["refresh"]}, format="json")
    assert again.status_code == 401 and again.json()["code"] in {"token_reused", "token_revoked"}, again.content
    assert_contract_error(APIClient().get("/api/auth/me", **bearer(b["access"])), 401, "token_revoked")
    assert_contract_error(APIClient().get("/api/auth/me", **bearer(a["access"])), 401, "token_revoked")
    # Another login of the same user is another family: untouched.
    assert APIClient().get("/api/auth/me", **bearer(other_device["access"])).status_code == 200
    rotated = APIClient().post("/api/auth/refresh", {"refresh": other_device["refresh"]}, format="json")
    assert rotated.status_code == 200, rotated.content


def test_refresh_reads_the_httponly_cookie_when_the_body_has_none(api, make_user):
    login(api, make_user())  # the client keeps the chattalk_refresh cookie
    first = api.post("/api/auth/refresh", {}, format="json")
    assert first.status_code == 200, first.content
    assert api.cookies[django_settings.AUTH_REFRESH_COOKIE].value == first.json()["refresh"]
    assert api.post("/api/auth/refresh", {}, format="json").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "validation_error"),
        ({"refresh": 42}, 400, "validation_error"),
        ({"refresh": "garbage"}, 401, "token_invalid"),
    ],
)
def test_refresh_with_missing_or_bad_token_is_4xx(body, status, code):
    assert_contract_error(APIClient().post("/api/auth/refresh", body, format="json"), status, code)


def test_refresh_with_an_access_token_or_a_foreign_key_is_refused(make_user):
    user = make_user()
    access = str(AccessToken.for_user(user))
    foreign = jwt.encode(dict(RefreshToken.for_user(user).payload), "another-key-" * 4, algorithm="HS256")
    for raw in (access, foreign):
        assert_contract_error(
            APIClient().post("/api/auth/refresh", {"refresh": raw}, format="json"), 401, "token_invalid"
        )


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_refreshes_of_one_token_give_one_new_pair(make_user):
    user = make_user()
    raw = str(RefreshToken.for_user(user))
    results: list[str] = []
    barrier = threading.Barrier(2)

    def use() -> None:
        barrier.wait()
        try:
            services.refresh(raw)
            results.append("ok")
        except (services.TokenReused, services.TokenInvalid) as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ok", "token_reused"]


# --- logout ---------------------------------------------------------------------------------------------
def test_logout_revokes_the_refresh_token_the_access_token_and_the_session(api, make_user):
    tokens = login(api, make_user())  # api now also holds the session cookie
    response = api.post("/api/auth/logout", {"refresh": tokens["refresh"]}, format="json", **bearer(tokens["access"]))
    assert response.status_code == 204, response.content
    assert_contract_error(
        APIClient().post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json"), 401, "token_reused"
    )
    assert_contract_error(APIClient().get("/api/auth/me", **bearer(tokens["access"])), 401, "token_revoked")
    assert_contract_error(api.get("/api/auth/me"), 401, "not_authenticated")  # the session is over too


def test_logout_of_one_device_leaves_the_others_logged_in(make_user):
    user = make_user()
    phone, laptop = login(APIClient(), user), login(APIClient(), user)
    APIClient().post("/api/auth/logout", {"refresh": phone["refresh"]}, format="json", **bearer(phone["access"]))
    assert APIClient().get("/api/auth/me", **bearer(laptop["access"])).status_code == 200
    assert APIClient().post("/api/auth/refresh", {"refresh": laptop["refresh"]}, format="json").status_code == 200


def test_logout_needs_auth_and_refuses_someone_elses_or_a_bad_refresh_token(make_user):
    alice, bob = make_user(), make_user()
    a, b = login(APIClient(), alice), login(APIClient(), bob)
    assert_contract_error(APIClient().post("/api/auth/logout", {"refresh": a["refresh"]}, format="json"), 401)
    response = APIClient().post("/api/auth/logout", {"refresh": b["refresh"]}, format="json", **bearer(a["access"]))
    assert_contract_error(response, 400, "token_invalid")
    response = APIClient().post("/api/auth/logout", {"refresh": "junk"}, format="json", **bearer(a["access"]))
    assert_contract_error(response, 400, "token_invalid")
    response = APIClient().post("/api/auth/logout", {}, format="json", **bearer(a["access"]))
    assert_contract_error(response, 400, "validation_error")
    # Bob's refresh token survived Alice's attempt.
    assert APIClient().post("/api/auth/refresh", {"refresh": b["refresh"]}, format="json").status_code == 200


def test_logout_twice_with_the_same_refresh_token_is_harmless(make_user):
    user = make_user()
    first, second = login(APIClient(), user), login(APIClient(), user)
    APIClient().post("/api/auth/logout", {"refresh": first["refresh"]}, format="json", **bearer(first["access"]))
    response = APIClient().post(
        "/api/auth/logout", {"refresh": first["refresh"]}, format="json", **bearer(second["access"])
    )
    assert response.status_code == 204


# --- deactivation ---------------------------------------------------------------------------------------
def test_deactivate_user_revokes_every_token_and_session(make_user):
    user = make_user()
    session_client = APIClient()
    tokens = [login(session_client, user), login(APIClient(), user)]
    time.sleep(0.01)
    services.deactivate_user(user=user)
    user.refresh_from_db()
    assert not user.is_active
    for pair in tokens:
        assert_contract_error(APIClient().get("/api/auth/me", **bearer(pair["access"])), 401, "token_revoked")
        response = APIClient().post("/api/auth/refresh", {"refresh": pair["refresh"]}, format="json")
        assert_contract_error(response, 401)
    assert_contract_error(session_client.get("/api/auth/me"), 401, "not_authenticated")
    outstanding = OutstandingToken.objects.filter(user=user).count()
    assert outstanding >= 2
    assert BlacklistedToken.objects.filter(token__user=user).count() == outstanding


def test_a_reactivated_user_can_log_in_again_and_old_tokens_stay_dead(make_user):
    user = make_user()
    old = login(APIClient(), user)
    services.deactivate_user(user=user)
    time.sleep(1.05)  # token iat has one-second resolution: the new login must be after the cutoff
    User.objects.filter(pk=user.pk).update(is_active=True)
    new = login(APIClient(), user)
    assert APIClient().get("/api/auth/me", **bearer(new["access"])).status_code == 200
    assert APIClient().get("/api/auth/me", **bearer(old["access"])).status_code == 401


def test_a_session_logout_needs_csrf_and_then_ends_the_session(make_user):
    browser = APIClient(enforce_csrf_checks=True)
    login(browser, make_user())
    assert_contract_error(browser.post("/api/auth/logout", {}, format="json"), 403)
    csrf = browser.cookies[django_settings.CSRF_COOKIE_NAME].value
    response = browser.post("/api/auth/logout", {}, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 204, response.content
    assert_contract_error(browser.get("/api/auth/me"), 401, "not_authenticated")
    # The refresh cookie was sent along and is blacklisted too.
    assert BlacklistedToken.objects.count() == 1
