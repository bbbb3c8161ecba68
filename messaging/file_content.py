"""What an uploaded file is, judged by its bytes alone, and what members may download of it.

The client's file name and Content-Type header are never believed: the type comes from the content's
signature (and, for text, from decoding it), so a program renamed `cat.png` is not an image. An image must
decode with Pillow in the format its signature names; its declared canvas is checked against
ATTACHMENT_MAX_IMAGE_PIXELS before any pixel is decoded (a 100-byte PNG can declare 100,000 x 100,000).
What is stored for an image is a re-encoding with the EXIF orientation applied and every metadata block
(EXIF with its GPS position, XMP, comments, text chunks) dropped: the bytes as uploaded are never kept.
"""

from __future__ import annotations

import codecs
import io
import re
import struct
import unicodedata
import warnings
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from PIL import Image, ImageOps, ImageSequence

from core.domain import DomainError
from core.upload_limits import UploadTooLarge

from .models import ATTACHMENT_NAME_MAX_CHARS

# Content type -> (Pillow format, file extension) for the image types ChatTalk knows.
IMAGE_FORMATS = {
    "image/png": ("PNG", ".png"),
    "image/jpeg": ("JPEG", ".jpg"),
    "image/gif": ("GIF", ".gif"),
    "image/webp": ("WEBP", ".webp"),
}
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),  # an empty archive
)
# Text may hold tab, newlines and form feed; any other control character (Unicode category Cc: C0, DEL,
# C1) says it is not plain text. In UTF-8, a C0 control or DEL is that one byte, and a C1 control (U+0080 to
# U+009F) is 0xC2 followed by 0x80 to 0x9F (0xC2 is never a continuation byte, so that matches nothing else).
CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])
C1_LEAD = b"\xc2"
C1_CONTROL = re.compile(rb"\xc2[\x80-\x9f]")
# Every byte but those: what bytes.translate deletes to leave only the bytes worth a closer look.
UNSUSPICIOUS_BYTES = bytes(b for b in range(256) if b not in CONTROL_BYTES + C1_LEAD)
# The metadata an image keeps when re-encoded: what drawing it needs, nothing that describes where or who.
KEPT_IMAGE_INFO = ("icc_profile", "transparency", "duration", "loop", "background", "disposal")
# Pillow's own last line of defence, for any image decoded anywhere in the process.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 2 * settings.ATTACHMENT_MAX_IMAGE_PIXELS)


class FileTypeNotAllowed(DomainError):
    code = "file_type_not_allowed"
    http_status = 415
    default_detail = "This kind of file cannot be attached."


def sniff_type(head: bytes) -> str | None:
    """The binary type named by the first bytes of a file, or None."""
    for signature, content_type in SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def is_plain_text(source: IO[bytes], chunk_size: int = 64 * 1024) -> bool:
    """UTF-8 all through, without control characters other than tab, newlines and form feed.

    Judged per chunk by C code (the UTF-8 decoder, bytes.translate, and a regular expression only where a
    0xC2 byte occurs), so the GIL is free between chunks: a loop over every character in Python held it for
    the whole of a 10 MiB file, and the event loop of every socket of the process waited
    (docs/BENCHMARKS.md, "Uploads beside chat")."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    source.seek(0)
    try:
        while chunk := source.read(chunk_size):
            if chunk.endswith(C1_LEAD):
                chunk += source.read(1)  # a C1 control's two bytes are judged together
            decoder.decode(chunk)
            suspects = chunk.translate(None, UNSUSPICIOUS_BYTES)
            if suspects and (suspects.translate(None, C1_LEAD) or C1_CONTROL.search(chunk)):
                return False
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def detect_content_type(source: IO[bytes]) -> str:
    """The file's type from its content, if it is one of ATTACHMENT_ALLOWED_TYPES; else FileTypeNotAllowed."""
    source.seek(0)
    head = source.read(16)
    content_type = sniff_type(head)
    if content_type is None and is_plain_text(source):
        content_type = "text/plain"
    source.seek(0)
    if content_type is None or content_type not in settings.ATTACHMENT_ALLOWED_TYPES:
        raise FileTypeNotAllowed()
    return content_type


def clean_name(name: str | None) -> str:
    """A display name: no directories, no control or format characters, no leading dots, length-capped with
    its extension kept. Never used as a storage path (files are stored under random names)."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if unicodedata.category(c) in ("Zl", "Zp") else c for c in name)
    name = "".join(c for c in name if not unicodedata.category(c).startswith("C"))
    name = " ".join(name.split()).lstrip(".").strip()
    if len(name) > ATTACHMENT_NAME_MAX_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: ATTACHMENT_NAME_MAX_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:ATTACHMENT_NAME_MAX_CHARS]
    return name or "file"


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes  # the re-encoded image, without metadata
    extension: str
    width: int
    height: int
    thumbnail: bytes
    thumbnail_extension: str
    thumbnail_content_type: str


def _clean_copy(frame: Image.Image) -> Image.Image:
    """A copy of the frame that carries only the metadata drawing it needs."""
    copy = frame.copy()
    copy.info = {key: frame.info[key] for key in KEPT_IMAGE_INFO if key in frame.info}
    return copy


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _thumbnail(image: Image.Image, side: int) -> tuple[bytes, str, str]:
    thumb = image.copy()
    thumb.info = {}
    alpha = _has_alpha(thumb)
    thumb = thumb.convert("RGBA" if alpha else "RGB")
    thumb.thumbnail((side, side))
    out = io.BytesIO()
    if alpha:
        thumb.save(out, format="PNG", optimize=True)
        return out.getvalue(), ".png", "image/png"
    thumb.save(out, format="JPEG", quality=85)
    return out.getvalue(), ".jpg", "image/jpeg"


def process_image(
    source: IO[bytes], content_type: str, *, max_pixels: int | None = None, thumbnail_side: int | None = None
) -> ProcessedImage:
    """Decode, check the canvas, apply the orientation, re-encode without metadata, make a thumbnail.

    A file that does not decode in the format its signature names is FileTypeNotAllowed; a canvas (times
    its frames) above `max_pixels` (ATTACHMENT_MAX_IMAGE_PIXELS) is UploadTooLarge, refused before its
    pixels are read. The server runs this in a worker process (messaging.image_pool), which is handed the
    limits rather than reading settings."""
    pillow_format, extension = IMAGE_FORMATS[content_type]
    max_pixels = settings.ATTACHMENT_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    side = settings.ATTACHMENT_THUMBNAIL_PIXELS if thumbnail_side is None else thumbnail_side
    source.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source, formats=[pillow_format])  # reads the header only
            width, height = image.size
            if width <= 0 or height <= 0:
                raise FileTypeNotAllowed("The image has no pixels.")
            if width * height > max_pixels:
                raise UploadTooLarge(f"The image is larger than {max_pixels} pixels.")
            frames = getattr(image, "n_frames", 1)
            if width * height * frames > max_pixels:
                raise UploadTooLarge(f"The animation is larger than {max_pixels} pixels in all.")
            if frames > 1:
                clean = [_clean_copy(frame) for frame in ImageSequence.Iterator(image)]
            else:
                image.load()
                clean = [_clean_copy(ImageOps.exif_transpose(image))]
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadTooLarge(f"The image is larger than {max_pixels} pixels.") from exc
    except DomainError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        raise FileTypeNotAllowed("The file is not a readable image of the type its content names.") from exc
    first = clean[0]
    out = io.BytesIO()
    options: dict[str, object] = {}
    if "icc_profile" in first.info:
        options["icc_profile"] = first.info["icc_profile"]
    if pillow_format == "JPEG":
        if first.mode not in ("RGB", "L", "CMYK"):
            first = first.convert("RGB")
        first.save(out, format="JPEG", quality=90, **options)
    elif len(clean) > 1:
        first.save(out, format=pillow_format, save_all=True, append_images=clean[1:], **options)
    else:
        first.save(out, format=pillow_format, **options)
    thumbnail, thumbnail_extension, thumbnail_type = _thumbnail(clean[0], side)
    return ProcessedImage(
        data=out.getvalue(),
        extension=extension,
        width=first.width,
        height=first.height,
        thumbnail=thumbnail,
        thumbnail_extension=thumbnail_extension,
        thumbnail_content_type=thumbnail_type,
    )

