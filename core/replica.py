"""The PostgreSQL read replica (DATABASE_REPLICA_URL): which alias it is, and the router that keeps it read-only.

Nothing is read from the replica by guessing from the model: the few reads that may lag (history pages, a
socket's resume replay) name it at their call site with `.using(replica_alias())`, and each of them tops up
from the primary whatever the replica has not applied yet (messaging.services). Everything else, the hub's
gap fill above all, reads the primary: a gap read that returns nothing settles the gap for good
(realtime.streams), so it must never see a replica that lags.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

REPLICA_ALIAS = "replica"


class ReplicaReads:
    """Whether replica-safe reads use a configured replica. The test suite switches it on only for the
    replica tests (conftest.py): most tests keep their rows in a transaction that never commits, so no replica
    sees them, and pytest-django refuses queries to an alias that a test did not declare."""

    enabled = True


def replica_alias() -> str | None:
    """The replica's alias, or None when replica-safe reads have no replica to go to (read the primary)."""
    if not ReplicaReads.enabled or REPLICA_ALIAS not in settings.DATABASES:
        return None
    return REPLICA_ALIAS


class PrimaryWritesRouter:
    """Writes and migrations only ever go to the primary; reads go where their call site says (default: the
    primary). Without it, saving an instance read from the replica would be sent to the replica."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return None  # the call site's .using(), else the instance's own database, else the primary

    def db_for_write(self, model: type, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica holds the primary's rows: an object from either may point at the other

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS
