"""Presence in MongoDB through mongoengine: the documents and their indexes are declared with mongoengine;
the hot operations use the collection's atomic single-document writes (update_one/bulk upserts, $max,
delete_one), never find-then-save. find_one_and_update is avoided on purpose (it slows as collections grow
on SecantusDB; see the project's SERVICES notes), and the collections stay small: one document per live
socket, one per (room, user).

Timeouts are short so that a MongoDB outage costs a caller two seconds, not thirty: presence is degraded
then, and chat keeps going.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import mongoengine
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from .base import ConnectionRecord, PresenceBackend, PresenceUnavailable, RoomUserState

ALIAS = "presence"
FAIL_FAST_SECONDS = 1.0


class MongoConnection(mongoengine.Document):
    connection_id = mongoengine.StringField(primary_key=True)
    room_id = mongoengine.IntField(required=True)
    user_id = mongoengine.IntField(required=True)
    process_id = mongoengine.StringField(required=True)
    connected_at = mongoengine.DateTimeField(required=True)
    heartbeat_at = mongoengine.DateTimeField(required=True)
    meta = {
        "db_alias": ALIAS,
        "collection": "presence_connections",
        "indexes": [("room_id", "user_id"), "process_id", "heartbeat_at"],
        "auto_create_index": False,
    }


class MongoRoomUser(mongoengine.Document):
    key = mongoengine.StringField(primary_key=True)  # "<room_id>:<user_id>"
    room_id = mongoengine.IntField(required=True)
    user_id = mongoengine.IntField(required=True)
    left_at = mongoengine.DateTimeField(null=True)
    last_seen_at = mongoengine.DateTimeField(null=True)
    meta = {
        "db_alias": ALIAS,
        "collection": "presence_room_users",
        "indexes": ["room_id"],
        "auto_create_index": False,
    }


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _record(doc: dict[str, Any]) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=str(doc["_id"]),
        room_id=int(doc["room_id"]),
        user_id=int(doc["user_id"]),
        process_id=str(doc["process_id"]),
        connected_at=doc["connected_at"],
        heartbeat_at=doc["heartbeat_at"],
    )


def _upsert(record: ConnectionRecord, at: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """Filter and update of one connection's upsert: refresh the heartbeat, create it if it is missing."""
    return (
        {"_id": record.connection_id},
        {
            "$set": {"heartbeat_at": at, "process_id": record.process_id},
            "$setOnInsert": {"room_id": record.room_id, "user_id": record.user_id, "connected_at": record.connected_at},
        },
    )


class MongoPresenceBackend(PresenceBackend):
    name = "mongo"

    def __init__(self, uri: str, timeout_ms: int = 2000):
        self.uri = uri
        mongoengine.connect(
            host=uri,
            alias=ALIAS,
            tz_aware=True,
            uuidRepresentation="standard",
            connect=False,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms * 2,
            retryWrites=True,
        )
        self._indexes_ready = False
        self._unreachable_until = 0.0

    # Every call goes through here: pymongo errors become PresenceUnavailable, indexes are made once.
    def _collections(self) -> tuple[Collection, Collection]:
        if not self._indexes_ready:
            MongoConnection.ensure_indexes()
            MongoRoomUser.ensure_indexes()
            self._indexes_ready = True
        return MongoConnection._get_collection(), MongoRoomUser._get_collection()

    def _run(self, operation: Any, probe: bool = False) -> Any:
        # Right after a failure, callers fail fast for a moment instead of each waiting out the timeout
        # (a burst of snapshot reads during an outage would otherwise hold worker threads for seconds).
        if not probe and time.monotonic() < self._unreachable_until:
            raise PresenceUnavailable("MongoDB was unreachable a moment ago")
        try:
            result = operation(*self._collections())
        except PyMongoError as exc:
            self._unreachable_until = time.monotonic() + FAIL_FAST_SECONDS
            raise PresenceUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
        self._unreachable_until = 0.0
        return result

    def ping(self) -> None:
        def ping(conns: Collection, _pairs: Collection) -> None:
            conns.database.client.admin.command("ping")

        self._run(ping, probe=True)

    def remove_connection(self, connection_id: str) -> bool:
        return bool(self._run(lambda conns, _pairs: conns.delete_one({"_id": connection_id}).deleted_count))

    def upsert_connections(self, records: Iterable[ConnectionRecord], at: datetime) -> list[str]:
        batch = list(records)

        def upsert(conns: Collection, _pairs: Collection) -> list[str]:
            created: list[str] = []
            for start in range(0, len(batch), 500):
                chunk = batch[start : start + 500]
                result = conns.bulk_write([UpdateOne(*_upsert(r, at), upsert=True) for r in chunk], ordered=False)
                created += [str(i) for i in result.upserted_ids.values()]
            return created

        return list(self._run(upsert)) if batch else []

    def remove_connections(self, connection_ids: Iterable[str]) -> list[str]:
        ids = list(connection_ids)
        if len(ids) == 1:
            return ids if self.remove_connection(ids[0]) else []

        def remove(conns: Collection, _pairs: Collection) -> list[str]:
            present = [str(d["_id"]) for d in conns.find({"_id": {"$in": ids}}, {"_id": 1})]
            if present:
                conns.delete_many({"_id": {"$in": present}})
            return present

        return list(self._run(remove)) if ids else []

    def touch_process(self, process_id: str, at: datetime) -> int:
        return int(
            self._run(
                lambda conns, _pairs: conns.update_many({"process_id": process_id}, {"$set": {"heartbeat_at": at}}).matched_count
            )
        )

    def connections_of_process(self, process_id: str) -> list[ConnectionRecord]:
        return self._run(lambda conns, _pairs: [_record(d) for d in conns.find({"process_id": process_id})])

    def stale_connections(self, older_than: datetime, limit: int = 500) -> list[ConnectionRecord]:
        return self._run(
            lambda conns, _pairs: [
                _record(d)
                for d in conns.find({"heartbeat_at": {"$lt": older_than}}).sort("heartbeat_at", 1).limit(limit)
            ]
        )

    def _move_forward(self, room_id: int, user_id: int, fields: dict[str, datetime]) -> None:
        self._run(
            lambda _conns, pairs: pairs.update_one(
                {"_id": f"{room_id}:{user_id}"},
                {"$max": fields, "$setOnInsert": {"room_id": room_id, "user_id": user_id}},
                upsert=True,
            )
        )

    def mark_absent(self, room_id: int, user_id: int, at: datetime) -> None:
        self._move_forward(room_id, user_id, {"left_at": at, "last_seen_at": at})

    def states(
        self, room_ids: Iterable[int], live_since: datetime, user_ids: Iterable[int] | None = None
    ) -> dict[tuple[int, int], RoomUserState]:
        pair_query: dict[str, Any] = {"room_id": {"$in": [int(r) for r in room_ids]}}
        if user_ids is not None:
            pair_query["user_id"] = {"$in": [int(u) for u in user_ids]}
        live_query = {**pair_query, "heartbeat_at": {"$gte": live_since}}

        def read(conns: Collection, pairs: Collection) -> dict[tuple[int, int], RoomUserState]:
            found: dict[tuple[int, int], RoomUserState] = {}
            for doc in pairs.find(pair_query):
                found[(int(doc["room_id"]), int(doc["user_id"]))] = RoomUserState(
                    0, doc.get("left_at"), doc.get("last_seen_at")
                )
            # Grouped here rather than with $aggregate: a find on the (room_id, user_id) index is several
            # times cheaper on SecantusDB, and a room's live sockets are few enough to count in Python.
            live: dict[tuple[int, int], tuple[int, datetime]] = {}
            for doc in conns.find(live_query, {"room_id": 1, "user_id": 1, "heartbeat_at": 1}):
                key = (int(doc["room_id"]), int(doc["user_id"]))
                n, seen = live.get(key, (0, doc["heartbeat_at"]))
                live[key] = (n + 1, max(seen, doc["heartbeat_at"]))
            for key, (n, seen) in live.items():
                old = found.get(key, RoomUserState(0, None, None))
                found[key] = RoomUserState(n, old.left_at, _later(old.last_seen_at, seen))
            return found

        return self._run(read)

    def live_connections(self, limit: int = 1000) -> list[ConnectionRecord]:
        return self._run(lambda conns, _pairs: [_record(d) for d in conns.find().sort("connected_at", -1).limit(limit)])

    def forget_room(self, room_id: int) -> None:
        def forget(conns: Collection, pairs: Collection) -> None:
            conns.delete_many({"room_id": room_id})
            pairs.delete_many({"room_id": room_id})

        self._run(forget)

    def clear(self) -> None:
        def clear(conns: Collection, pairs: Collection) -> None:
            conns.delete_many({})
            pairs.delete_many({})

        self._run(clear)
