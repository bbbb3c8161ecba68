"""chat_bench uploads: its page-like sessions are accepted where a page's are (CSRF included), its files are
what the server judges them to be, and its classing of deliveries keeps quiet and loaded apart."""

from __future__ import annotations

import io
from array import array
from types import SimpleNamespace

import pytest
from django.test import Client

from bench.uploads import UploadRecord, classify, page_sessions, upload_files
from messaging.file_content import detect_content_type


@pytest.mark.django_db
def test_a_bench_session_authenticates_like_a_page_and_needs_its_csrf_header(django_user_model):
    user = django_user_model.objects.create_user(username="bench-page", password="pw-Secret-123")
    (session,) = page_sessions([user.pk])
    client = Client(enforce_csrf_checks=True)
    cookies = dict(part.split("=", 1) for part in session.cookie.split("; "))
    for name, value in cookies.items():
        client.cookies[name] = value
    assert client.get("/api/auth/me").json()["username"] == "bench-page"
    refused = client.post("/api/rooms", {"title": "x", "max_personnel": 5}, content_type="application/json")
    assert refused.status_code == 403  # a session without the CSRF header is refused, as for a page
    created = client.post(
        "/api/rooms",
        {"title": "x", "max_personnel": 5},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=session.csrf_token,
    )
    assert created.status_code == 201, created.content


def test_the_bench_files_fit_the_limit_and_are_judged_as_their_types(settings):
    files = upload_files(settings.ATTACHMENT_MAX_BYTES)
    assert {f.name: detect_content_type(io.BytesIO(f.data)) for f in files} == {f.name: f.content_type for f in files}
    assert all(settings.ATTACHMENT_MAX_BYTES * 0.85 < len(f.data) <= settings.ATTACHMENT_MAX_BYTES for f in files)


def test_deliveries_are_classed_by_their_send_time_and_the_settling_after_uploads_counts_for_neither():
    # Sent at 1.0 (quiet), 10.5 (during the upload), 12.5 (upload slot, none in flight), 16.0 (settling
    # after the slot that ended at 15.0), 20.0 (quiet again); each took 100 ms.
    sent = [1.0, 10.5, 12.5, 16.0, 20.0]
    report = SimpleNamespace(timeline=array("d", [s + 0.1 for s in sent]), delivery_ms=array("d", [100.0] * 5))
    uploads = [UploadRecord("photo.jpg", 10.0, 11.0, 201)]
    quiet, loaded, by_file = classify([report], uploads, [(10.0, 15.0)], started=0.0, settle=2.0)
    assert (len(quiet), len(loaded)) == (2, 1)
    assert by_file == {"photo.jpg": [100.0]}
