"""With DEBUG off: secure cookies, HSTS, no debug pages, static files still served by the ASGI app, and
`manage.py check --deploy` clean except for the warnings the README explains."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys

import pytest

from core.testing import BASE_DIR

from .security_support import PASSWORD, http, make_user

# The deployment the check is run for: PostgreSQL and Redis (several processes), a real host name.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "DATABASE_URL": "postgres://chattalk:pw@db.internal:5432/chattalk",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "ALLOWED_HOSTS": "chat.example.com",
}
# What `check --deploy` still says, each explained in README "Security and operations". Anything else
# appearing (or one of these disappearing) means README and this list must be revisited together.
DOCUMENTED_DEPLOY_WARNINGS = {
    "security.W008",  # SECURE_SSL_REDIRECT off by default: TLS ends at the balancer, which redirects
    "security.W021",  # SECURE_HSTS_PRELOAD off by default: preloading is an operator's opt-in
}


def run_django(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "chattalk_project.settings"}
    return subprocess.run(
        [sys.executable, "-W", "ignore", *args],
        cwd=BASE_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_only_the_documented_warnings() -> None:
    result = run_django(["manage.py", "check", "--deploy", "--fail-level", "ERROR"], PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    ids = set(re.findall(r"\(([a-z_]+\.[EW]\d{3})\)", output))
    assert not {i for i in ids if ".E" in i}, output
    # drf-spectacular's schema warnings (a view whose OpenAPI shape it must guess) count too: none expected.
    assert ids == DOCUMENTED_DEPLOY_WARNINGS, output
    readme = (BASE_DIR / "README.md").read_text()
    for warning in DOCUMENTED_DEPLOY_WARNINGS:
        assert warning in readme, f"README does not explain {warning}"


def test_check_deploy_with_ssl_redirect_and_preload_on_is_clean() -> None:
    env = {**PRODUCTION_ENV, "SECURE_SSL_REDIRECT": "1", "SECURE_HSTS_PRELOAD": "1"}
    result = run_django(["manage.py", "check", "--deploy"], env)
    ids = set(re.findall(r"\(([a-z_]+\.[EW]\d{3})\)", result.stdout + result.stderr))
    assert not ids, result.stdout + result.stderr


def test_debug_off_turns_on_secure_cookies_hsts_and_no_debug_pages() -> None:
    script = (
        "import json, django; from django.conf import settings; django.setup();"
        "names = ['DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY',"
        "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_CONTENT_TYPE_NOSNIFF', 'X_FRAME_OPTIONS'];"
        "out = {n: getattr(settings, n) for n in names};"
        "out['renderers'] = settings.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'];"
        "print(json.dumps(out))"
    )
    result = run_django(["-c", script], PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["DEBUG"] is False
    assert found["SESSION_COOKIE_SECURE"] is True and found["CSRF_COOKIE_SECURE"] is True
    assert found["SESSION_COOKIE_HTTPONLY"] is True
    assert found["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600 and found["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert found["SECURE_CONTENT_TYPE_NOSNIFF"] is True and found["X_FRAME_OPTIONS"] == "DENY"
    # The browsable API is a DEBUG convenience only.
    assert found["renderers"] == ["rest_framework.renderers.JSONRenderer"]


@pytest.mark.django_db(transaction=True)
def test_a_debug_off_server_shows_no_debug_page_serves_static_files_and_sets_secure_headers(server_factory) -> None:
    server = server_factory(env={"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(64), "METRICS_TOKEN": ""})
    base = server.http_url

    status, headers, body = http("GET", f"{base}/no/such/page/")
    assert status == 404
    text = body.decode(errors="replace")
    for debug_marker in ("Traceback", "URLconf", "Django tried these URL patterns", "DEBUG = True", "technical"):
        assert debug_marker not in text
    status, headers, body = http("GET", f"{base}/api/no-such-endpoint")
    assert status == 404 and json.loads(body)["code"] == "not_found"
    status, headers, body = http("POST", f"{base}/api/rooms", raw=b"{not json", token="x")
    assert status in {400, 401} and b"Traceback" not in body

    # Static files are served by the ASGI app itself with DEBUG off (no separate web server needed).
    status, headers, body = http("GET", f"{base}/static/css/chattalk.css")
    assert status == 200, body[:200]
    assert headers["content-type"].startswith("text/css")
    assert body == (BASE_DIR / "static" / "css" / "chattalk.css").read_bytes()
    assert http("GET", f"{base}/static/css/no-such-file.css")[0] == 404

    # HSTS on requests that arrived over TLS at the balancer; never on plain HTTP (browsers ignore it there).
    status, headers, _ = http("GET", f"{base}/healthz", headers={"X-Forwarded-Proto": "https"})
    assert status == 200
    hsts = headers.get("strict-transport-security", "")
    assert "max-age=31536000" in hsts and "includeSubDomains" in hsts
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("x-frame-options") == "DENY"

    # Login sets its cookies Secure and HttpOnly.
    user = make_user("cookie")
    status, headers, _ = http(
        "POST",
        f"{base}/api/auth/login",
        body={"username": user.username, "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert status == 200
    raw_cookies = [v for k, v in _all_headers(base, user.username) if k.lower() == "set-cookie"]
    assert raw_cookies, "login sets cookies"
    for cookie in raw_cookies:
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert "secure" in flags, cookie
        if not cookie.lower().startswith("csrftoken="):
            assert "httponly" in flags, cookie

    # The browsable API's HTML is off: an HTML Accept still gets JSON.
    status, headers, _ = http("GET", f"{base}/api/rooms", headers={"Accept": "text/html"})
    assert status in {401, 406} and "text/html" not in headers.get("content-type", "")


def _all_headers(base: str, username: str) -> list[tuple[str, str]]:
    """Every header of a login answer, repeated ones included (a dict would keep one Set-Cookie)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(
            "POST",
            "/api/auth/login",
            body=json.dumps({"username": username, "password": PASSWORD}),
            headers={"Content-Type": "application/json", "X-Forwarded-Proto": "https"},
        )
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        return response.getheaders()
    finally:
        connection.close()
