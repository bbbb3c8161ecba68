"""Uploaded images are processed in a worker process (messaging.image_pool): the same stored result and the
same refusals as on the request's thread, whether the upload is in memory or in a temporary file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from PIL import Image

from core.upload_limits import UploadTooLarge
from messaging import image_pool
from messaging.file_content import FileTypeNotAllowed, process_image
from messaging.tests.test_attachments import gps_exif, image_bytes, png_declaring


@pytest.fixture
def worker_pool(settings: Any) -> Iterator[None]:
    settings.ATTACHMENT_IMAGE_WORKERS = 1
    settings.ATTACHMENT_THUMBNAIL_PIXELS = 16  # a setting of this process must reach the worker with the job
    yield
    executor = image_pool._executor
    image_pool._executor = None
    if executor is not None:
        executor.shutdown(wait=True)


def temporary_upload(name: str, data: bytes) -> TemporaryUploadedFile:
    upload = TemporaryUploadedFile(name, "application/octet-stream", len(data), None)
    upload.write(data)
    upload.flush()
    return upload


def test_an_image_is_processed_in_a_worker_process_as_on_the_request_thread(worker_pool):
    data = image_bytes((64, 32), "JPEG", exif=gps_exif(orientation=6))
    in_thread = process_image(io.BytesIO(data), "image/jpeg")
    for upload in (SimpleUploadedFile("a.jpg", data), temporary_upload("b.jpg", data)):
        result = image_pool.process_upload_image(upload, "image/jpeg")
        assert (result.width, result.height) == (32, 64)  # the orientation applied
        assert (result.width, result.height) == (in_thread.width, in_thread.height)
        assert not Image.open(io.BytesIO(result.data)).getexif()  # no EXIF at all, its GPS position included
        assert max(Image.open(io.BytesIO(result.thumbnail)).size) == 16
    workers = list(image_pool._executor._processes.values())  # type: ignore[union-attr]
    assert workers and all(p.pid != os.getpid() for p in workers)


def test_refusals_cross_the_process_boundary_as_the_same_errors(worker_pool, settings):
    with pytest.raises(UploadTooLarge):
        image_pool.process_upload_image(SimpleUploadedFile("big.png", png_declaring(100_000, 100_000)), "image/png")
    broken = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20
    with pytest.raises(FileTypeNotAllowed):
        image_pool.process_upload_image(temporary_upload("broken.png", broken), "image/png")
    settings.ATTACHMENT_MAX_IMAGE_PIXELS = 100  # the limit of this process, handed to the worker
    with pytest.raises(UploadTooLarge):
        image_pool.process_upload_image(SimpleUploadedFile("small.png", image_bytes((20, 20))), "image/png")


def test_a_worker_leaves_when_its_server_process_is_gone():
    """A server killed without a goodbye must not leave its image workers running (they used to)."""
    program = (
        "import os, django\n"
        "django.setup()\n"
        "from messaging import image_pool\n"
        "image_pool.image_executor().submit(image_pool._ready).result()\n"
        "print(*image_pool._executor._processes, flush=True)\n"
        "os._exit(0)\n"  # as a killed server: no shutdown of the pool
    )
    env = {**os.environ, "ATTACHMENT_IMAGE_WORKERS": "1", "DJANGO_SETTINGS_MODULE": "chattalk_project.settings"}
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120)
    (worker,) = [int(pid) for pid in done.stdout.split()]
    deadline = time.monotonic() + 60
    while running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(worker)


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
