"""A message may carry files and no text (a picture shared without a caption), on every send path; a message
of nothing (no text, no files) is still refused with body_empty. Editing follows the same rule."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.testing import access_token_for
from messaging import attachments, services
from messaging.models import Message
from messaging.testing import InProcessChatClient
from rooms.tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

GQL_SEND = """mutation($room: Int!, $body: String, $attachments: [Int!], $clientId: String) {
  sendMessage(roomId: $room, body: $body, attachments: $attachments, clientId: $clientId) {
    ok error message { id body attachments { id name url } } } }"""
GQL_EDIT = """mutation($room: Int!, $id: Int!, $body: String!) {
  editMessage(roomId: $room, messageId: $id, body: $body) { ok error message { body attachments { id } } } }"""


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def uploaded(user: Any, room: Any, name: str = "cat.txt") -> int:
    answer = bearer_client(user).post(
        f"/api/rooms/{room.pk}/attachments",
        {"file": SimpleUploadedFile(name, b"a cat", "text/plain")},
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    return answer.json()["id"]


def rest_send(user: Any, room: Any, payload: dict[str, Any]) -> Any:
    return bearer_client(user).post(
        f"/api/rooms/{room.pk}/messages", {"client_id": uuid.uuid4().hex, **payload}, format="json"
    )


def gql(user: Any, query: str, **variables: Any) -> dict[str, Any]:
    answer = bearer_client(user).post("/graphql", {"query": query, "variables": variables}, format="json")
    assert answer.status_code == 200, answer.content
    return next(iter(answer.json()["data"].values()))


def test_rest_sends_files_without_text_and_refuses_a_message_of_nothing(room_with_members):
    room, (alice, bob) = room_with_members(2)
    for payload in ({"body": ""}, {"body": "   "}, {}, {"body": None}):
        sent = rest_send(alice, room, {**payload, "attachments": [uploaded(alice, room)]})
        assert sent.status_code == 201, (payload, sent.content)
        assert sent.json()["body"] == "" and len(sent.json()["attachments"]) == 1
    for payload in ({"body": ""}, {"body": "  \n "}, {}, {"body": ""}, {"body": "", "attachments": []}):
        refused = rest_send(alice, room, payload)
        assert refused.status_code == 400 and refused.json()["code"] == "body_empty", payload
    history = bearer_client(bob).get(f"/api/rooms/{room.pk}/messages").json()["results"]
    assert [len(m["attachments"]) for m in history if m["kind"] == "TALK"] == [1, 1, 1, 1]
    room.refresh_from_db()
    assert room.last_seq == max(m["seq"] for m in history)  # the refusals took no seq


def test_graphql_sends_files_without_text_and_refuses_a_message_of_nothing(room_with_members):
    room, (alice, _) = room_with_members(2)
    file_id = uploaded(alice, room, "plan.txt")
    sent = gql(alice, GQL_SEND, room=room.pk, attachments=[file_id])
    assert sent["ok"] is True and sent["error"] is None
    assert sent["message"]["body"] == "" and [a["name"] for a in sent["message"]["attachments"]] == ["plan.txt"]
    assert sent["message"]["attachments"][0]["url"].startswith(f"/api/attachments/{file_id}/file?sig=")
    assert gql(alice, GQL_SEND, room=room.pk, body="  ")["error"] == "body_empty"
    assert gql(alice, GQL_SEND, room=room.pk)["error"] == "body_empty"
    # The same ownership rule as every send path: another member's upload is not the caller's to send.
    bobs_room, (carol, dave) = room_with_members(2)
    assert gql(carol, GQL_SEND, room=bobs_room.pk, attachments=[uploaded(dave, bobs_room)])["error"] == (
        "invalid_attachment"
    )


def test_the_socket_sends_files_without_text_and_refuses_a_message_of_nothing(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)
    file_id = uploaded(alice, room, "photo.txt")

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        b = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        await a.send_json({"type": "send", "client_id": "nothing-1", "body": ""})
        await a.send_json({"type": "send", "client_id": "nothing-2"})
        await a.wait_until(lambda c: len(c.of_type("error")) == 2)
        assert [f["code"] for f in a.of_type("error")] == ["body_empty", "body_empty"]
        await a.send_json({"type": "send", "client_id": "picture", "attachments": [file_id]})
        await b.wait_until(lambda c: c.messages())
        (message,) = b.messages()
        assert message["client_id"] == "picture" and message["body"] == ""
        assert [x["id"] for x in message["attachments"]] == [file_id]
        await a.wait_until(lambda c: c.of_type("ack"))
        assert a.of_type("ack")[0]["client_id"] == "picture"
        await a.close()
        await b.close()

    asyncio.run(scenario())
    assert list(Message.objects.filter(room=room, kind="TALK").values_list("client_id", flat=True)) == ["picture"]


def test_an_edit_may_remove_the_text_of_a_message_that_carries_files_only(room_with_members):
    room, (alice, _) = room_with_members(2)
    with_file = rest_send(alice, room, {"body": "look", "attachments": [uploaded(alice, room)]}).json()
    text_only = rest_send(alice, room, {"body": "words"}).json()
    edited = gql(alice, GQL_EDIT, room=room.pk, id=with_file["id"], body=" ")
    assert edited["ok"] is True and edited["message"]["body"] == "" and len(edited["message"]["attachments"]) == 1
    assert gql(alice, GQL_EDIT, room=room.pk, id=text_only["id"], body="")["error"] == "body_empty"
    answer = bearer_client(alice).patch(f"/api/rooms/{room.pk}/messages/{text_only['id']}", {"body": ""}, format="json")
    assert answer.status_code == 400 and answer.json()["code"] == "body_empty"
    assert Message.objects.get(pk=text_only["id"]).body == "words"


def test_clean_body_allows_emptiness_only_when_told():
    assert services.clean_body("  hi ") == "hi"
    assert services.clean_body(" ", may_be_empty=True) == ""
    assert services.clean_body(None, may_be_empty=True) == ""
    with pytest.raises(services.BodyEmpty):
        services.clean_body(None)
    with pytest.raises(services.BodyEmpty):
        services.clean_body("\t\n")
    assert attachments.clean_attachment_ids(None) == []
