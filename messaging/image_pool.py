"""Where uploaded images are decoded, re-encoded and thumbnailed: a small pool of worker processes.

Why a process and not a thread: Pillow holds the GIL through parts of that work (its encoders among them),
so a thread doing it kept the event loop of the same process (every WebSocket it serves) waiting for the
GIL at every turn: with one 10 MiB image in work, the chat of other rooms slowed several times over
(docs/BENCHMARKS.md, "Uploads beside chat"). A worker process shares no GIL with the server; it runs at a
lower CPU priority (ATTACHMENT_IMAGE_NICE), so on a busy machine the server's own threads come first.

The request's thread waits for its image (the upload view is synchronous); images queue here, first come
first served, on at most ATTACHMENT_IMAGE_WORKERS processes, started with "spawn" (a fork of a threaded
server process could copy a held lock) when the server's ASGI application is made (`start_workers`), so
that the first upload does not wait for a worker to start. A large upload is handed over by its temporary
file's path, not by its bytes. The limits travel with each job, so a worker never reads settings.
With ATTACHMENT_IMAGE_WORKERS = 0 (the default inside pytest) the image is processed on the caller's thread.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import IO, TYPE_CHECKING

from django.conf import settings

from core.domain import DomainError

if TYPE_CHECKING:
    from .file_content import ProcessedImage

logger = logging.getLogger(__name__)


class ImageWorkerFailed(DomainError):
    code = "unavailable"
    http_status = 503
    default_detail = "The image could not be processed now; try again."


_executor: ProcessPoolExecutor | None = None
_lock = threading.Lock()


PARENT_CHECK_SECONDS = 1.0


def _exit_with_parent(parent_pid: int) -> None:
    """A worker blocks on its job queue, which never ends while the worker itself holds the queue's other
    end: without this watch, a server that was killed or stopped left its workers running forever."""
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(0)


def _start_worker(nice: int, parent_pid: int) -> None:
    """Runs in each worker process as it starts: leave with the server, a lower CPU priority, and Django's
    apps (file_content imports models for a name limit)."""
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    if nice > 0:
        try:
            os.nice(nice)
        except OSError as exc:  # pragma: no cover - a platform without nice
            logger.warning("image workers keep the normal CPU priority: %s", exc)
    import django

    django.setup()


def _process_in_worker(source: str | bytes, content_type: str, max_pixels: int, thumbnail_side: int) -> ProcessedImage:
    """A worker's job: `source` is a file path or the bytes themselves. file_content is imported here, not
    at the top: a worker imports this module before its initializer has set Django up."""
    from .file_content import process_image

    if isinstance(source, bytes):
        return process_image(io.BytesIO(source), content_type, max_pixels=max_pixels, thumbnail_side=thumbnail_side)
    with open(source, "rb") as file:
        return process_image(file, content_type, max_pixels=max_pixels, thumbnail_side=thumbnail_side)


def image_executor() -> ProcessPoolExecutor:
    """Created on first use, in the serving process."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ProcessPoolExecutor(
                max_workers=settings.ATTACHMENT_IMAGE_WORKERS,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(settings.ATTACHMENT_IMAGE_NICE, os.getpid()),
            )
        return _executor


def _ready() -> None:
    """A job that does nothing: submitted at start-up so that the workers start then."""


def start_workers() -> None:
    """Start the worker processes now (they set Django up in the background) so that the first image upload
    does not wait seconds for a process to start; called when the server's ASGI application is made."""
    if settings.ATTACHMENT_IMAGE_WORKERS <= 0:
        return
    executor = image_executor()
    for _ in range(settings.ATTACHMENT_IMAGE_WORKERS):
        executor.submit(_ready)


def _forget_broken(executor: ProcessPoolExecutor) -> None:
    global _executor
    with _lock:
        if _executor is executor:
            _executor = None


def process_upload_image(upload: IO[bytes], content_type: str) -> ProcessedImage:
    """process_image for an uploaded file, in a worker process when there are workers (see the module
    docstring); the same refusals either way (FileTypeNotAllowed, UploadTooLarge cross the process)."""
    max_pixels, side = settings.ATTACHMENT_MAX_IMAGE_PIXELS, settings.ATTACHMENT_THUMBNAIL_PIXELS
    if settings.ATTACHMENT_IMAGE_WORKERS <= 0:
        from .file_content import process_image

        return process_image(upload, content_type, max_pixels=max_pixels, thumbnail_side=side)
    path = getattr(upload, "temporary_file_path", None)
    if path is not None:
        source: str | bytes = path()
    else:
        upload.seek(0)
        source = upload.read()
    executor = image_executor()
    try:
        return executor.submit(_process_in_worker, source, content_type, max_pixels, side).result()
    except BrokenProcessPool as exc:
        # A worker died (killed, out of memory): the next upload gets a fresh pool; this one is not retried,
        # since the image may be what killed it.
        _forget_broken(executor)
        logger.error("an image worker died; the pool is started again on the next upload")
        raise ImageWorkerFailed() from exc
