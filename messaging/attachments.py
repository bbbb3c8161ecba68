"""Attachments: upload to a room, send with a message, download through short-lived signed links.

- Upload (members only): the type is judged by the content (messaging.file_content); an image is stored
  re-encoded without metadata, with a thumbnail, made in a worker process (messaging.image_pool) so that
  the server's event loop never waits for Pillow. Files go through Django's storage API (the file system or
  an S3-compatible store, settings.STORAGES["default"]) under random names; the row is written after them.
- Send: `pending_attachments` checks the ids (uploaded by the sender to that room, not sent yet) under the
  room row's lock that the send holds; `bind_attachments` sets their message in the send's transaction.
  The message keeps their metadata (`Message.attachments`), so reads make no extra query.
- Links: `/api/attachments/{id}/file?sig=...` and `.../thumbnail?sig=...`, signed with a TimestampSigner
  (its own salt) and valid ATTACHMENT_URL_SECONDS (at most an hour). Every read of a message signs anew;
  a frame carries the links made when it was made. The link is the capability; an authenticated requester
  must also be an active member of the room (a member who left, or a stranger handed the link while logged
  in, gets 403). The app streams the file itself, also from S3: the bucket stays private and the headers
  (nosniff, attachment disposition, sandboxing CSP) stay ours.
- Removal: a row's files go with the row, after commit (messaging.receivers), whichever way the row goes:
  the message deleted, its room deleted, or `remove_orphan_attachments` for uploads never sent.
- Kafka: events carry the metadata only; `url`/`thumbnail_url` are null there (a capability in a log
  that outlives it helps nobody).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header

from accounts.models import User
from core.domain import DomainError, Forbidden, NotFound
from core.upload_limits import UploadTooLarge
from rooms.services import active_membership, require_member

from .file_content import IMAGE_FORMATS, clean_name, detect_content_type
from .image_pool import process_upload_image
from .models import Attachment, Message

logger = logging.getLogger(__name__)

LINK_SALT = "messaging.attachment-link"
FILE, THUMBNAIL = "file", "thumbnail"
# Multipart framing around the file (boundaries, part headers, a short field or two): what a request
# may add to ATTACHMENT_MAX_BYTES before its declared length alone refuses it.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class TooManyAttachments(DomainError):
    code = "too_many_attachments"
    default_detail = "Too many attachments."


class InvalidAttachment(DomainError):
    code = "invalid_attachment"
    default_detail = "attachments must name files you uploaded to this room and have not sent yet."


class AttachmentNotFound(NotFound):
    default_detail = "No such attachment."


class LinkInvalid(Forbidden):
    default_detail = "This download link is invalid or has expired."


def upload_body_limit() -> int:
    """The largest request body an upload may have: the file plus its multipart framing."""
    return settings.ATTACHMENT_MAX_BYTES + MULTIPART_OVERHEAD_BYTES


def too_large_detail() -> str:
    return f"A file may have at most {settings.ATTACHMENT_MAX_BYTES} bytes."


# --- links ----------------------------------------------------------------------------------------------
class _Signer(signing.TimestampSigner):
    """A TimestampSigner whose clock can be set: a link made `at` a past time (tests of expiry)."""

    def __init__(self, at: float | None = None):
        super().__init__(salt=LINK_SALT)
        self.at = at

    def timestamp(self) -> str:
        return super().timestamp() if self.at is None else signing.b62_encode(int(self.at))


def signed_url(attachment_id: int, variant: str = FILE, at: float | None = None) -> str:
    value = f"{attachment_id}.{variant}"
    token = _Signer(at).sign(value)[len(value) + 1 :]
    return f"/api/attachments/{attachment_id}/{variant}?sig={token}"


def check_link(attachment_id: int, variant: str, token: str | None) -> None:
    """LinkInvalid unless `token` signs this attachment's variant and is younger than ATTACHMENT_URL_SECONDS."""
    if not token or len(token) > 200:
        raise LinkInvalid()
    try:
        _Signer().unsign(f"{attachment_id}.{variant}:{token}", max_age=settings.ATTACHMENT_URL_SECONDS)
    except signing.BadSignature as exc:  # SignatureExpired is one
        raise LinkInvalid() from exc


# --- shapes ---------------------------------------------------------------------------------------------
def attachment_summary(attachment: Attachment) -> dict[str, Any]:
    """What a message keeps of an attachment (Message.attachments): metadata, no capability."""
    return {
        "id": attachment.pk,
        "name": attachment.name,
        "size": attachment.size,
        "content_type": attachment.content_type,
        "width": attachment.width,
        "height": attachment.height,
        "thumbnail": bool(attachment.thumbnail),
    }


def with_links(summaries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The contract's Attachments, each with freshly signed urls."""
    return [
        {
            "id": s["id"],
            "name": s["name"],
            "size": s["size"],
            "content_type": s["content_type"],
            "width": s["width"],
            "height": s["height"],
            "url": signed_url(s["id"], FILE),
            "thumbnail_url": signed_url(s["id"], THUMBNAIL) if s["thumbnail"] else None,
        }
        for s in summaries
    ]


def without_links(message: dict[str, Any]) -> dict[str, Any]:
    """A Message for the event log: its attachments' urls are null (metadata only)."""
    if not message.get("attachments"):
        return message
    return {**message, "attachments": [{**a, "url": None, "thumbnail_url": None} for a in message["attachments"]]}


# --- upload ---------------------------------------------------------------------------------------------
def _store(attachment: Attachment, field: str, name: str, content: Any) -> None:
    getattr(attachment, field).save(name, content, save=False)


def _discard(names: Iterable[str]) -> None:
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except Exception:  # noqa: BLE001 - a store that is away must not fail the request that removes a row
            logger.warning("could not remove attachment file %s", name, exc_info=True)


def upload_attachment(*, room_id: int, uploader: User, upload: UploadedFile) -> dict[str, Any]:
    """Store a member's upload and return the contract's Attachment (with links for the uploader's preview)."""
    require_member(room_id, uploader)
    if upload.size is None or upload.size > settings.ATTACHMENT_MAX_BYTES:
        raise UploadTooLarge(too_large_detail())
    pending = Attachment.objects.filter(room_id=room_id, uploader=uploader, message__isnull=True)
    if pending.count() >= settings.ATTACHMENT_MAX_PENDING:
        raise TooManyAttachments(
            f"At most {settings.ATTACHMENT_MAX_PENDING} uploads to a room may wait to be sent; send or let them expire."
        )
    content_type = detect_content_type(upload)
    attachment = Attachment(
        room_id=room_id,
        uploader=uploader,
        name=clean_name(upload.name),
        content_type=content_type,
        created_at=timezone.now(),
    )
    try:
        if content_type in IMAGE_FORMATS:
            image = process_upload_image(upload, content_type)  # in a worker process: see image_pool
            attachment.width, attachment.height, attachment.size = image.width, image.height, len(image.data)
            _store(attachment, "file", "image" + image.extension, ContentFile(image.data))
            _store(attachment, "thumbnail", "thumbnail" + image.thumbnail_extension, ContentFile(image.thumbnail))
        else:
            upload.seek(0)
            attachment.size = upload.size
            _store(attachment, "file", "file" + _extension(content_type), upload)
        with transaction.atomic():
            attachment.save()
    except BaseException:
        _discard([attachment.file.name, attachment.thumbnail.name])
        raise
    return {**with_links([attachment_summary(attachment)])[0]}


def _extension(content_type: str) -> str:
    return {"application/pdf": ".pdf", "text/plain": ".txt", "application/zip": ".zip"}.get(content_type, "")


# --- send and delete ------------------------------------------------------------------------------------
def clean_attachment_ids(value: Any) -> list[int]:
    """The send's `attachments`: a list of distinct ids, at most ATTACHMENT_MAX_PER_MESSAGE."""
    if value is None:
        return []
    if not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in value):
        raise InvalidAttachment("attachments must be a list of attachment ids.")
    if len(value) > settings.ATTACHMENT_MAX_PER_MESSAGE:
        raise TooManyAttachments(f"A message carries at most {settings.ATTACHMENT_MAX_PER_MESSAGE} attachments.")
    if len(set(value)) != len(value) or any(not 0 < i < 2**63 for i in value):
        raise InvalidAttachment()
    return list(value)


def pending_attachments(room_id: int, sender_id: int, ids: list[int]) -> list[Attachment]:
    """The sender's unsent uploads to the room with these ids, in the given order; InvalidAttachment if any
    is not one. Called under the room row's lock (the send's seq), which serialises the sends that could
    claim the same upload."""
    if not ids:
        return []
    found = Attachment.objects.in_bulk(ids)
    rows = [found.get(i) for i in ids]
    if any(a is None or a.room_id != room_id or a.uploader_id != sender_id or a.message_id is not None for a in rows):
        raise InvalidAttachment()
    return rows  # type: ignore[return-value]


def bind_attachments(attachments: list[Attachment], message: Message) -> None:
    """Give the uploads to the message, in its transaction; a concurrent claim or cleanup refuses the send."""
    if not attachments:
        return
    bound = Attachment.objects.filter(pk__in=[a.pk for a in attachments], message__isnull=True).update(message=message)
    if bound != len(attachments):
        raise InvalidAttachment()


def remove_message_attachments(message: Message) -> None:
    """Delete a message's attachment rows; their files go after commit (messaging.receivers)."""
    for attachment in Attachment.objects.filter(message=message):
        attachment.delete()


def remove_files_after_commit(attachment: Attachment) -> None:
    names = [attachment.file.name, attachment.thumbnail.name]
    transaction.on_commit(lambda: _discard(names))


# --- download -------------------------------------------------------------------------------------------
def attachment_for_download(*, attachment_id: int, variant: str, token: str | None, user: Any) -> Attachment:
    """The attachment a valid link names, for an anonymous holder of the link or an active member."""
    if variant not in (FILE, THUMBNAIL):
        raise AttachmentNotFound()
    check_link(attachment_id, variant, token)
    attachment = Attachment.objects.filter(pk=attachment_id).first()
    if attachment is None or (variant == THUMBNAIL and not attachment.thumbnail):
        raise AttachmentNotFound()
    if user is not None and user.is_authenticated and active_membership(attachment.room_id, user) is None:
        raise Forbidden("Only members of the room may download its files.")
    return attachment


def read_file(attachment: Attachment, variant: str) -> bytes:
    """The stored bytes (at most ATTACHMENT_MAX_BYTES and change); a file gone from the store is not found."""
    field = attachment.thumbnail if variant == THUMBNAIL else attachment.file
    try:
        with default_storage.open(field.name, "rb") as stored:
            return stored.read()
    except (FileNotFoundError, OSError) as exc:
        raise AttachmentNotFound() from exc


def file_response(attachment: Attachment, variant: str, data: bytes) -> HttpResponse:
    """The download: images inline (a preview), everything else as a download; never sniffed, never a page.

    The bytes are read whole (at most ATTACHMENT_MAX_BYTES): Django's ASGI handler would collect a
    synchronous stream into memory anyway, and sync views run one at a time per process."""
    if variant == THUMBNAIL:
        content_type = "image/png" if attachment.thumbnail.name.endswith(".png") else "image/jpeg"
    else:
        content_type = attachment.content_type
    inline = content_type in IMAGE_FORMATS
    response = HttpResponse(
        data, content_type="text/plain; charset=utf-8" if content_type == "text/plain" else content_type
    )
    response["Content-Disposition"] = content_disposition_header(not inline, attachment.name)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=300"
    return response


# --- cleanup --------------------------------------------------------------------------------------------
def orphan_attachments(now: Any = None):  # type: ignore[no-untyped-def]
    """Uploads no message took within ATTACHMENT_ORPHAN_HOURS."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.ATTACHMENT_ORPHAN_HOURS)
    return Attachment.objects.filter(message__isnull=True, created_at__lt=cutoff)


def remove_orphan(attachment_id: int, now: Any = None) -> bool:
    """Remove one orphan if it is still one (a send may have taken it since it was listed)."""
    with transaction.atomic():
        attachment = orphan_attachments(now).select_for_update().filter(pk=attachment_id).first()
        if attachment is None:
            return False
        attachment.delete()
    return True
