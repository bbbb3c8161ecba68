"""The replica's alias and router: without DATABASE_REPLICA_URL every read is the primary's; writes and
migrations never go to the replica, whatever instance they start from."""

from __future__ import annotations

import pytest
from django.conf import settings

from core.replica import REPLICA_ALIAS, PrimaryWritesRouter, ReplicaReads, replica_alias
from rooms.models import Room

PRIMARY_ONLY = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
WITH_REPLICA = {**PRIMARY_ONLY, REPLICA_ALIAS: {"ENGINE": "django.db.backends.postgresql", "NAME": "chattalk"}}


def test_without_a_replica_url_replica_safe_reads_go_to_the_primary(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(settings, "DATABASES", PRIMARY_ONLY)
    monkeypatch.setattr(ReplicaReads, "enabled", True)
    assert replica_alias() is None


def test_a_configured_replica_is_used_only_while_replica_reads_are_on(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(settings, "DATABASES", WITH_REPLICA)
    monkeypatch.setattr(ReplicaReads, "enabled", True)
    assert replica_alias() == REPLICA_ALIAS
    monkeypatch.setattr(ReplicaReads, "enabled", False)
    assert replica_alias() is None


def test_the_router_sends_writes_and_migrations_to_the_primary_only():
    router = PrimaryWritesRouter()
    read_from_replica = Room(pk=1)
    read_from_replica._state.db = REPLICA_ALIAS
    assert router.db_for_write(Room, instance=read_from_replica) == "default"
    assert router.db_for_read(Room) is None  # the call site's .using() decides; else the primary
    assert router.allow_migrate("default", "rooms") is True
    assert router.allow_migrate(REPLICA_ALIAS, "rooms") is False
