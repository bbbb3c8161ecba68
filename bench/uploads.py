"""Uploads beside chat: does a 10 MiB upload stall the server for the chat of other rooms?

Chat runs in `rooms` rooms for the whole run (members, senders at a steady rate, each socket measuring
send-to-delivery as in the fan-out scenario), while the run alternates quiet slots and upload slots of
`slot_seconds`. In an upload slot, `uploaders` members of another room upload files back to back, each at
most ATTACHMENT_MAX_BYTES: a phone-sized JPEG and a PNG (both decoded, re-encoded and thumbnailed by the
server), a PDF and a plain-text log (judged by content: the text is decoded in full); after each upload the
uploader sends a message that carries the file and no text, as a user sharing a picture does.

Every client behaves as the pages do: sockets offer permessage-deflate and authenticate with the session
cookie and the page's Origin; uploads are multipart POSTs with the session cookie and the CSRF header.
Sessions are written directly (seeding, not the login path). Each delivery is classed by its send time:
"with uploads" if an upload request was in flight then, "without" if it fell in a quiet slot with none in
flight (less the first SETTLE_SECONDS after an upload slot). Quiet and upload slots alternate within one
run, so both meet the same machine load: compare the ratio, not the milliseconds, on a shared machine.
"""

from __future__ import annotations

import asyncio
import io
import random
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.db import close_old_connections
from django.middleware.csrf import CSRF_ALLOWED_CHARS
from django.utils.crypto import get_random_string
from PIL import Image

from accounts.models import User

from .client import http_json, http_multipart, require_loopback
from .fanout import FanoutSpec, judge, percentile, run_in_processes
from .scenarios import BenchRoom, drop_room, prepare_room, warm_up
from .servers import CpuSnapshot, loadavg

MULTIPART_MARGIN_BYTES = 4096  # under the file limit: the file part alone must fit ATTACHMENT_MAX_BYTES
# A quiet slot's first seconds after an upload slot are not "without uploads": a backlog built during the
# uploads may still drain then, and counting it as quiet would hide the uploads' effect.
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class UploadFile:
    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class PageSession:
    """What a logged-in page holds: its Cookie header (session and CSRF cookies) and the CSRF token."""

    cookie: str
    csrf_token: str


@dataclass
class UploadRecord:
    name: str
    started: float
    ended: float
    status: int | str
    sent_status: int | str | None = None


def page_sessions(user_ids: list[int]) -> list[PageSession]:
    """A logged-in session per user, written as django.contrib.auth.login writes it, and a CSRF cookie."""
    engine = import_module(settings.SESSION_ENGINE)
    users = {u.pk: u for u in User.objects.filter(pk__in=user_ids)}
    backend = settings.AUTHENTICATION_BACKENDS[0]
    sessions = []
    for uid in user_ids:
        store = engine.SessionStore()
        store[SESSION_KEY] = str(uid)
        store[BACKEND_SESSION_KEY] = backend
        store[HASH_SESSION_KEY] = users[uid].get_session_auth_hash()
        store.create()
        csrf = get_random_string(32, CSRF_ALLOWED_CHARS)
        cookie = f"{settings.SESSION_COOKIE_NAME}={store.session_key}; {settings.CSRF_COOKIE_NAME}={csrf}"
        sessions.append(PageSession(cookie, csrf))
    return sessions


# --- files ------------------------------------------------------------------------------------------------
def _photo(rng: random.Random, width: int, height: int) -> Image.Image:
    """Smooth colour fields under fine grain: about the entropy of a photo, so its JPEG is photo-sized."""
    coarse = Image.frombytes("RGB", (width // 4, height // 4), rng.randbytes((width // 4) * (height // 4) * 3))
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    return Image.blend(coarse.resize((width, height), Image.Resampling.BILINEAR), grain, 0.35)


def upload_files(max_bytes: int, seed: int = 19) -> list[UploadFile]:
    """A JPEG (12 MP, as a phone takes), a PNG, a PDF and a text log, each as close under `max_bytes` as
    their encodings get."""
    rng = random.Random(seed)
    limit = max_bytes - MULTIPART_MARGIN_BYTES
    photo = _photo(rng, 4032, 3024)
    jpeg = b""
    for quality in range(96, 50, -2):
        out = io.BytesIO()
        photo.save(out, format="JPEG", quality=quality)
        if out.tell() <= limit:
            jpeg = out.getvalue()
            break
    # PNG barely compresses this image: ~3 bytes a pixel; fit the height to the limit.
    width = 2000
    height = max(1, int(limit / (width * 3.05)))
    while True:
        out = io.BytesIO()
        _photo(rng, width, height).save(out, format="PNG")
        if out.tell() <= limit:
            png = out.getvalue()
            break
        height = int(height * 0.97)
    pdf = b"%PDF-1.7\n" + rng.randbytes(limit - 9)
    line = b"2026-11-30T01:00:00Z INFO request served path=/api/rooms/1/messages status=200 ms=4\n"
    text = (line * (limit // len(line) + 1))[:limit]
    return [
        UploadFile("photo.jpg", "image/jpeg", jpeg),
        UploadFile("screenshot.png", "image/png", png),
        UploadFile("report.pdf", "application/pdf", pdf),
        UploadFile("server.log", "text/plain", text),
    ]


# --- the run ----------------------------------------------------------------------------------------------
def classify(
    reports: list[Any],
    uploads: list[UploadRecord],
    upload_slots: list[tuple[float, float]],
    started: float,
    settle: float = SETTLE_SECONDS,
) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """(latencies of deliveries sent in a quiet slot, at least `settle` seconds after the last upload ended;
    those sent while an upload was in flight; the latter by the name of the file in flight: a delivery
    counts for each file then in flight). Deliveries in the settling time count for neither."""
    quiet: list[float] = []
    loaded: list[float] = []
    by_file: dict[str, list[float]] = {}
    for report in reports:
        for received, ms in zip(report.timeline, report.delivery_ms, strict=False):
            sent = received - ms / 1000
            in_flight = {u.name for u in uploads if u.started <= sent <= u.ended}
            if in_flight:
                loaded.append(ms)
                for name in in_flight:
                    by_file.setdefault(name, []).append(ms)
            elif sent >= started and not any(start <= sent < end + settle for start, end in upload_slots):
                quiet.append(ms)
    return quiet, loaded, by_file


def slot_series(reports: list[Any], started: float, slot_seconds: float, duration: float) -> list[str]:
    """Chat p99 per slot, by send time ("q" quiet, "U" upload slot): a spike confined to one slot shows."""
    slots: list[list[float]] = [[] for _ in range(max(1, int(duration // slot_seconds) + 1))]
    for report in reports:
        for received, ms in zip(report.timeline, report.delivery_ms, strict=False):
            index = int((received - ms / 1000 - started) // slot_seconds)
            if 0 <= index < len(slots):
                slots[index].append(ms)
    return [f"{'U' if i % 2 else 'q'}{_r(percentile(v, 0.99))}" for i, v in enumerate(slots) if v]


def upload_interference(
    base_url: str,
    *,
    rooms: int = 4,
    members: int = 25,
    senders: int = 2,
    rate: float = 2.0,
    duration: float = 120.0,
    slot_seconds: float = 15.0,
    uploaders: int = 2,
    server_pids: list[int] | None = None,
    deflate: bool = True,
    on_upload: Any = None,
) -> dict[str, Any]:
    """See the module docstring. Returns the chat latencies without and with uploads, their ratio, and the
    uploads' own outcomes and durations."""
    require_loopback(base_url)
    base = base_url.rstrip("/")
    pids = server_pids or []
    if pids:
        warm_up(base_url, deflate=deflate)
    files = upload_files(settings.ATTACHMENT_MAX_BYTES)
    chat_rooms: list[BenchRoom] = [prepare_room(members) for _ in range(rooms)]
    upload_room = prepare_room(max(2, uploaders))
    try:
        member_sessions = page_sessions(chat_rooms[0].user_ids)
        uploader_sessions = page_sessions(upload_room.user_ids[:uploaders])
        close_old_connections()
        # What the server pays once for images (starting its image worker) is not charged to the run.
        asyncio.run(warm_up_images(base, upload_room.room_id, uploader_sessions[0]))
        specs = [
            FanoutSpec(
                ws_url=room.ws_url(base_url),
                tokens=[s.cookie for s in member_sessions[: len(room.user_ids)]],
                sender_count=senders,
                duration=duration,
                rate=rate,
                worker=i,
                keep_timeline=True,
                deflate=deflate,
                cookies=True,
            )
            for i, room in enumerate(chat_rooms)
        ]
        records: list[UploadRecord] = []
        slots: list[tuple[float, float]] = []
        marks: dict[str, Any] = {}

        def upload_in_thread() -> None:
            asyncio.run(
                upload_slots(
                    base,
                    upload_room.room_id,
                    uploader_sessions,
                    files,
                    duration,
                    slot_seconds,
                    records,
                    slots,
                    on_upload,
                )
            )

        thread = threading.Thread(target=upload_in_thread, daemon=True)

        def started() -> None:
            marks["start"], marks["load"] = CpuSnapshot.take(pids), loadavg()
            marks["at"] = time.monotonic()
            thread.start()

        def drained() -> None:
            marks["end"] = CpuSnapshot.take(pids)

        reports = run_in_processes(specs, started, on_all_drained=drained)
        thread.join(timeout=slot_seconds + 180)
    finally:
        for room in [*chat_rooms, upload_room]:
            drop_room(room.room_id)
    quiet, loaded, by_file = classify(reports, records, slots, marks["at"])
    series = slot_series(reports, marks["at"], slot_seconds, duration)
    losses = [judge([r]) for r in reports]  # one room per report: seqs are per room
    server_cpu, machine_cpu = marks["end"].since(marks["start"])
    done = [r for r in records if r.status == 201]
    upload_ms = [(r.ended - r.started) * 1000 for r in done]
    p99_quiet, p99_loaded = percentile(quiet, 0.99), percentile(loaded, 0.99)
    outcomes: dict[str, int] = {}
    for r in records:
        outcomes[str(r.status)] = outcomes.get(str(r.status), 0) + 1
    return {
        "rooms": rooms,
        "members_per_room": members,
        "senders_per_room": senders,
        "rate_per_sender": rate,
        "duration": duration,
        "slot_seconds": slot_seconds,
        "uploaders": uploaders,
        "files": {f.name: round(len(f.data) / 2**20, 2) for f in files},
        "uploads": len(records),
        "upload_outcomes": outcomes,
        "sends_after_upload": sum(1 for r in records if r.sent_status == 201),
        "upload_mib": round(sum(len(f.data) for r in done for f in files if f.name == r.name) / 2**20, 1),
        "upload_p50_ms": _r(percentile(upload_ms, 0.5)),
        "upload_max_ms": _r(max(upload_ms, default=None) if upload_ms else None),
        "deliveries_without_uploads": len(quiet),
        "deliveries_with_uploads": len(loaded),
        "chat_p50_without_ms": _r(percentile(quiet, 0.5)),
        "chat_p99_without_ms": _r(p99_quiet),
        "chat_p50_with_ms": _r(percentile(loaded, 0.5)),
        "chat_p99_with_ms": _r(p99_loaded),
        "chat_max_without_ms": _r(max(quiet, default=None) if quiet else None),
        "chat_max_with_ms": _r(max(loaded, default=None) if loaded else None),
        "p99_ratio": _ratio(p99_loaded, p99_quiet),
        "p50_ratio": _ratio(percentile(loaded, 0.5), percentile(quiet, 0.5)),
        "chat_p99_by_slot_ms": series,
        "chat_p99_while_file_ms": {name: _r(percentile(v, 0.99)) for name, v in sorted(by_file.items())},
        "upload_p50_ms_by_file": {
            f.name: _r(percentile([(r.ended - r.started) * 1000 for r in done if r.name == f.name], 0.5)) for f in files
        },
        "lost_deliveries": sum(x["lost_deliveries"] for x in losses),
        "duplicates": sum(x["duplicates"] for x in losses),
        "deflate_sockets": sum(r.deflate_sockets for r in reports),
        "connected": sum(r.connected for r in reports),
        "server_cpu_seconds": round(server_cpu, 2) if pids else None,
        "machine_cpu_seconds": round(machine_cpu, 2),
        "loadavg_at_start": marks["load"],
    }


async def warm_up_images(base: str, room_id: int, session: PageSession) -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(out, format="PNG")
    headers = {"Cookie": session.cookie, "X-CSRFToken": session.csrf_token, "Origin": base}
    status, answer = await http_multipart(
        f"{base}/api/rooms/{room_id}/attachments", "file", "warm-up.png", "image/png", out.getvalue(), headers
    )
    if status != 201:
        raise RuntimeError(f"the warm-up upload was answered {status}: {answer}")
    await http_json(
        "POST", f"{base}/api/rooms/{room_id}/messages", {"client_id": "warm-up", "attachments": [answer["id"]]}, headers
    )


async def upload_slots(
    base: str,
    room_id: int,
    sessions: list[Any],
    files: list[UploadFile],
    duration: float,
    slot_seconds: float,
    records: list[UploadRecord],
    slots: list[tuple[float, float]],
    on_upload: Any = None,
) -> None:
    """Quiet, upload, quiet, upload...: in each upload slot every uploader uploads back to back (the last one
    may run past the slot's end), then sends a message carrying the file and no text."""
    began = time.monotonic()
    origin = base
    counter = iter(range(10**9))

    async def one_uploader(session: PageSession, until: float) -> None:
        headers = {"Cookie": session.cookie, "X-CSRFToken": session.csrf_token, "Origin": origin}
        while time.monotonic() < until:
            upload = files[next(counter) % len(files)]
            record = UploadRecord(upload.name, time.monotonic(), 0.0, "?")
            try:
                status, body = await http_multipart(
                    f"{base}/api/rooms/{room_id}/attachments",
                    "file",
                    upload.name,
                    upload.content_type,
                    upload.data,
                    headers,
                )
            except (OSError, TimeoutError) as exc:
                status, body = type(exc).__name__, None
            record.ended, record.status = time.monotonic(), status
            records.append(record)
            if status == 201 and isinstance(body, dict):
                try:
                    record.sent_status, _ = await http_json(
                        "POST",
                        f"{base}/api/rooms/{room_id}/messages",
                        {"client_id": str(uuid.uuid4()), "body": "", "attachments": [body["id"]]},
                        headers,
                    )
                except (OSError, TimeoutError) as exc:
                    record.sent_status = type(exc).__name__
            if on_upload is not None:
                on_upload(record)

    slot = 0
    while True:
        slot_start = began + slot * slot_seconds
        slot_end = min(slot_start + slot_seconds, began + duration)
        if slot_start >= began + duration - 1:
            break
        if slot % 2 == 1:
            slots.append((slot_start, slot_end))
            await asyncio.sleep(max(0.0, slot_start - time.monotonic()))
            await asyncio.gather(*(one_uploader(s, slot_end) for s in sessions))
            # an upload that ran past its slot keeps its in-flight interval; the quiet slot starts later
            slots[-1] = (slot_start, max(slot_end, time.monotonic()))
        slot += 1


def _ratio(loaded: float | None, quiet: float | None) -> float | None:
    return round(loaded / quiet, 2) if loaded and quiet else None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
