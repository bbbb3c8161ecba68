"""The message lifecycle over real sockets on two server processes: a client that was away while messages were
sent, edited, deleted, reacted to and replied to resumes into exactly the state of a client that stayed; only
the sender edits; nobody outside the room sees or changes anything; a deleted body is gone from every read.

Writers act through process B (sockets and REST); readers listen on process A and resume on B, so every
change crosses the channel layer (Redis) as well as the database.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from accounts.testing import access_token_for
from events.models import OutboxEvent
from messaging.models import Message, MessageEdit, Reaction
from messaging.services import REPLY_EXCERPT_CHARS
from messaging.testing import ChatClient
from rooms.models import Room

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Small replay pages, so that a resume spans several pages while writes go on.
SERVER_ENV = {"RATE_LIMITS": "off", "WS_REPLAY_PAGE_SIZE": "3"}


# --- what a client makes of its frames -------------------------------------------------------------------
def seq_of(frame: dict[str, Any]) -> int | None:
    """The room seq a frame carries: a message at its creation seq, a change at the seq the change took."""
    if frame.get("type") == "message":
        return int(frame["message"]["seq"])
    if frame.get("type") == "message.updated":
        return int(frame["seq"])
    return None


def stream_seqs(*clients: ChatClient) -> list[int]:
    return [s for client in clients for s in (seq_of(f) for f in client.frames) if s is not None]


def last_seq_seen(client: ChatClient) -> int:
    return max(stream_seqs(client), default=0)


def assert_strictly_increasing(seqs: list[int], what: str) -> None:
    assert seqs, f"{what}: no room events at all"
    descents = [(a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b <= a]
    assert not descents, f"{what}: seqs not strictly increasing (duplicate or out of order) at {descents[:5]}"


def fold(*clients: ChatClient) -> dict[int, dict[str, Any]]:
    """The messages a client shows: each `message` and `message.updated` applied by message id, in arrival order."""
    state: dict[int, dict[str, Any]] = {}
    for client in clients:
        for frame in client.frames:
            if frame.get("type") in ("message", "message.updated"):
                state[frame["message"]["id"]] = frame["message"]
    return state


def quotes_from_originals(state: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """A reply's quote as the client renders it: from the original it holds (the contract: a frame's
    `reply_to` is the original as it was when that frame was made, so a client that stayed holds a quote
    made before a later edit of the original; the edit's own frame tells it what the original is now)."""
    shown: dict[int, dict[str, Any]] = {}
    for message_id, message in state.items():
        reply = message["reply_to"]
        original = state.get(reply["id"]) if reply is not None else None
        if original is not None:
            deleted = original["deleted_at"] is not None
            excerpt = "" if deleted else original["body"][:REPLY_EXCERPT_CHARS]
            message = {**message, "reply_to": {**reply, "excerpt": excerpt, "deleted": deleted}}
        shown[message_id] = message
    return shown


# --- acting through process B ----------------------------------------------------------------------------
async def send(client: ChatClient, body: str, reply_to: int | None = None) -> dict[str, Any]:
    """Send and wait for the ack: {seq, id}."""
    client_id = f"c{len(client.frames)}-{abs(hash(body)) % 10**8}"
    frame: dict[str, Any] = {"type": "send", "client_id": client_id, "body": body}
    if reply_to is not None:
        frame["reply_to"] = reply_to
    await client.send_json(frame)
    await client.wait_until(
        lambda c: any(a.get("client_id") == client_id for a in c.of_type("ack") + c.of_type("error"))
    )
    answer = next(a for a in client.of_type("ack") + client.of_type("error") if a.get("client_id") == client_id)
    assert answer["type"] == "ack", answer
    return answer


async def change(client: ChatClient, frame: dict[str, Any]) -> dict[str, Any]:
    """An edit/delete/react frame; the answer is the `message.updated` of that message, or an error."""
    start = len(client.frames)

    def answer(c: ChatClient) -> dict[str, Any] | None:
        for f in c.frames[start:]:
            if f.get("type") == "error" or (
                f.get("type") == "message.updated" and f["message"]["id"] == frame["message_id"]
            ):
                return f
        return None

    await client.wait_until(lambda c: answer(c) is not None)
    return answer(client)  # type: ignore[return-value]


async def frame_change(client: ChatClient, frame: dict[str, Any]) -> dict[str, Any]:
    await client.send_json(frame)
    return await change(client, frame)


def http(base: str, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any, str]:
    """One request to a server process: (status, JSON, raw text)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    return status, (json.loads(raw) if raw else None), raw


async def ahttp(*args: Any, **kwargs: Any) -> tuple[int, Any, str]:
    return await asyncio.to_thread(http, *args, **kwargs)


def orm(read: Callable[[], Any]) -> Any:
    """An ORM read from inside the scenario's event loop: in a thread with its own connection, closed after."""

    def run() -> Any:
        try:
            return read()
        finally:
            connection.close()

    return asyncio.to_thread(run)


def room_last_seq(room_id: int) -> Any:
    return orm(lambda: Room.objects.values_list("last_seq", flat=True).get(pk=room_id))


# --- (a) away and back -----------------------------------------------------------------------------------
def test_a_client_away_while_messages_were_sent_edited_deleted_reacted_to_and_replied_to_on_another_process_resumes_into_the_state_of_one_that_stayed(  # noqa: E501
    server_factory, room_with_members
):
    a_server = server_factory(env=SERVER_ENV, name="a")
    b_server = server_factory(env=SERVER_ENV, name="b")
    room, (owner, alice, bob, carol) = room_with_members(4)
    token = {u.pk: access_token_for(u) for u in (owner, alice, bob, carol)}

    async def scenario() -> None:
        # Everyone reads from the beginning: each client's fold holds the whole room.
        stayed = await ChatClient(a_server.ws_url, room.pk, token[bob.pk], after_seq=0).connect()
        away_same_user = await ChatClient(a_server.ws_url, room.pk, token[bob.pk], after_seq=0).connect()
        away_other = await ChatClient(a_server.ws_url, room.pk, token[carol.pk], after_seq=0).connect()
        alice_b = await ChatClient(b_server.ws_url, room.pk, token[alice.pk]).connect()
        owner_b = await ChatClient(b_server.ws_url, room.pk, token[owner.pk]).connect()
        for client in (stayed, away_same_user, away_other, alice_b, owner_b):
            await client.send_json({"type": "ping"})
            await client.wait_until(lambda c: c.of_type("pong"))

        # Before anyone leaves: a few messages, an edit, a reaction.
        m = [await send(alice_b, f"before {i}") for i in range(4)]
        await frame_change(alice_b, {"type": "edit", "message_id": m[0]["id"], "body": "before 0, fixed"})
        await frame_change(owner_b, {"type": "react", "message_id": m[1]["id"], "emoji": "thumbsup", "on": True})
        phase_one = await room_last_seq(room.pk)
        for client in (stayed, away_same_user, away_other):
            await client.wait_until(lambda c: last_seq_seen(c) == phase_one)
        left_at = {c: last_seq_seen(c) for c in (away_same_user, away_other)}
        await away_same_user.close()
        await away_other.close()

        # While they are away, through process B: sends, replies, edits, reactions on and off, deletions, both
        # by socket frames and by REST; retried changes that change nothing; a refused edit.
        reply = await send(owner_b, "answering before 1", reply_to=m[1]["id"])
        reply_to_deleted = await send(owner_b, "answering before 2", reply_to=m[2]["id"])
        new = [await send(alice_b, f"away {i} @{bob.username}") for i in range(3)]
        await frame_change(alice_b, {"type": "edit", "message_id": m[1]["id"], "body": "before 1, edited later"})
        await frame_change(alice_b, {"type": "edit", "message_id": new[0]["id"], "body": "away 0, once"})
        await frame_change(alice_b, {"type": "edit", "message_id": new[0]["id"], "body": "away 0, twice"})
        status, _, _ = await ahttp(
            b_server.http_url, "PATCH", f"/api/rooms/{room.pk}/messages/{new[1]['id']}", token[alice.pk],
            {"body": "away 1, edited over REST"},
        )  # fmt: skip
        assert status == 200
        for emoji, user in (("tada", owner), ("tada", alice), ("eyes", owner)):
            await frame_change(
                owner_b if user == owner else alice_b,
                {"type": "react", "message_id": new[2]["id"], "emoji": emoji, "on": True},
            )
        await frame_change(owner_b, {"type": "react", "message_id": new[2]["id"], "emoji": "tada", "on": False})
        status, _, _ = await ahttp(
            b_server.http_url, "PUT", f"/api/rooms/{room.pk}/messages/{m[3]['id']}/reactions/fire", token[alice.pk]
        )
        assert status == 200
        status, _, _ = await ahttp(
            b_server.http_url, "DELETE", f"/api/rooms/{room.pk}/messages/{m[1]['id']}/reactions/thumbsup",
            token[owner.pk],
        )  # fmt: skip
        assert status == 200
        before_retries = await room_last_seq(room.pk)
        status, _, _ = await ahttp(
            b_server.http_url, "PUT", f"/api/rooms/{room.pk}/messages/{m[3]['id']}/reactions/fire", token[alice.pk]
        )
        assert status == 200
        refused = await frame_change(alice_b, {"type": "edit", "message_id": reply["id"], "body": "not mine"})
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
        assert await room_last_seq(room.pk) == before_retries, "a retried or refused change takes no seq"
        await frame_change(alice_b, {"type": "delete", "message_id": m[2]["id"]})  # the sender
        status, _, _ = await ahttp(
            b_server.http_url, "DELETE", f"/api/rooms/{room.pk}/messages/{new[1]['id']}", token[owner.pk]
        )  # the room's owner deletes a member's message
        assert status == 200
        last = await send(alice_b, "the last word", reply_to=reply["id"])

        final = await room_last_seq(room.pk)
        await stayed.wait_until(lambda c: last_seq_seen(c) == final)
        # 6 sends, 4 edits, 6 reactions on and off, 2 deletions: one seq each; the retry and the refusal none.
        assert final == phase_one + 18

        # Back, on the other process, each from the last seq it saw.
        back = {
            away_same_user: ChatClient(b_server.ws_url, room.pk, token[bob.pk], after_seq=left_at[away_same_user]),
            away_other: ChatClient(b_server.ws_url, room.pk, token[carol.pk], after_seq=left_at[away_other]),
        }
        for before, after in back.items():
            await after.connect()
            await after.wait_until(lambda c: c.of_type("synced"))
            assert after.of_type("synced")[0]["last_seq"] == final
            assert_strictly_increasing(stream_seqs(after), "the resumed socket")
            assert_strictly_increasing(stream_seqs(before, after), "across the two sockets of one client")

        assert_strictly_increasing(stream_seqs(stayed), "the socket that stayed")
        expected = fold(stayed)
        assert expected[m[2]["id"]]["deleted_at"] is not None and expected[m[2]["id"]]["body"] == ""
        assert expected[new[0]["id"]]["body"] == "away 0, twice"
        assert [(r["emoji"], r["count"]) for r in expected[new[2]["id"]]["reactions"]] == [("tada", 1), ("eyes", 1)]
        assert expected[m[1]["id"]]["reactions"] == []
        assert expected[reply_to_deleted["id"]]["reply_to"]["id"] == m[2]["id"]
        assert expected[last["id"]]["reply_to"]["excerpt"] == "answering before 1"
        for before, after in back.items():
            resumed = fold(before, after)
            assert quotes_from_originals(resumed) == quotes_from_originals(expected)
            # Everything but a reply's quote is equal frame for frame: the quote differs only where the
            # original changed after the reply was sent (the stayed client's frame predates the change).
            strip = {i: {**msg, "reply_to": (msg["reply_to"] or {}).get("id")} for i, msg in expected.items()}
            assert {i: {**msg, "reply_to": (msg["reply_to"] or {}).get("id")} for i, msg in resumed.items()} == strip

        for client in (stayed, alice_b, owner_b, *back.values()):
            await client.close()

    asyncio.run(scenario())


def test_a_resume_frame_mid_connection_while_changes_go_on_ends_in_the_state_of_the_client_that_stayed(
    server_factory, room_with_members
):
    a_server = server_factory(env=SERVER_ENV, name="a")
    b_server = server_factory(env=SERVER_ENV, name="b")
    room, (owner, alice, bob) = room_with_members(3)

    async def scenario() -> None:
        stayed = await ChatClient(a_server.ws_url, room.pk, access_token_for(bob), after_seq=0).connect()
        resuming = await ChatClient(a_server.ws_url, room.pk, access_token_for(bob), after_seq=0).connect()
        alice_b = await ChatClient(b_server.ws_url, room.pk, access_token_for(alice)).connect()
        owner_b = await ChatClient(b_server.ws_url, room.pk, access_token_for(owner)).connect()
        m = [await send(alice_b, f"message {i}") for i in range(12)]
        settled = await room_last_seq(room.pk)
        await resuming.wait_until(lambda c: last_seq_seen(c) == settled)
        restart_after = m[3]["seq"]  # the client lost what it had after this seq (a crashed tab, say)

        async def changes_meanwhile() -> None:
            for i in range(0, 12, 2):
                await frame_change(alice_b, {"type": "edit", "message_id": m[i]["id"], "body": f"message {i}, edited"})
                await frame_change(owner_b, {"type": "react", "message_id": m[i + 1]["id"], "emoji": "ok", "on": True})
            await frame_change(alice_b, {"type": "delete", "message_id": m[5]["id"]})
            await frame_change(owner_b, {"type": "react", "message_id": m[1]["id"], "emoji": "ok", "on": False})
            await send(alice_b, "after all that")

        await asyncio.sleep(1.1)  # one resume per second per socket; its opening replay was one
        frames_before_resume = len(resuming.frames)
        writer = asyncio.ensure_future(changes_meanwhile())
        await resuming.send_json({"type": "resume", "after_seq": restart_after})
        await writer
        final = await room_last_seq(room.pk)
        for client in (stayed, resuming):
            await client.wait_until(lambda c: last_seq_seen(c) == final and c.of_type("synced"))
        await resuming.wait_until(lambda c: len(c.of_type("synced")) == 2)
        assert resuming.of_type("error") == []

        # The resume restarts the stream once, right after the claimed seq; before and after, strictly rising.
        seqs = stream_seqs(resuming)
        restarts = [i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]]
        assert len(restarts) <= 1, f"the stream restarted more than once: {seqs}"
        cut = restarts[0] if restarts else len(seqs)
        assert_strictly_increasing(seqs[:cut], "before the resume")
        replayed = [seq_of(f) for f in resuming.frames[frames_before_resume:] if seq_of(f) is not None]
        assert replayed[0] == restart_after + 1, "the replay starts right after the claimed seq"
        assert_strictly_increasing(replayed, "from the resume on")
        assert_strictly_increasing(stream_seqs(stayed), "the socket that stayed")
        assert fold(resuming) == fold(stayed)
        assert fold(stayed)[m[5]["id"]]["deleted_at"] is not None
        for client in (stayed, resuming, alice_b, owner_b):
            await client.close()

    asyncio.run(scenario())


# --- (b) who may change and see --------------------------------------------------------------------------
def test_only_the_sender_edits_and_nobody_outside_the_room_sees_or_changes_anything_over_rest_graphql_and_sockets(
    server_factory, room_with_members, make_user
):
    from rooms.services import create_room

    a_server = server_factory(env=SERVER_ENV, name="a")
    b_server = server_factory(env=SERVER_ENV, name="b")
    room, (owner, alice, bob) = room_with_members(3)
    outsider = make_user()
    own_room = create_room(owner=outsider, title="elsewhere", max_personnel=10)
    token = {u.pk: access_token_for(u) for u in (owner, alice, bob, outsider)}
    base = b_server.http_url

    async def scenario() -> None:
        alice_b = await ChatClient(b_server.ws_url, room.pk, token[alice.pk]).connect()
        bob_a = await ChatClient(a_server.ws_url, room.pk, token[bob.pk]).connect()
        watcher = await ChatClient(a_server.ws_url, room.pk, token[owner.pk]).connect()
        outsider_a = await ChatClient(a_server.ws_url, own_room.pk, token[outsider.pk]).connect()
        outsider_b = await ChatClient(b_server.ws_url, own_room.pk, token[outsider.pk]).connect()
        for client in (alice_b, bob_a, watcher, outsider_a, outsider_b):
            await client.send_json({"type": "ping"})
            await client.wait_until(lambda c: c.of_type("pong"))
        target = await send(alice_b, f"alice's own words, @{outsider.username} and @{bob.username}")
        await frame_change(bob_a, {"type": "react", "message_id": target["id"], "emoji": "wave", "on": True})
        seq_before = await room_last_seq(room.pk)
        message_path = f"/api/rooms/{room.pk}/messages/{target['id']}"

        # A member who is not the sender may not edit: REST and socket, on both processes; the owner neither.
        for who in (bob, owner):
            status, answer, _ = await ahttp(base, "PATCH", message_path, token[who.pk], {"body": "hijacked"})
            assert (status, answer["code"]) == (403, "forbidden"), answer
        refused = await frame_change(bob_a, {"type": "edit", "message_id": target["id"], "body": "hijacked"})
        assert (refused["code"], refused["message_id"]) == ("forbidden", target["id"])
        # ...nor delete it (bob is neither its sender, nor the owner, nor staff).
        status, answer, _ = await ahttp(base, "DELETE", message_path, token[bob.pk])
        assert (status, answer["code"]) == (403, "forbidden")
        refused = await frame_change(bob_a, {"type": "delete", "message_id": target["id"]})
        assert refused["code"] == "forbidden"

        # Someone outside the room: no read, no change, by any path.
        outsider_calls = [
            ("GET", f"/api/rooms/{room.pk}/messages?after_seq=0", None),
            ("PATCH", message_path, {"body": "outside"}),
            ("DELETE", message_path, None),
            ("PUT", f"{message_path}/reactions/wave", None),
            ("DELETE", f"{message_path}/reactions/wave", None),
            ("POST", f"/api/rooms/{room.pk}/messages", {"client_id": "x1", "body": "outside", "reply_to": None}),
            ("POST", f"/api/rooms/{room.pk}/read", {"seq": 1}),
        ]
        for method, path, body in outsider_calls:
            status, answer, raw = await ahttp(base, method, path, token[outsider.pk], body)
            assert (status, answer["code"]) == (403, "not_member"), (method, path, answer)
            assert "alice's own words" not in raw
        query = {"query": f"{{ missedMessages(roomId: {room.pk}) {{ id body }} }}"}
        status, answer, raw = await ahttp(base, "POST", "/graphql", token[outsider.pk], query)
        assert status == 200 and (answer.get("data") or {}).get("missedMessages") is None, answer
        assert answer["errors"][0]["extensions"]["code"] == "not_member"
        assert "alice's own words" not in raw
        closed = await ChatClient(a_server.ws_url, room.pk, token[outsider.pk], after_seq=0).connect()
        assert await closed.wait_closed() == 4403 and stream_seqs(closed) == []
        # From a socket of their own room, the message id of another room is not found; a reply to it neither.
        for frame in (
            {"type": "edit", "message_id": target["id"], "body": "outside"},
            {"type": "delete", "message_id": target["id"]},
            {"type": "react", "message_id": target["id"], "emoji": "wave", "on": True},
            {"type": "react", "message_id": target["id"], "emoji": "wave", "on": False},
        ):
            refused = await frame_change(outsider_b, frame)
            assert (refused["code"], refused["message_id"]) == ("not_found", target["id"]), (frame, refused)
        await outsider_b.send_json({"type": "send", "client_id": "r1", "body": "quoting", "reply_to": target["id"]})
        await outsider_b.wait_until(lambda c: any(f.get("client_id") == "r1" for f in c.of_type("error")))
        assert outsider_b.of_type("error")[-1]["code"] == "invalid_reply"
        await outsider_b.send_json({"type": "resume", "after_seq": 0})
        await outsider_b.wait_until(lambda c: c.of_type("synced"))

        # Nothing changed, no seq was taken, and meanwhile a last change reaches members but no outsider.
        assert await room_last_seq(room.pk) == seq_before
        stored = await orm(lambda: Message.objects.get(pk=target["id"]))
        assert stored.body.startswith("alice's own words") and stored.deleted_at is None and stored.edited_at is None
        reactions = await orm(
            lambda: list(Reaction.objects.filter(message_id=target["id"]).values_list("emoji", "user"))
        )
        assert reactions == [("wave", bob.pk)]
        await frame_change(alice_b, {"type": "edit", "message_id": target["id"], "body": "alice, edited by alice"})
        await watcher.wait_until(lambda c: fold(c)[target["id"]]["body"] == "alice, edited by alice")
        await asyncio.sleep(0.5)  # what would reach an outsider's socket has had time to arrive
        for client in (outsider_a, outsider_b):
            leaked = [f for f in client.frames if "alice" in json.dumps(f) or f.get("room_id") == room.pk]
            assert leaked == [], leaked
            assert {m["room"] for m in fold(client).values()} <= {own_room.pk}
        assert bob_a.of_type("mention"), "a member named in the message gets a mention frame (the check can fail)"
        for client in (alice_b, bob_a, watcher, outsider_a, outsider_b):
            await client.close()

    asyncio.run(scenario())


# --- (c) a deleted body is gone ----------------------------------------------------------------------------
def test_a_deleted_body_is_gone_from_history_graphql_socket_replay_the_outbox_and_the_edit_history(
    server_factory, room_with_members
):
    a_server = server_factory(env=SERVER_ENV, name="a")
    b_server = server_factory(env=SERVER_ENV, name="b")
    room, (owner, alice, bob) = room_with_members(3)
    token = {u.pk: access_token_for(u) for u in (owner, alice, bob)}
    secret, second = "SECRET-ORIGINAL-7f3a", "SECRET-EDITED-91bc"

    async def scenario() -> None:
        alice_b = await ChatClient(b_server.ws_url, room.pk, token[alice.pk]).connect()
        bob_b = await ChatClient(b_server.ws_url, room.pk, token[bob.pk]).connect()
        target = await send(alice_b, f"{secret} for @{bob.username}")
        quoting = await send(bob_b, "I quote it", reply_to=target["id"])
        await frame_change(bob_b, {"type": "react", "message_id": target["id"], "emoji": "eyes", "on": True})
        await frame_change(alice_b, {"type": "edit", "message_id": target["id"], "body": second})
        # Before the deletion every interface shows it: the checks below can see a body when there is one.
        _, _, history_raw = await ahttp(b_server.http_url, "GET", f"/api/rooms/{room.pk}/messages", token[bob.pk])
        assert second in history_raw
        assert await orm(
            lambda: any(secret in json.dumps(p) for p in OutboxEvent.objects.values_list("payload", flat=True))
        )
        deleted = await frame_change(alice_b, {"type": "delete", "message_id": target["id"]})
        assert deleted["type"] == "message.updated" and deleted["message"]["body"] == ""

        for path, method, body in (
            (f"/api/rooms/{room.pk}/messages?after_seq=0", "GET", None),
            (f"/api/rooms/{room.pk}/messages?before_seq=100000", "GET", None),
            (f"/api/rooms/{room.pk}/messages/{target['id']}", "DELETE", None),  # a retried delete answers the tombstone
            (
                "/graphql",
                "POST",
                {"query": f"{{ missedMessages(roomId: {room.pk}, limit: 200) {{ id seq body kind }} }}"},
            ),
        ):
            status, answer, raw = await ahttp(
                b_server.http_url, method, path, token[bob.pk if method != "DELETE" else alice.pk], body
            )
            assert status == 200, (path, answer)
            assert secret not in raw and second not in raw, (path, raw)
        status, answer, _ = await ahttp(
            b_server.http_url, "POST", "/graphql", token[bob.pk],
            {"query": f"{{ missedMessages(roomId: {room.pk}, limit: 200) {{ id body }} }}"},
        )  # fmt: skip
        assert {"id": target["id"], "body": ""} in answer["data"]["missedMessages"]

        replay = await ChatClient(a_server.ws_url, room.pk, token[bob.pk], after_seq=0).connect()
        await replay.wait_until(lambda c: c.of_type("synced"))
        replayed = json.dumps(replay.frames)
        assert secret not in replayed and second not in replayed
        state = fold(replay)
        assert state[target["id"]]["body"] == "" and state[target["id"]]["deleted_at"] is not None
        assert state[target["id"]]["reactions"] == [] and state[target["id"]]["mentions"] == []
        assert state[quoting["id"]]["reply_to"] == {**state[quoting["id"]]["reply_to"], "excerpt": "", "deleted": True}

        payloads = await orm(
            lambda: list(OutboxEvent.objects.filter(room_id=room.pk).values_list("payload", flat=True))
        )
        assert len(payloads) >= 5
        assert not [p for p in payloads if secret in json.dumps(p) or second in json.dumps(p)]
        assert await orm(lambda: MessageEdit.objects.filter(message_id=target["id"]).count()) == 0
        assert await orm(lambda: Message.objects.get(pk=target["id"]).body) == ""
        for client in (alice_b, bob_b, replay):
            await client.close()

    asyncio.run(scenario())
