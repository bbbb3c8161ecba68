"""Shared by the hostile-input, authorization-walk, metrics and security-settings tests: the cast of users
around one room, plain HTTP against a real server process, and a parser of the Prometheus text format."""

from __future__ import annotations

import itertools
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from accounts.models import User
from accounts.testing import access_token_for
from rooms.models import Room
from rooms.services import create_room, join_room

PASSWORD = "pw-Secret-123"
_counter = itertools.count(1)


def make_user(prefix: str = "sec") -> User:
    name = f"{prefix}{next(_counter)}"
    return User.objects.create_user(username=name, password=PASSWORD, nickname=name.title())


@dataclass
class Cast:
    """One room and everyone whose access to it is tested: its owner, a member, and an outsider who is
    logged in but not a member. Tokens are real access tokens."""

    room: Room
    owner: User
    member: User
    stranger: User

    def token(self, user: User) -> str:
        return access_token_for(user)


def make_cast(max_personnel: int = 50) -> Cast:
    owner, member, stranger = make_user("owner"), make_user("member"), make_user("stranger")
    room = create_room(owner=owner, title="private talk", max_personnel=max_personnel)
    join_room(room_id=room.pk, user=member)
    room.refresh_from_db()
    return Cast(room=room, owner=owner, member=member, stranger=stranger)


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body); HTTP errors are answers, not exceptions."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>[-+]?(?:[0-9.e+-]+|Inf|NaN))$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[str, Any]:
    """Strictly parse the text format: every line is a HELP, a TYPE or a sample of a declared family.

    Returns {"types": {family: type}, "samples": {(name, frozenset(labels)): value}}; raises AssertionError
    on any line a Prometheus server would reject."""
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    assert text.endswith("\n"), "the exposition ends with a newline"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ", 3)[2])
            continue
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}, line
            assert family not in types, f"family {family} declared twice"
            types[family] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"sample {name} has no TYPE line before it"
        labels = frozenset(_LABEL.findall(match["labels"] or ""))
        key = (name, labels)
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(match["value"])
    assert set(types) <= helps, "every family has a HELP line"
    return {"types": types, "samples": samples}


def sample(parsed: dict[str, Any], name: str, **labels: str) -> float:
    return parsed["samples"][(name, frozenset(labels.items()))]
