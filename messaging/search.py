"""Message search: full text over what the caller may read, ranked, with highlighted snippets.

PostgreSQL: a stored generated `search_vector` column (migration 0003) =
`to_tsvector('english', body) || to_tsvector('simple', search_terms)`, indexed with GIN on
(room_id, search_vector) (btree_gin), only for messages not deleted. English words are stemmed ("running"
finds "runs"). Korean (and Chinese, Japanese) is written without spaces between a word and its particles
("주소는", "주소를"), so a whitespace tokenizer would never find "주소": `search_terms` holds the overlapping
character bigrams (and single characters) of every CJK run, written by the service with the body, and a
CJK query matches all of its bigrams. That is the usual n-gram answer (as Elasticsearch's CJK bigram
filter does) without a server-side extension that a managed PostgreSQL may not offer.

SQLite (the embedded default): an FTS5 table over the same two columns, kept by triggers, porter-stemmed;
where this SQLite has no FTS5, a LIKE scan (correct, slow, fine for a demo's size).

Snippets come from the database (ts_headline, snippet()) with private-use sentinels around hits; the text
is then HTML-escaped and only the sentinels become <mark>: nothing of the body can inject markup.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db import connection

from accounts.models import User
from core.domain import InvalidInput
from rooms.models import Membership, history_floor
from rooms.services import require_member

from .models import MessageKind

QUERY_MAX_CHARS = 200
CJK_RUN_RE = re.compile(
    "[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+"
)
WORD_RE = re.compile(r"[^\W_]+")
MAX_QUERY_TERMS = 16
MARK_START, MARK_END = "\ue000", "\ue001"
SNIPPET_CHARS = 240
FTS_TABLE = "messaging_message_fts"


def cjk_terms(text: str) -> str:
    """The n-grams a CJK run is found by: each character and each pair of neighbours, space-separated."""
    terms: list[str] = []
    for run in CJK_RUN_RE.findall(text):
        terms.extend(run)
        terms.extend(run[i : i + 2] for i in range(len(run) - 1))
    return " ".join(terms)


@dataclass(frozen=True)
class ParsedQuery:
    words: list[str]  # non-CJK words, lower-cased
    cjk: list[str]  # the n-grams every match must hold: each run's bigrams (a 1-character run: itself)
    cjk_runs: list[str]  # the CJK runs as typed, for highlighting


def parse_query(q: Any) -> ParsedQuery:
    if not isinstance(q, str):
        raise InvalidInput(fields={"q": ["Must be text."]})
    q = q.strip()
    if not 1 <= len(q) <= QUERY_MAX_CHARS:
        raise InvalidInput(fields={"q": [f"Must be 1 to {QUERY_MAX_CHARS} characters."]})
    runs = CJK_RUN_RE.findall(q)
    cjk: list[str] = []
    for run in runs:
        grams = [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
        cjk.extend(g for g in grams if g not in cjk)
    words: list[str] = []
    for word in WORD_RE.findall(CJK_RUN_RE.sub(" ", q)):
        if word.lower() not in words:
            words.append(word.lower())
    if not words and not cjk:
        raise InvalidInput(fields={"q": ["Search for at least one letter or digit."]})
    if len(words) + len(cjk) > MAX_QUERY_TERMS:
        raise InvalidInput(fields={"q": [f"At most {MAX_QUERY_TERMS} terms."]})
    return ParsedQuery(words=words, cjk=cjk, cjk_runs=runs)


@dataclass(frozen=True)
class SearchFilters:
    room_id: int | None = None
    sender_id: int | None = None
    after: datetime | None = None
    before: datetime | None = None
    has_attachment: bool = False


def mark(snippet: str, cjk_runs: list[str]) -> str:
    """Escape the snippet and turn the hit sentinels (and the query's CJK runs) into <mark>."""
    for run in cjk_runs:
        snippet = snippet.replace(run, f"{MARK_START}{run}{MARK_END}")
    escaped = html.escape(snippet, quote=False)
    # Nested or doubled sentinels (a CJK run inside a database hit) collapse into one mark.
    escaped = re.sub(f"{MARK_START}+", MARK_START, escaped)
    escaped = re.sub(f"{MARK_END}+", MARK_END, escaped)
    escaped += MARK_END * max(0, escaped.count(MARK_START) - escaped.count(MARK_END))  # a mark cut by the snippet
    return escaped.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


def _tsquery_literal(terms: list[str]) -> str:
    return " & ".join("'" + term.replace("'", "''").replace("\\", "") + "'" for term in terms)


def _fts5_literal(terms: list[str]) -> str:
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


@lru_cache(maxsize=1)
def _sqlite_has_fts() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", [FTS_TABLE])
        return cursor.fetchone() is not None


def _filter_sql(filters: SearchFilters, alias: str) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if filters.room_id is not None:
        clauses.append(f"{alias}.room_id = %s")
        params.append(filters.room_id)
    if filters.sender_id is not None:
        clauses.append(f"{alias}.sender_id = %s")
        params.append(filters.sender_id)
    if filters.after is not None:
        clauses.append(f"{alias}.created_at >= %s")
        params.append(filters.after)
    if filters.before is not None:
        clauses.append(f"{alias}.created_at < %s")
        params.append(filters.before)
    if filters.has_attachment:
        clauses.append(f"EXISTS (SELECT 1 FROM messaging_attachment a WHERE a.message_id = {alias}.id)")  # noqa: S608
    return "".join(f" AND {c}" for c in clauses), params


class MessageSearch:
    """A lazy result list for Django's Paginator: count() and a slice each run one query."""

    def __init__(self, user: User, query: ParsedQuery, filters: SearchFilters):
        self.user, self.query, self.filters = user, query, filters
        self._count: int | None = None
        self._rooms: tuple[str, list[Any]] | None = None

    # --- SQL per database ------------------------------------------------------------------------------
    def _readable(self) -> tuple[str, list[Any]]:
        """What the caller may read, as one SQL condition on `m`: the rooms they are an active member of
        (membership's one definition, Membership.objects.active()), read once per search and passed as one
        array, and in a room that shows history "since_join" only the seqs after their join.

        An array parameter rather than a subquery: PostgreSQL's planner then estimates the rooms and uses
        the room index, where the subquery made it scan every hit of the word in every room."""
        if self._rooms is None:
            whole: list[int] = []
            clauses: list[str] = []
            params: list[Any] = []
            memberships = (
                Membership.objects.active()
                .filter(user_id=self.user.pk)
                .select_related("room")
                .only("room_id", "visible_after_seq", "room__history_visibility")
            )
            for membership in memberships:
                floor = history_floor(membership)  # the one rule of what a member may read
                if floor:
                    clauses.append("(m.room_id = %s AND m.seq > %s)")
                    params += [membership.room_id, floor]
                else:
                    whole.append(membership.room_id)
            if whole and connection.vendor == "postgresql":
                clauses.insert(0, "m.room_id = ANY(%s)")
                params.insert(0, whole)
            elif whole:
                clauses.insert(0, f"m.room_id IN ({', '.join(['%s'] * len(whole))})")
                params[:0] = whole
            self._rooms = ("(" + " OR ".join(clauses) + ")" if clauses else "(1 = 0)", params)
        return self._rooms

    def _postgres(self, select: str, select_params: list[Any], tail: str, tail_params: list[Any]) -> tuple[str, list[Any]]:
        readable, readable_params = self._readable()
        parts, query_params = [], []
        if self.query.words:
            parts.append("to_tsquery('english'::regconfig, %s)")
            query_params.append(_tsquery_literal(self.query.words))
        if self.query.cjk:
            parts.append("to_tsquery('simple'::regconfig, %s)")
            query_params.append(_tsquery_literal(self.query.cjk))
        where, where_params = _filter_sql(self.filters, "m")
        sql = (
            f"WITH q AS (SELECT {' && '.join(parts)} AS query) SELECT {select} FROM messaging_message m, q "  # noqa: S608
            f"WHERE {readable} AND m.deleted_at IS NULL AND m.kind = %s "
            f"AND m.search_vector @@ q.query{where}{tail}"
        )
        params = [*query_params, *select_params, *readable_params, MessageKind.TALK.value, *where_params, *tail_params]
        return sql, params

    def _sqlite(self, select: str, select_params: list[Any], tail: str, tail_params: list[Any]) -> tuple[str, list[Any]]:
        readable, readable_params = self._readable()
        where, where_params = _filter_sql(self.filters, "m")
        terms = self.query.words + self.query.cjk
        if _sqlite_has_fts():
            source = f"{FTS_TABLE} JOIN messaging_message m ON m.id = {FTS_TABLE}.rowid"
            match, match_params = f" AND {FTS_TABLE} MATCH %s", [_fts5_literal(terms)]
        else:
            source = "messaging_message m"
            match = "".join(" AND (lower(m.body) LIKE %s OR m.search_terms LIKE %s)" for _ in terms)
            match_params = [p for t in terms for p in (f"%{t}%", f"%{t}%")]
        sql = (
            f"SELECT {select} FROM {source} WHERE {readable} AND m.deleted_at IS NULL "  # noqa: S608
            f"AND m.kind = %s{match}{where}{tail}"
        )
        params = [*select_params, *readable_params, MessageKind.TALK.value, *match_params, *where_params, *tail_params]
        return sql, params

    def _run(self, select: str, select_params: list[Any], tail: str = "", tail_params: list[Any] | None = None) -> list[Any]:
        build = self._postgres if connection.vendor == "postgresql" else self._sqlite
        sql, params = build(select, select_params, tail, tail_params or [])
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    # --- the Paginator's interface ---------------------------------------------------------------------
    def count(self) -> int:
        if self._count is None:
            self._count = int(self._run("COUNT(*)", [])[0][0])
        return self._count

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, page: slice) -> list[tuple[int, str]]:
        """(message id, marked snippet) for one page, best first."""
        if not isinstance(page, slice):
            raise TypeError("a search is read a page at a time")
        offset = page.start or 0
        limit = max(0, (page.stop if page.stop is not None else offset + 50) - offset)
        page_tail = " LIMIT %s OFFSET %s"
        if connection.vendor == "postgresql":
            options = (
                f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=12, ShortWord=2, "
                'MaxFragments=2, FragmentDelimiter=" … "'
            )
            rows = self._run(
                "m.id, ts_headline('english'::regconfig, m.body, q.query, %s)",
                [options],
                " ORDER BY ts_rank_cd(m.search_vector, q.query) DESC, m.created_at DESC, m.id DESC" + page_tail,
                [limit, offset],
            )
        elif _sqlite_has_fts():
            rows = self._run(
                f"m.id, snippet({FTS_TABLE}, 0, %s, %s, ' … ', 24)",
                [MARK_START, MARK_END],
                f" ORDER BY bm25({FTS_TABLE}), m.created_at DESC, m.id DESC" + page_tail,
                [limit, offset],
            )
        else:
            rows = self._run("m.id, m.body", [], " ORDER BY m.created_at DESC, m.id DESC" + page_tail, [limit, offset])
        return [(int(message_id), mark(_shorten(text or ""), self.query.cjk_runs)) for message_id, text in rows]


def _shorten(text: str) -> str:
    if len(text) <= SNIPPET_CHARS:
        return text
    return text[:SNIPPET_CHARS].rstrip() + "…"


def search_messages(*, user: User, q: Any, filters: SearchFilters) -> MessageSearch:
    """The lazy, paged result of a search by `user`: only messages of rooms they are an active member of,
    never deleted ones, ranked best first."""
    query = parse_query(q)
    if filters.room_id is not None:
        require_member(filters.room_id, user)  # a room one may not read is refused as on every room path
    return MessageSearch(user, query, filters)
