"""System checks for settings that cannot work together."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.compatibility)
def chattalk_settings_check(app_configs: Any, **kwargs: Any) -> list[Error | Warning]:
    problems: list[Error | Warning] = []
    if settings.PRESENCE_BACKEND not in {"orm", "mongo"}:
        problems.append(Error("PRESENCE_BACKEND must be 'orm' or 'mongo'.", id="chattalk.E001"))
    if settings.PRESENCE_BACKEND == "mongo" and not settings.MONGODB_URI:
        problems.append(Error("PRESENCE_BACKEND=mongo needs MONGODB_URI.", id="chattalk.E002"))
    if settings.PRESENCE_TIMEOUT_SECONDS <= settings.PRESENCE_HEARTBEAT_SECONDS:
        problems.append(
            Error(
                "PRESENCE_TIMEOUT_SECONDS must be longer than PRESENCE_HEARTBEAT_SECONDS, or live connections "
                "would be dropped as ghosts between two heartbeats.",
                id="chattalk.E003",
            )
        )
    if settings.PRESENCE_TIMEOUT_SECONDS > 60:
        problems.append(Warning("PRESENCE_TIMEOUT_SECONDS above 60 keeps ghosts longer.", id="chattalk.W001"))
    engine = settings.DATABASES["default"]["ENGINE"]
    if settings.REDIS_URL and engine.endswith("sqlite3"):
        problems.append(
            Warning(
                "REDIS_URL is set (several processes) but the database is SQLite: a file database shared by many "
                "processes will queue every write. Use DATABASE_URL=postgres://... for more than one process.",
                id="chattalk.W002",
            )
        )
    replica = settings.DATABASES.get("replica")
    if replica is not None and not (engine.endswith("postgresql") and replica["ENGINE"].endswith("postgresql")):
        problems.append(
            Error(
                "DATABASE_REPLICA_URL needs PostgreSQL for both DATABASE_URL and the replica: the replica must be "
                "a streaming replica of the primary.",
                id="chattalk.E009",
            )
        )
    if not settings.DEBUG and settings.USING_DEV_SECRET_KEY:
        problems.append(Error("The development SECRET_KEY is in use with DEBUG off.", id="chattalk.E004"))
    if not settings.DEBUG and not settings.REDIS_URL:
        problems.append(
            Warning(
                "DEBUG is off but REDIS_URL is not set: the channel layer, token denylist and rate limits are "
                "local to this one process.",
                id="chattalk.W003",
            )
        )
    if not 0 < settings.ATTACHMENT_URL_SECONDS <= 3600:
        problems.append(
            Error("ATTACHMENT_URL_SECONDS must be 1 to 3600: a download link lives at most an hour.", id="chattalk.E020")
        )
    if settings.ATTACHMENT_MAX_BYTES <= 0 or settings.ATTACHMENT_MAX_PER_MESSAGE <= 0:
        problems.append(Error("ATTACHMENT_MAX_BYTES and ATTACHMENT_MAX_PER_MESSAGE must be positive.", id="chattalk.E021"))
    return problems


DEVELOPMENT_KEY_LINE = (
    "SECRET_KEY is not set: signing with the public development key, fine on your own machine; "
    "set SECRET_KEY before anyone else can reach this server."
)


def announce_development_key() -> None:
    """One line when a server starts on the development key. Said by the server (asgi.py), not by settings:
    settings are read by every manage.py command `scripts/run` runs first, which printed it three times."""
    if settings.USING_DEV_SECRET_KEY:
        logging.getLogger("chattalk").warning(DEVELOPMENT_KEY_LINE)
