"""Attachments through REST, on the file system store and on an S3-compatible one (moto in server mode):
upload rules (type by content, size, image bombs, names), send and read, signed downloads, removal."""

from __future__ import annotations

import io
import struct
import sys
import uuid
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from django.core.files.storage import default_storage, storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from PIL import ExifTags, Image
from rest_framework_simplejwt.tokens import AccessToken
from storages.backends.s3 import S3Storage

from core.testing import OwnServiceProcess, free_port
from events.models import OutboxEvent
from messaging.attachments import signed_url
from messaging.file_content import is_plain_text
from messaging.models import Attachment, Message
from rooms.services import leave_room

pytestmark = pytest.mark.django_db


# --- stores -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_s3() -> Any:
    """A local S3-compatible server for the session: moto in server mode on a free port."""
    port = free_port()
    server = OwnServiceProcess(
        "moto", [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port
    ).start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=["filesystem", "s3"])
def store(request: Any, settings: Any, tmp_path: Path) -> str:
    """Each test that takes `store` runs on the local file system and on S3 (a fresh bucket)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    if request.param == "s3":
        endpoint = request.getfixturevalue("moto_s3")
        bucket = f"chattalk-{uuid.uuid4().hex[:12]}"
        options = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}
        boto3.client("s3", **options).create_bucket(Bucket=bucket)
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": bucket,
                    "endpoint_url": endpoint,
                    "region_name": "us-east-1",
                    "access_key": "test",
                    "secret_key": "test",
                    "location": "attachments",
                    "default_acl": None,
                    "file_overwrite": False,
                },
            },
        }
        assert isinstance(storages["default"], S3Storage)  # the tests below really go through S3
    return request.param


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


# --- files ------------------------------------------------------------------------------------------------
def image_bytes(size: tuple[int, int] = (40, 20), fmt: str = "PNG", exif: Image.Exif | None = None, color: str = "red") -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", size, color)
    image.save(out, format=fmt, **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def gps_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCo"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (37.0, 33.0, 12.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (126.0, 58.0, 40.0)
    return exif


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few dozen bytes whose header declares a width x height canvas."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --- calls ------------------------------------------------------------------------------------------------
def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")


def upload(user: Any, room: Any, name: str, data: bytes, content_type: str = "application/octet-stream") -> Any:
    return api(user).post(
        f"/api/rooms/{room.pk}/attachments", {"file": SimpleUploadedFile(name, data, content_type=content_type)}
    )


def uploaded(user: Any, room: Any, name: str, data: bytes, content_type: str = "application/octet-stream") -> dict[str, Any]:
    answer = upload(user, room, name, data, content_type)
    assert answer.status_code == 201, answer.content
    return answer.json()


def send(user: Any, room: Any, attachment_ids: list[int], body: str = "look", client_id: str | None = None) -> Any:
    return api(user).post(
        f"/api/rooms/{room.pk}/messages",
        {"client_id": client_id or uuid.uuid4().hex, "body": body, "attachments": attachment_ids},
        content_type="application/json",
    )


def download(client: Client, url: str) -> Any:
    answer = client.get(url)
    return answer


def stored(name: str) -> bool:
    return bool(name) and default_storage.exists(name)


# --- upload -----------------------------------------------------------------------------------------------
def test_an_image_upload_records_its_type_size_and_dimensions_and_downloads_through_its_signed_links(store, room_with_members):
    room, (alice, bob) = room_with_members(2)
    attachment = uploaded(alice, room, "holiday.png", image_bytes((40, 20)), "image/png")
    assert attachment["content_type"] == "image/png"
    assert (attachment["width"], attachment["height"]) == (40, 20)
    assert attachment["name"] == "holiday.png" and attachment["size"] > 0
    assert attachment["url"].startswith(f"/api/attachments/{attachment['id']}/file?sig=")
    row = Attachment.objects.get(pk=attachment["id"])
    assert stored(row.file.name) and stored(row.thumbnail.name)
    answer = download(api(bob), attachment["url"])
    assert answer.status_code == 200
    assert answer["Content-Type"] == "image/png"
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert answer["Content-Disposition"].startswith("inline")
    assert Image.open(io.BytesIO(answer.content)).size == (40, 20)
    thumbnail = download(api(bob), attachment["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 320


def test_a_text_file_is_served_as_a_plain_text_download_never_as_a_page(store, room_with_members):
    room, (alice, bob) = room_with_members(2)
    attachment = uploaded(alice, room, "notes.html", b"<script>alert(1)</script>\nhello\n", "text/html")
    assert attachment["content_type"] == "text/plain" and attachment["thumbnail_url"] is None
    answer = download(api(bob), attachment["url"])
    assert answer.status_code == 200
    assert answer["Content-Type"] == "text/plain; charset=utf-8"
    assert answer["Content-Disposition"].startswith("attachment")
    assert "sandbox" in answer["Content-Security-Policy"]
    assert answer.content == b"<script>alert(1)</script>\nhello\n"


def test_a_program_renamed_as_an_image_is_refused_by_its_content(store, room_with_members):
    room, (alice, _) = room_with_members(2)
    program = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(range(256)) * 8
    answer = upload(alice, room, "cat.png", program, "image/png")
    assert answer.status_code == 415 and answer.json()["code"] == "file_type_not_allowed"
    broken = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20
    answer = upload(alice, room, "cat.png", broken, "image/png")
    assert answer.status_code == 415 and answer.json()["code"] == "file_type_not_allowed"
    assert not Attachment.objects.exists()


@pytest.mark.parametrize(
    ("data", "plain"),
    [
        (b"tab\there\nnew line\r\nform feed\x0c", True),
        ("café © 25°, 한국어 주소, 🙂".encode(), True),  # 0xC2 lead bytes that are not C1 controls
        ("next line \u0085".encode(), False),  # a C1 control (0xC2 0x85)
        ("\u0080".encode(), False),
        (b"vertical\x0btab", False),
        (b"escape \x1b[31mred", False),
        (b"nul\x00", False),
        (b"delete\x7f", False),
        (b"latin-1 caf\xe9", False),  # not UTF-8
        (b"cut short \xc2", False),
    ],
)
def test_text_is_utf8_without_control_characters_other_than_tab_newlines_and_form_feed(data, plain):
    for chunk_size in (1, 2, 3, 64 * 1024):  # a character split across reads is judged whole
        assert is_plain_text(io.BytesIO(data), chunk_size) is plain, chunk_size


def test_a_type_left_out_of_the_allowed_list_is_refused(settings, room_with_members):
    settings.ATTACHMENT_ALLOWED_TYPES = ["image/png"]
    room, (alice, _) = room_with_members(2)
    answer = upload(alice, room, "doc.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "application/pdf")
    assert answer.status_code == 415 and answer.json()["code"] == "file_type_not_allowed"


def test_a_tiny_image_declaring_a_huge_canvas_is_refused_without_decoding_it(store, room_with_members):
    room, (alice, _) = room_with_members(2)
    bomb = png_declaring(100_000, 100_000)
    assert len(bomb) < 200
    answer = upload(alice, room, "bomb.png", bomb, "image/png")
    assert answer.status_code == 413 and answer.json()["code"] == "file_too_large"
    assert not Attachment.objects.exists()


def test_a_path_in_the_file_name_is_dropped_and_never_reaches_the_store(store, room_with_members, media_root):
    room, (alice, _) = room_with_members(2)
    attachment = uploaded(alice, room, "../../etc/\x1b[31mpass\u202ewd.txt", b"root:x:0:0\n", "text/plain")
    assert attachment["name"] == "[31mpasswd.txt"
    row = Attachment.objects.get(pk=attachment["id"])
    assert ".." not in row.file.name and "passwd" not in row.file.name
    if store == "filesystem":
        assert Path(default_storage.path(row.file.name)).resolve().is_relative_to(media_root.resolve())


def test_an_upload_over_the_size_limit_is_refused(settings, room_with_members):
    settings.ATTACHMENT_MAX_BYTES = 1000
    room, (alice, _) = room_with_members(2)
    answer = upload(alice, room, "big.txt", b"a" * 1001, "text/plain")
    assert answer.status_code == 413 and answer.json()["code"] == "file_too_large"
    assert upload(alice, room, "fits.txt", b"a" * 1000, "text/plain").status_code == 201


def test_a_body_declaring_more_than_the_limit_is_refused_before_authentication_reads_it(settings, room_with_members):
    settings.ATTACHMENT_MAX_BYTES = 1000
    room, (alice, _) = room_with_members(2)
    answer = api(alice).generic(
        "POST",
        f"/api/rooms/{room.pk}/attachments",
        b"x" * 10,
        content_type="multipart/form-data; boundary=zzz",
        CONTENT_LENGTH=str(1000 + 65 * 1024),
    )
    assert answer.status_code == 413 and answer.json()["code"] == "file_too_large"


def test_a_non_member_can_neither_upload_nor_download(store, room_with_members, make_user):
    room, (alice, _) = room_with_members(2)
    stranger = make_user()
    answer = upload(stranger, room, "x.txt", b"hello", "text/plain")
    assert answer.status_code in (403, 404) and not Attachment.objects.exists()
    attachment = uploaded(alice, room, "x.txt", b"hello", "text/plain")
    answer = download(api(stranger), attachment["url"])
    assert answer.status_code == 403 and answer.json()["code"] == "forbidden"
    session = Client()
    session.force_login(stranger)
    assert download(session, attachment["url"]).status_code == 403
    # The link alone (no session, no token) is the capability the contract describes.
    assert download(Client(), attachment["url"]).status_code == 200


def test_a_member_who_left_cannot_download_with_a_link_they_kept(store, room_with_members):
    room, (alice, bob) = room_with_members(2)
    attachment = uploaded(alice, room, "x.txt", b"hello", "text/plain")
    assert download(api(bob), attachment["url"]).status_code == 200
    leave_room(room_id=room.pk, user=bob)
    assert download(api(bob), attachment["url"]).status_code == 403


def test_an_expired_or_altered_link_is_refused(store, room_with_members):
    room, (alice, bob) = room_with_members(2)
    attachment = uploaded(alice, room, "x.txt", b"hello", "text/plain")
    old = signed_url(attachment["id"], "file", at=timezone.now().timestamp() - 3601)
    assert download(api(bob), old).status_code == 403
    fresh = signed_url(attachment["id"], "file", at=timezone.now().timestamp() - 3500)
    assert download(api(bob), fresh).status_code == 200
    url = attachment["url"]
    altered = url[:-1] + ("A" if url[-1] != "A" else "B")
    assert download(api(bob), altered).status_code == 403
    assert download(api(bob), url.split("?")[0]).status_code == 403
    # A signature of one attachment does not open another, nor its thumbnail.
    other = uploaded(alice, room, "y.txt", b"secret", "text/plain")
    assert download(api(bob), other["url"].split("?")[0] + "?" + url.split("?")[1]).status_code == 403
    image = uploaded(alice, room, "p.png", image_bytes(), "image/png")
    assert download(api(bob), image["thumbnail_url"].replace("/thumbnail?", "/file?")).status_code == 403


def test_exif_gps_is_gone_from_the_downloaded_image_and_its_orientation_is_applied(store, room_with_members):
    room, (alice, bob) = room_with_members(2)
    original = image_bytes((40, 20), "JPEG", exif=gps_exif(orientation=6))
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the fixture has GPS
    attachment = uploaded(alice, room, "IMG_0001.jpg", original, "image/jpeg")
    assert (attachment["width"], attachment["height"]) == (20, 40)  # rotated as the camera meant
    answer = download(api(bob), attachment["url"])
    assert answer.status_code == 200
    assert b"PhoneCo" not in answer.content and b"Exif" not in answer.content
    image = Image.open(io.BytesIO(answer.content))
    assert image.size == (20, 40)
    assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert "exif" not in image.info


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exif_is_stripped_from_png_and_webp_too(fmt, room_with_members):
    room, (alice, bob) = room_with_members(2)
    attachment = uploaded(alice, room, f"x.{fmt.lower()}", image_bytes((30, 30), fmt, exif=gps_exif()))
    answer = download(api(bob), attachment["url"])
    assert b"PhoneCo" not in answer.content
    assert not Image.open(io.BytesIO(answer.content)).getexif().get_ifd(ExifTags.IFD.GPSInfo)


def test_uploads_are_rate_limited_per_user(settings, room_with_members):
    settings.ATTACHMENT_UPLOADS_PER_MINUTE = 2
    room, (alice, _) = room_with_members(2)
    codes = [upload(alice, room, "x.txt", b"hi", "text/plain").status_code for _ in range(3)]
    assert codes[:2] == [201, 201] and codes[2] == 429


def test_a_user_cannot_pile_up_unsent_uploads(settings, room_with_members):
    settings.ATTACHMENT_MAX_PENDING = 2
    room, (alice, _) = room_with_members(2)
    uploaded(alice, room, "a.txt", b"a", "text/plain")
    uploaded(alice, room, "b.txt", b"b", "text/plain")
    answer = upload(alice, room, "c.txt", b"c", "text/plain")
    assert answer.status_code == 400 and answer.json()["code"] == "too_many_attachments"


# --- send and read ----------------------------------------------------------------------------------------
def test_a_sent_message_carries_its_attachments_in_history_with_fresh_links_and_kafka_without_links(store, room_with_members):
    room, (alice, bob) = room_with_members(2)
    picture = uploaded(alice, room, "p.png", image_bytes(), "image/png")
    notes = uploaded(alice, room, "n.txt", b"notes", "text/plain")
    answer = send(alice, room, [notes["id"], picture["id"]], client_id="with-files")
    assert answer.status_code == 201, answer.content
    sent = answer.json()["attachments"]
    assert [a["id"] for a in sent] == [notes["id"], picture["id"]]
    assert set(sent[0]) == {"id", "name", "size", "content_type", "width", "height", "url", "thumbnail_url"}
    # A retry of the same send returns the same message and attachments.
    retry = send(alice, room, [notes["id"], picture["id"]], client_id="with-files")
    assert retry.status_code == 200 and [a["id"] for a in retry.json()["attachments"]] == [notes["id"], picture["id"]]
    history = api(bob).get(f"/api/rooms/{room.pk}/messages").json()["results"]
    carried = next(m for m in history if m["attachments"])
    assert [a["name"] for a in carried["attachments"]] == ["n.txt", "p.png"]
    assert download(api(bob), carried["attachments"][1]["url"]).status_code == 200
    event = OutboxEvent.objects.filter(payload__type="message.created", payload__data__id=carried["id"]).get()
    kept = event.payload["data"]["attachments"]
    assert [a["id"] for a in kept] == [notes["id"], picture["id"]]
    assert all(a["url"] is None and a["thumbnail_url"] is None for a in kept)
    assert b"notes" not in str(event.payload).encode()


def test_a_send_refuses_uploads_that_are_not_the_senders_unsent_ones_in_that_room(room_with_members, make_user):
    room, (alice, bob) = room_with_members(2)
    others, _ = room_with_members(2)
    mine = uploaded(alice, room, "a.txt", b"a", "text/plain")
    bobs = uploaded(bob, room, "b.txt", b"b", "text/plain")
    answer = send(alice, room, [bobs["id"]])
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_attachment"
    assert send(alice, room, [999_999]).json()["code"] == "invalid_attachment"
    assert send(alice, room, ["x"]).json()["code"] == "invalid_attachment"
    assert send(alice, room, [mine["id"], mine["id"]]).json()["code"] == "invalid_attachment"
    assert send(alice, room, [mine["id"]]).status_code == 201
    again = send(alice, room, [mine["id"]])  # already sent
    assert again.status_code == 400 and again.json()["code"] == "invalid_attachment"
    room_last_seq = Message.objects.filter(room=room).order_by("-seq").values_list("seq", flat=True).first()
    room.refresh_from_db()
    assert room.last_seq == room_last_seq  # the refused sends gave their seq back


def test_a_message_carries_at_most_the_configured_number_of_attachments(settings, room_with_members):
    settings.ATTACHMENT_MAX_PER_MESSAGE = 2
    room, (alice, _) = room_with_members(2)
    ids = [uploaded(alice, room, f"{i}.txt", b"x", "text/plain")["id"] for i in range(3)]
    answer = send(alice, room, ids)
    assert answer.status_code == 400 and answer.json()["code"] == "too_many_attachments"
    assert send(alice, room, ids[:2]).status_code == 201


def test_search_with_has_attachment_finds_only_messages_that_carry_one(room_with_members):
    room, (alice, bob) = room_with_members(2)
    file = uploaded(alice, room, "plan.txt", b"plan", "text/plain")
    assert send(alice, room, [file["id"]], body="the harbour plan").status_code == 201
    assert send(alice, room, [], body="another harbour plan").status_code == 201
    query = urlencode({"q": "harbour", "has": "attachment"})
    results = api(bob).get(f"/api/search/messages?{query}").json()["results"]
    assert [r["message"]["body"] for r in results] == ["the harbour plan"]
    assert results[0]["message"]["attachments"][0]["name"] == "plan.txt"
    everything = api(bob).get(f"/api/search/messages?{urlencode({'q': 'harbour'})}").json()["results"]
    assert len(everything) == 2


# --- removal ----------------------------------------------------------------------------------------------
def test_deleting_a_message_removes_its_files_and_its_attachments(store, room_with_members, django_capture_on_commit_callbacks):
    room, (alice, bob) = room_with_members(2)
    picture = uploaded(alice, room, "p.png", image_bytes(), "image/png")
    message = send(alice, room, [picture["id"]]).json()
    row = Attachment.objects.get(pk=picture["id"])
    names = [row.file.name, row.thumbnail.name]
    assert all(stored(name) for name in names)
    with django_capture_on_commit_callbacks(execute=True):
        answer = api(alice).delete(f"/api/rooms/{room.pk}/messages/{message['id']}")
    assert answer.status_code == 200 and answer.json()["attachments"] == []
    assert not any(stored(name) for name in names)
    assert not Attachment.objects.filter(pk=picture["id"]).exists()
    assert download(api(bob), picture["url"]).status_code == 404
    history = api(bob).get(f"/api/rooms/{room.pk}/messages").json()["results"]
    assert next(m for m in history if m["id"] == message["id"])["attachments"] == []


def test_orphan_uploads_are_removed_after_the_stated_time_with_their_files(store, settings, room_with_members, django_capture_on_commit_callbacks):
    settings.ATTACHMENT_ORPHAN_HOURS = 24
    room, (alice, _) = room_with_members(2)
    old = uploaded(alice, room, "old.png", image_bytes(), "image/png")
    young = uploaded(alice, room, "young.txt", b"y", "text/plain")
    sent = uploaded(alice, room, "sent.txt", b"s", "text/plain")
    assert send(alice, room, [sent["id"]]).status_code == 201
    day_ago = timezone.now() - timedelta(hours=25)
    Attachment.objects.filter(pk__in=[old["id"], sent["id"]]).update(created_at=day_ago)
    old_row = Attachment.objects.get(pk=old["id"])
    old_files = [old_row.file.name, old_row.thumbnail.name]
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("remove_orphan_attachments", stdout=out)
    assert "Removed 1 " in out.getvalue()
    assert set(Attachment.objects.values_list("id", flat=True)) == {young["id"], sent["id"]}
    assert not any(stored(name) for name in old_files)
    assert stored(Attachment.objects.get(pk=sent["id"]).file.name)
