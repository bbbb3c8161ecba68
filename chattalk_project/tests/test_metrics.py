"""/metrics: Prometheus text format, per-process socket and delivery figures, the latency histogram, the
outbox backlog and presence state; served only with the token, or to a direct loopback caller."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone

from core.metrics import CONTENT_TYPE
from core.testing import free_port
from events.models import OutboxEvent
from events.services import record_event
from messaging.testing import ChatClient
from presence.testing import PresenceClient

from .security_support import http, make_cast, parse_prometheus, sample

EXPECTED_FAMILIES = {
    "chattalk_open_sockets": "gauge",
    "chattalk_messages_total": "counter",
    "chattalk_deliveries_total": "counter",
    "chattalk_send_to_delivery_seconds": "histogram",
    "chattalk_outbox_pending": "gauge",
    "chattalk_outbox_oldest_age_seconds": "gauge",
    "chattalk_presence_degraded": "gauge",
    "chattalk_presence_backend_info": "gauge",
}


@pytest.mark.django_db
def test_metrics_are_valid_prometheus_text_with_every_promised_family() -> None:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE
    parsed = parse_prometheus(response.content.decode())
    for family, kind in EXPECTED_FAMILIES.items():
        assert parsed["types"].get(family) == kind, family
    assert sample(parsed, "chattalk_open_sockets", kind="chat") == 0
    assert sample(parsed, "chattalk_open_sockets", kind="presence") == 0
    assert sample(parsed, "chattalk_send_to_delivery_seconds_bucket", le="+Inf") == sample(
        parsed, "chattalk_send_to_delivery_seconds_count"
    )


@pytest.mark.django_db
def test_outbox_backlog_and_its_age_are_reported() -> None:
    OutboxEvent.objects.all().delete()
    with transaction.atomic():
        for _ in range(3):
            record_event("room.created", room_id=None, data={}, occurred_at=timezone.now() - timedelta(seconds=90))
    parsed = parse_prometheus(Client().get("/metrics").content.decode())
    assert sample(parsed, "chattalk_outbox_pending") == 3
    assert 89 <= sample(parsed, "chattalk_outbox_oldest_age_seconds") < 600
    assert sample(parsed, "chattalk_outbox_readable") == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 404),
        ({"HTTP_AUTHORIZATION": "Bearer wrong-token"}, 404),
        ({"HTTP_AUTHORIZATION": "Basic s3cret-metrics-token"}, 404),
        ({"HTTP_AUTHORIZATION": "Bearer s3cret-metrics-token"}, 200),
        # The token also serves a caller that is not local (the scraper on another machine).
        ({"HTTP_AUTHORIZATION": "Bearer s3cret-metrics-token", "REMOTE_ADDR": "10.1.2.3"}, 200),
    ],
)
def test_with_a_token_only_that_bearer_token_reads_metrics(headers: dict[str, str], status: int) -> None:
    with override_settings(METRICS_TOKEN="s3cret-metrics-token"):
        response = Client().get("/metrics", **headers)
    assert response.status_code == status
    if status == 404:
        assert response.json()["code"] == "not_found"
        assert b"chattalk_" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("meta", "status"),
    [
        ({"REMOTE_ADDR": "127.0.0.1"}, 200),
        ({"REMOTE_ADDR": "::1"}, 200),
        ({"REMOTE_ADDR": "10.1.2.3"}, 404),
        ({"REMOTE_ADDR": "192.168.0.7"}, 404),
        # Through a proxy on the same host every client looks local: a proxied request is refused.
        ({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, 404),
        ({"REMOTE_ADDR": "127.0.0.1", "HTTP_FORWARDED": "for=203.0.113.9"}, 404),
        ({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_REAL_IP": "203.0.113.9"}, 404),
    ],
)
def test_without_a_token_only_a_direct_loopback_caller_reads_metrics(meta: dict[str, str], status: int) -> None:
    with override_settings(METRICS_TOKEN=""):
        response = Client().get("/metrics", **meta)
    assert response.status_code == status


@pytest.mark.django_db
def test_metrics_refuse_other_methods() -> None:
    assert Client().post("/metrics").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_a_real_process_counts_its_sockets_messages_deliveries_and_latency(server_factory) -> None:
    server = server_factory()
    cast = make_cast()
    room = cast.room

    def scrape() -> dict:
        status, headers, body = http("GET", f"{server.http_url}/metrics")
        assert status == 200 and headers["content-type"] == CONTENT_TYPE
        return parse_prometheus(body.decode())

    before = scrape()
    assert sample(before, "chattalk_open_sockets", kind="chat") == 0

    async def scenario() -> dict:
        owner = await ChatClient(server.ws_url, room.pk, cast.token(cast.owner)).connect()
        member = await ChatClient(server.ws_url, room.pk, cast.token(cast.member)).connect()
        watcher = await PresenceClient(server.ws_url, room.pk, cast.token(cast.member)).connect()
        await watcher.wait_until(lambda c: bool(c.of_type("presence.snapshot")))
        for i in range(3):
            await owner.send_message(f"m{i}", str(uuid.uuid4()))
        for client in (owner, member):
            await client.wait_until(lambda c: len(c.messages()) == 3)
        during = await asyncio.to_thread(scrape)
        for client in (owner, member, watcher):
            await client.close()
        return during

    during = asyncio.run(scenario())
    assert sample(during, "chattalk_open_sockets", kind="chat") == 2
    assert sample(during, "chattalk_open_sockets", kind="presence") == 1
    assert sample(during, "chattalk_hub_rooms") == 1
    assert sample(during, "chattalk_messages_total") - sample(before, "chattalk_messages_total") == 3
    assert sample(during, "chattalk_deliveries_total") - sample(before, "chattalk_deliveries_total") == 6
    count = sample(during, "chattalk_send_to_delivery_seconds_count")
    assert count - sample(before, "chattalk_send_to_delivery_seconds_count") == 3
    # Delivered on the same machine within a couple of seconds of being stored.
    assert sample(during, "chattalk_send_to_delivery_seconds_bucket", le="2.5") == count
    assert 0 < sample(during, "chattalk_send_to_delivery_seconds_sum") < 3 * 2.5
    assert sample(during, "chattalk_presence_degraded") == 0
    assert sample(during, "chattalk_outbox_pending") >= 0

    after = scrape()
    for _ in range(50):  # the server handles the closes asynchronously
        if sample(after, "chattalk_open_sockets", kind="chat") == 0:
            break
        asyncio.run(asyncio.sleep(0.1))
        after = scrape()
    assert sample(after, "chattalk_open_sockets", kind="chat") == 0
    assert sample(after, "chattalk_open_sockets", kind="presence") == 0


@pytest.mark.django_db(transaction=True)
def test_a_real_process_with_a_token_refuses_a_local_scrape_without_it(server_factory) -> None:
    server = server_factory(env={"METRICS_TOKEN": "tok-" + uuid.uuid4().hex})
    token = server.extra_env["METRICS_TOKEN"]
    assert http("GET", f"{server.http_url}/metrics")[0] == 404
    assert http("GET", f"{server.http_url}/metrics", token="nope")[0] == 404
    status, _, body = http("GET", f"{server.http_url}/metrics", token=token)
    assert status == 200
    parse_prometheus(body.decode())


@pytest.mark.django_db(transaction=True)
def test_presence_store_away_shows_as_degraded_while_chat_goes_on(server_factory) -> None:
    """The presence tracker's own state (not a guess): a MongoDB that does not answer makes it degraded."""
    dead_mongo = f"mongodb://127.0.0.1:{free_port()}/chattalk_nowhere"
    server = server_factory(env={"PRESENCE_BACKEND": "mongo", "MONGODB_URI": dead_mongo})
    cast = make_cast()

    def scrape() -> dict:
        status, _headers, body = http("GET", f"{server.http_url}/metrics")
        assert status == 200
        return parse_prometheus(body.decode())

    assert sample(scrape(), "chattalk_presence_degraded") == 0
    assert sample(scrape(), "chattalk_presence_backend_info", backend="mongo") == 1

    async def scenario() -> dict:
        client = await ChatClient(server.ws_url, cast.room.pk, cast.token(cast.member)).connect()
        client_id = await client.send_message("chat works without presence")
        await client.wait_until(lambda c: any(m["client_id"] == client_id for m in c.messages()))
        found = await asyncio.to_thread(scrape)
        for _ in range(100):  # the store's timeout is 2 s
            if sample(found, "chattalk_presence_degraded") == 1:
                break
            await asyncio.sleep(0.1)
            found = await asyncio.to_thread(scrape)
        await client.close()
        return found

    found = asyncio.run(scenario())
    assert sample(found, "chattalk_presence_degraded") == 1
    assert sample(found, "chattalk_presence_degraded_seconds") >= 0
