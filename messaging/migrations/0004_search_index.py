"""The full-text index of messages, per database (messaging.search explains the choice).

PostgreSQL: a stored generated tsvector column and a GIN index on (room_id, search_vector) through
btree_gin, so a search confined to the caller's rooms is answered inside one index. Building it on a big
table rewrites the table once (docs/BENCHMARKS.md records the cost).
SQLite: an FTS5 table kept by triggers, when this SQLite has FTS5 (else search falls back to LIKE).
"""

from __future__ import annotations

from django.db import migrations

POSTGRES_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS btree_gin",
    """ALTER TABLE messaging_message ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        to_tsvector('english'::regconfig, body) || to_tsvector('simple'::regconfig, search_terms)
    ) STORED""",
    """CREATE INDEX message_search ON messaging_message USING gin (room_id, search_vector)
        WHERE deleted_at IS NULL""",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS message_search",
    "ALTER TABLE messaging_message DROP COLUMN IF EXISTS search_vector",
]
SQLITE_FORWARD = [
    """CREATE VIRTUAL TABLE messaging_message_fts USING fts5(
        body, search_terms, content='messaging_message', content_rowid='id', tokenize='porter unicode61')""",
    """CREATE TRIGGER messaging_message_fts_insert AFTER INSERT ON messaging_message BEGIN
        INSERT INTO messaging_message_fts(rowid, body, search_terms) VALUES (new.id, new.body, new.search_terms);
    END""",
    """CREATE TRIGGER messaging_message_fts_delete AFTER DELETE ON messaging_message BEGIN
        INSERT INTO messaging_message_fts(messaging_message_fts, rowid, body, search_terms)
        VALUES ('delete', old.id, old.body, old.search_terms);
    END""",
    """CREATE TRIGGER messaging_message_fts_update AFTER UPDATE OF body, search_terms ON messaging_message BEGIN
        INSERT INTO messaging_message_fts(messaging_message_fts, rowid, body, search_terms)
        VALUES ('delete', old.id, old.body, old.search_terms);
        INSERT INTO messaging_message_fts(rowid, body, search_terms) VALUES (new.id, new.body, new.search_terms);
    END""",
    "INSERT INTO messaging_message_fts(messaging_message_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS messaging_message_fts_insert",
    "DROP TRIGGER IF EXISTS messaging_message_fts_delete",
    "DROP TRIGGER IF EXISTS messaging_message_fts_update",
    "DROP TABLE IF EXISTS messaging_message_fts",
]


def _sqlite_has_fts5(cursor) -> bool:  # type: ignore[no-untyped-def]
    cursor.execute("PRAGMA compile_options")
    return any("FTS5" in row[0] for row in cursor.fetchall())


def forward(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        if vendor == "postgresql":
            statements = POSTGRES_FORWARD
        elif vendor == "sqlite" and _sqlite_has_fts5(cursor):
            statements = SQLITE_FORWARD
        else:
            statements = []
        for statement in statements:
            cursor.execute(statement)


def backward(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    statements = POSTGRES_BACKWARD if vendor == "postgresql" else SQLITE_BACKWARD if vendor == "sqlite" else []
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("messaging", "0003_search_terms")]
    operations = [migrations.RunPython(forward, backward)]
