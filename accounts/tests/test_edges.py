"""Throttling, CORS, GraphQL authentication and the users admin."""

from __future__ import annotations

import time

import httpx
import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User

from .conftest import PASSWORD, assert_contract_error, bearer, login

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    """rates(**{"login_ip": "3/min"}): tighter throttle rates for one test."""

    def set_rates(**overrides: str) -> None:
        rest = dict(settings.REST_FRAMEWORK)
        rest["DEFAULT_THROTTLE_RATES"] = {**rest["DEFAULT_THROTTLE_RATES"], **overrides}
        settings.REST_FRAMEWORK = rest

    return set_rates


# --- throttling -----------------------------------------------------------------------------------------
def test_login_is_throttled_per_ip_with_429_rate_limited_and_retry_after(rates, make_user):
    rates(login_ip="3/min", login_username="100/min")
    client = APIClient()
    for i in range(3):
        response = client.post("/api/auth/login", {"username": f"u{i}", "password": "x"}, format="json")
        assert response.status_code == 401
    started = time.monotonic()
    response = client.post("/api/auth/login", {"username": "u9", "password": "x"}, format="json")
    assert time.monotonic() - started < 1.0  # refused at once, no hash, no hang
    body = assert_contract_error(response, 429, "rate_limited")
    assert "Try again in" in body["detail"]
    assert 1 <= int(response["Retry-After"]) <= 60
    # A spoofed X-Forwarded-For does not buy a fresh allowance; another address does.
    spoofed = client.post(
        "/api/auth/login", {"username": "u9", "password": "x"}, format="json", HTTP_X_FORWARDED_FOR="10.1.2.3"
    )
    assert spoofed.status_code == 429
    other = APIClient(REMOTE_ADDR="10.9.9.9")
    assert other.post("/api/auth/login", {"username": "u9", "password": "x"}, format="json").status_code == 401


def test_login_is_throttled_per_username_whatever_the_ip(rates, make_user):
    rates(login_ip="100/min", login_username="2/min")
    make_user("target")
    for i in range(2):
        client = APIClient(REMOTE_ADDR=f"10.0.0.{i + 1}")
        assert (
            client.post("/api/auth/login", {"username": "target", "password": "guess"}, format="json").status_code
            == 401
        )
    fresh_ip = APIClient(REMOTE_ADDR="10.0.0.99")
    response = fresh_ip.post("/api/auth/login", {"username": "TARGET", "password": PASSWORD}, format="json")
    assert_contract_error(response, 429, "rate_limited")
    assert (
        fresh_ip.post("/api/auth/login", {"username": "someone-else", "password": "x"}, format="json").status_code
        == 401
    )


def test_signup_is_throttled_per_ip_and_per_username(rates):
    rates(signup_ip="2/hour", signup_username="100/hour")
    client = APIClient()
    for i in range(2):
        response = client.post("/api/auth/signup", {"username": f"s{i}", "password": PASSWORD}, format="json")
        assert response.status_code == 201
    assert_contract_error(
        client.post("/api/auth/signup", {"username": "s3", "password": PASSWORD}, format="json"), 429, "rate_limited"
    )
    assert not User.objects.filter(username="s3").exists()
    rates(signup_ip="100/hour", signup_username="1/hour")
    APIClient(REMOTE_ADDR="10.0.1.1").post("/api/auth/signup", {"username": "taken", "password": "x"}, format="json")
    response = APIClient(REMOTE_ADDR="10.0.1.2").post(
        "/api/auth/signup", {"username": "taken", "password": PASSWORD}, format="json"
    )
    assert_contract_error(response, 429, "rate_limited")


def test_rate_limits_off_lets_every_attempt_through(rates, settings):
    rates(login_ip="1/min", login_username="1/min")
    settings.RATE_LIMITS_ENABLED = False
    client = APIClient()
    for _ in range(5):
        assert client.post("/api/auth/login", {"username": "a", "password": "b"}, format="json").status_code == 401


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_throttle_counters_are_shared_by_every_process(server_factory):
    env = {"THROTTLE_LOGIN_USERNAME": "3/min", "THROTTLE_LOGIN_IP": "100/min"}
    web1, web2 = server_factory(env=env, name="web1"), server_factory(env=env, name="web2")
    body = {"username": "shared-target", "password": "guess"}
    statuses = [httpx.post(f"{server.http_url}/api/auth/login", json=body).status_code for server in (web1, web2, web1)]
    assert statuses == [401, 401, 401]
    refused = httpx.post(f"{web2.http_url}/api/auth/login", json=body)
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"


# --- CORS -----------------------------------------------------------------------------------------------
def test_cors_headers_go_to_allowed_origins_only(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://spa.example.com"]
    preflight = {"HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST", "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization"}
    client = APIClient()
    for path in ("/api/auth/login", "/graphql"):
        allowed = client.options(path, HTTP_ORIGIN="https://spa.example.com", **preflight)
        assert allowed["Access-Control-Allow-Origin"] == "https://spa.example.com"
        assert allowed["Access-Control-Allow-Credentials"] == "true"
        assert "authorization" in allowed["Access-Control-Allow-Headers"]
        denied = client.options(path, HTTP_ORIGIN="https://evil.example.net", **preflight)
        assert "Access-Control-Allow-Origin" not in denied
    response = client.post(
        "/api/auth/login", {"username": "a", "password": "b"}, format="json", HTTP_ORIGIN="https://evil.example.net"
    )
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.django_db(transaction=True)
def test_cors_allowed_origins_come_from_the_environment(server_factory):
    server = server_factory(env={"CORS_ALLOWED_ORIGINS": "https://spa.example.com,https://admin.example.com"})
    headers = {"Access-Control-Request-Method": "POST"}
    ok = httpx.options(f"{server.http_url}/api/auth/login", headers={"Origin": "https://admin.example.com", **headers})
    assert ok.headers.get("access-control-allow-origin") == "https://admin.example.com"
    no = httpx.options(f"{server.http_url}/api/auth/login", headers={"Origin": "https://evil.example.net", **headers})
    assert "access-control-allow-origin" not in no.headers


# --- GraphQL --------------------------------------------------------------------------------------------
ME_QUERY = {"query": "{ me { id username isStaff } }"}


def test_graphql_bearer_token_authenticates_and_bad_tokens_get_the_rest_codes(make_user):
    user = make_user()
    tokens = login(APIClient(), user)
    client = APIClient()
    ok = client.post("/graphql", ME_QUERY, format="json", **bearer(tokens["access"]))
    assert ok.status_code == 200
    assert ok.json()["data"]["me"] == {"id": user.pk, "username": user.username, "isStaff": False}
    assert client.post("/graphql", ME_QUERY, format="json").json()["data"]["me"] is None
    assert_contract_error(client.post("/graphql", ME_QUERY, format="json", **bearer("garbage")), 401, "token_invalid")
    expired = AccessToken.for_user(user)
    expired["exp"] = int(time.time()) - 60
    assert_contract_error(
        client.post("/graphql", ME_QUERY, format="json", **bearer(str(expired))), 401, "token_expired"
    )
    APIClient().post("/api/auth/logout", {"refresh": tokens["refresh"]}, format="json", **bearer(tokens["access"]))
    revoked = client.post("/graphql", ME_QUERY, format="json", **bearer(tokens["access"]))
    assert_contract_error(revoked, 401, "token_revoked")


def test_graphql_with_a_session_needs_csrf_unless_a_bearer_token_is_used(make_user):
    user = make_user()
    browser = APIClient(enforce_csrf_checks=True)
    tokens = login(browser, user)
    refused = browser.post("/graphql", ME_QUERY, format="json")
    assert_contract_error(refused, 403, "csrf_failed")
    # A non-Bearer Authorization header does not skip the check either.
    refused = browser.post("/graphql", ME_QUERY, format="json", HTTP_AUTHORIZATION="Basic Zm9vOmJhcg==")
    assert_contract_error(refused, 403, "csrf_failed")
    csrf = browser.cookies[django_settings.CSRF_COOKIE_NAME].value
    assert (
        browser.post("/graphql", ME_QUERY, format="json", HTTP_X_CSRFTOKEN=csrf).json()["data"]["me"]["id"] == user.pk
    )
    assert browser.post("/graphql", ME_QUERY, format="json", **bearer(tokens["access"])).status_code == 200


# --- admin ----------------------------------------------------------------------------------------------
@pytest.fixture
def operator(client, make_user):
    admin_user = make_user("operator", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    return client


def test_admin_searches_users_by_username_nickname_and_email(operator, make_user):
    make_user("findme", email="contact@example.org")
    make_user("other", nickname="Quiet")

    def found(q: str) -> set[str]:
        response = operator.get("/admin/accounts/user/", {"q": q})
        return {user.username for user in response.context["cl"].result_list}

    assert found("findme") == {"findme"}
    assert found("quiet") == {"other"}  # the nickname
    assert found("contact@example") == {"findme"}  # the email


def test_admin_deactivate_action_revokes_tokens_and_never_deactivates_oneself(operator, make_user):
    victim = make_user("victim")
    tokens = login(APIClient(), victim)
    me = User.objects.get(username="operator")
    response = operator.post(
        "/admin/accounts/user/",
        {"action": "deactivate_users", "_selected_action": [victim.pk, me.pk], "index": 0, "select_across": 0},
    )
    assert response.status_code == 302
    victim.refresh_from_db()
    me.refresh_from_db()
    assert not victim.is_active and me.is_active
    assert BlacklistedToken.objects.filter(token__user=victim).count() == 1
    assert_contract_error(APIClient().get("/api/auth/me", **bearer(tokens["access"])), 401, "token_revoked")
    assert APIClient().post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json").status_code == 401


def test_unticking_active_in_the_admin_form_goes_through_deactivation(operator, make_user):
    victim = make_user("unticked")
    tokens = login(APIClient(), victim)
    form = {
        "username": victim.username,
        "nickname": "Renamed",
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_staff": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "last_login_0": "",
        "last_login_1": "",
    }  # is_active left out: unticked
    response = operator.post(f"/admin/accounts/user/{victim.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    victim.refresh_from_db()
    assert not victim.is_active and victim.is_staff and victim.nickname == "Renamed"
    assert_contract_error(APIClient().get("/api/auth/me", **bearer(tokens["access"])), 401, "token_revoked")
    # deactivate_user ran (not a plain save): the refresh token is blacklisted, and stays so if reactivated.
    assert BlacklistedToken.objects.filter(token__user=victim).count() == 1


def test_admin_staff_actions_flip_the_staff_flag(operator, make_user):
    user = make_user("promoted")
    operator.post("/admin/accounts/user/", {"action": "grant_staff", "_selected_action": [user.pk], "index": 0})
    user.refresh_from_db()
    assert user.is_staff
    operator.post("/admin/accounts/user/", {"action": "revoke_staff", "_selected_action": [user.pk], "index": 0})
    user.refresh_from_db()
    assert not user.is_staff
