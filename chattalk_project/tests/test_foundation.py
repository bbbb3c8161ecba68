"""Settings from the environment, health and readiness, and the contract's error format."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from django.test import Client, override_settings

from core.testing import BASE_DIR, free_port


def settings_under(env: dict[str, str]) -> dict:
    """Load the settings module in a fresh interpreter with exactly this environment (plus PATH)."""
    script = (
        "import json, django; from django.conf import settings; django.setup();"
        "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'],"
        "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'],"
        "'cache': settings.CACHES['default']['BACKEND'],"
        "'presence': settings.PRESENCE_BACKEND, 'kafka': settings.KAFKA_BOOTSTRAP_SERVERS,"
        "'debug': settings.DEBUG, 'json_logs': settings.LOGGING['handlers']['console']['formatter']}))"
    )
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "chattalk_project.settings"}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=BASE_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        return {"error": result.stderr}
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_with_no_service_variables_everything_is_embedded():
    found = settings_under({})
    assert found == {
        "db": "django.db.backends.sqlite3",
        "layer": "channels.layers.InMemoryChannelLayer",
        "cache": "django.core.cache.backends.locmem.LocMemCache",
        "presence": "orm",
        "kafka": "",
        "debug": True,
        "json_logs": "text",
    }


def test_each_service_variable_switches_its_own_backend():
    assert settings_under({"DATABASE_URL": "postgres://u:p@db:5432/x"})["db"] == "django.db.backends.postgresql"
    redis = settings_under({"REDIS_URL": "redis://cache:6379/0"})
    assert (redis["layer"], redis["cache"]) == (
        "channels_redis.core.RedisChannelLayer",
        "django_redis.cache.RedisCache",
    )
    assert settings_under({"MONGODB_URI": "mongodb://m:27017/x"})["presence"] == "mongo"
    assert settings_under({"KAFKA_BOOTSTRAP_SERVERS": "k:9092"})["kafka"] == "k:9092"
    assert settings_under({"LOG_FORMAT": "json"})["json_logs"] == "json"


def test_debug_off_requires_a_secret_key():
    refused = settings_under({"DEBUG": "0"})
    assert "SECRET_KEY must be set" in refused["error"]
    assert settings_under({"DEBUG": "0", "SECRET_KEY": "x" * 50})["debug"] is False
    assert "must be a boolean" in settings_under({"DEBUG": "maybe"})["error"]


def test_system_checks_report_settings_that_cannot_work():
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "manage.py", "check"],
        cwd=BASE_DIR,
        env={
            "PATH": os.environ["PATH"],
            "PRESENCE_BACKEND": "mongo",
            "PRESENCE_TIMEOUT_SECONDS": "5",
            "PRESENCE_HEARTBEAT_SECONDS": "10",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "chattalk.E002" in result.stderr and "chattalk.E003" in result.stderr


def test_a_replica_url_beside_an_embedded_database_is_refused_by_the_system_checks():
    """A streaming replica is a copy of a PostgreSQL primary: beside SQLite it cannot be one."""
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "manage.py", "check"],
        cwd=BASE_DIR,
        env={"PATH": os.environ["PATH"], "DATABASE_REPLICA_URL": "postgres://postgres@127.0.0.1:5433/chattalk"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "chattalk.E009" in result.stderr


@pytest.mark.django_db
def test_healthz_answers_and_readyz_names_each_configured_service(client: Client):
    assert client.get("/healthz").json() == {"status": "ok"}
    body = client.get("/readyz").json()
    assert body["services"]["database"]["state"] == "up"
    assert "pending" in body["outbox"]


@pytest.mark.django_db
def test_readyz_reports_a_stopped_service_as_down_with_503(client: Client):
    closed = free_port()
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{closed}/0"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["services"]["redis"]["state"] == "down"
    assert "error" in body["services"]["redis"]


@pytest.mark.django_db
def test_readyz_reports_kafka_away_as_degraded_not_down(client: Client):
    closed = free_port()
    with override_settings(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed}", REDIS_URL=""):
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["services"]["kafka"]["state"] == "degraded"


@pytest.mark.django_db
def test_a_validation_error_has_code_detail_and_fields(client: Client, django_user_model):
    from rest_framework_simplejwt.tokens import AccessToken

    user = django_user_model.objects.create_user(username="v", password="pw-Secret-123")
    response = client.post(
        "/api/rooms/1/read",
        data=json.dumps({"seq": "soon"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error" and body["detail"]
    assert list(body["fields"]) == ["seq"]


@pytest.mark.django_db
def test_malformed_json_is_a_4xx_in_the_contract_format(client: Client, django_user_model):
    from rest_framework_simplejwt.tokens import AccessToken

    user = django_user_model.objects.create_user(username="m", password="pw-Secret-123")
    response = client.post(
        "/api/rooms/1/read",
        data="{nope",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


@pytest.mark.django_db
def test_an_unknown_api_path_is_a_json_404(client: Client):
    response = client.get("/api/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "Not found."}


@pytest.mark.django_db
def test_unauthenticated_api_calls_get_401_in_the_contract_format(client: Client):
    response = client.get("/api/rooms/1/messages")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="chattalk_project.tests.urls_for_errors", DEBUG=False)
@pytest.mark.parametrize("path", ["/api/boom-drf", "/api/boom-django"])
def test_an_unhandled_exception_is_a_json_500_without_traceback(path: str):
    client = Client(raise_request_exception=False)
    response = client.get(path)
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "server_error"
    assert "secret internals" not in response.content.decode()
    assert "Traceback" not in response.content.decode()


@pytest.mark.django_db
def test_the_home_page_and_static_files_are_served(live_server_process):
    import urllib.request

    with urllib.request.urlopen(f"{live_server_process.http_url}/") as response:
        assert response.status == 200
        assert b"ChatTalk" in response.read()
    with urllib.request.urlopen(f"{live_server_process.http_url}/static/css/chattalk.css") as response:
        assert response.status == 200


def test_every_response_carries_a_request_id(client: Client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    assert len(client.get("/healthz")["X-Request-ID"]) == 12


def test_json_log_lines_carry_the_request_id():
    import logging

    from core.request_id import JsonFormatter, RequestIdFilter, current_request_id

    token = current_request_id.set("req-42")
    try:
        record = logging.LogRecord("chattalk", logging.INFO, __file__, 1, "sent %s", ("hello",), None)
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        current_request_id.reset(token)
    assert line["request_id"] == "req-42" and line["message"] == "sent hello" and line["level"] == "INFO"


def test_a_run_asked_to_use_a_service_that_is_down_fails_loudly_instead_of_skipping():
    closed = free_port()
    # Inside the project (var/ is git-ignored) so that the project's conftest.py applies to it.
    tmp_path = BASE_DIR / "var" / f"loud-failure-{closed}"
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "test_needs_redis.py").write_text(
        "import pytest\n\n@pytest.mark.redis\ndef test_uses_redis():\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI"}}
    env.pop("DATABASE_URL", None)
    env["REDIS_URL"] = f"redis://127.0.0.1:{closed}/0"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", str(tmp_path)],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"redis at 127.0.0.1:{closed}" in result.stdout + result.stderr


def test_a_forged_host_header_is_a_400_logged_in_one_line(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="django.security.DisallowedHost"):
        response = Client().get("/healthz", HTTP_HOST="k~hvx")
    assert response.status_code == 400
    records = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert records and all(r.exc_info is None for r in records)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        '{"username": "a\\u0000b", "password": "x"}',
        '{"username": "alice", "password": "x", "extra": ["ok", {"k\\u0000": 1}]}',
    ],
)
def test_a_nul_character_anywhere_in_a_json_body_is_a_400_not_a_database_error(body: str):
    # PostgreSQL text cannot hold NUL: before the parser refused it, a login with one was a 500.
    response = Client().post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


@pytest.mark.django_db
def test_a_database_that_is_busy_or_away_answers_503_unavailable_not_500(monkeypatch):
    """A login storm can hold every pooled connection past DATABASE_POOL_TIMEOUT; the client retries."""
    from django.db import OperationalError
    from rest_framework.test import APIClient

    from accounts.models import User
    from rooms import api as rooms_api

    def pool_exhausted(*args, **kwargs):
        raise OperationalError("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr(rooms_api.services, "search_rooms", pool_exhausted)
    client = APIClient()
    client.force_authenticate(User.objects.create_user(username="busy", password="pw-Secret-123"))
    response = client.get("/api/rooms")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable" and response["Retry-After"] == "1"


def test_redis_sentinels_make_the_layer_and_the_cache_ask_the_sentinels_for_the_primary_and_read_only_from_it():
    script = (
        "import json, django; from django.conf import settings; django.setup();"
        "host = settings.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0];"
        "options = settings.CACHES['default']['OPTIONS'];"
        "print(json.dumps({'layer': {k: host.get(k) for k in ('master_name', 'sentinels', 'db', 'address')},"
        "'factory': options.get('CONNECTION_FACTORY'), 'client': options.get('CLIENT_CLASS'),"
        "'cache_sentinels': options.get('SENTINELS'), 'location': settings.CACHES['default']['LOCATION']}))"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "chattalk_project.settings",
        "REDIS_URL": "redis://chattalk/3",
        "REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380",
    }
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    sentinels = [["10.0.0.1", 26379], ["10.0.0.2", 26380]]
    assert found["layer"] == {"master_name": "chattalk", "sentinels": sentinels, "db": 3, "address": None}
    assert found["factory"] == "django_redis.pool.SentinelConnectionFactory"
    assert found["client"] is None  # django-redis' SentinelClient would read the denylist from a lagging replica
    assert (found["cache_sentinels"], found["location"]) == (sentinels, "redis://chattalk/3")


def test_transaction_pooling_turns_off_server_side_cursors_and_prepared_statements():
    script = (
        "import json, django; from django.conf import settings; django.setup();"
        "db = settings.DATABASES['default'];"
        "print(json.dumps([db.get('DISABLE_SERVER_SIDE_CURSORS', False), 'prepare_threshold' in db['OPTIONS'],"
        " db['OPTIONS'].get('prepare_threshold')]))"
    )
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "chattalk_project.settings"}
    url = {"DATABASE_URL": "postgres://u:p@pgbouncer:6432/x"}

    def found(env: dict[str, str]) -> list[object]:
        result = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", script],
            cwd=BASE_DIR,
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(result.stdout.strip().splitlines()[-1])

    assert found({**url, "DATABASE_TRANSACTION_POOLING": "1"}) == [True, True, None]
    assert found(url) == [False, False, None]
