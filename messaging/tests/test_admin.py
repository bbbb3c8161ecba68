"""Messages in the admin: the whole body, its edit history (staff with the MessageEdit view permission only),
reply, reactions and mentions; and a deleted message shows no body anywhere in the admin, not even when its
row or its history still held one. (Every admin page asking for its model's permission is pinned for all
models in chattalk_project/tests/test_admin_permissions.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.models import User
from messaging.models import Mention, Message, MessageEdit, Reaction
from messaging.services import delete_message, edit_message, send_message, set_reaction

pytestmark = pytest.mark.django_db

LONG_BODY = "line one of a long message\n" + "word " * 60 + "and the very end of it"


def staff(*codenames: str, superuser: bool = False) -> Client:
    user = User.objects.create_user(
        username=f"staff{User.objects.count()}", password="pw-Secret-123", is_staff=True, is_superuser=superuser
    )
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="messaging", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


@pytest.fixture
def talk(room_with_members: Any) -> dict[str, Any]:
    """alice's long message mentioning bob, edited twice, with two reactions, and bob's reply to it."""
    room, (alice, bob) = room_with_members(2)
    alice.username, bob.username = "alice", "bob"
    alice.save(update_fields=["username"])
    bob.save(update_fields=["username"])
    sent = send_message(room_id=room.pk, sender=alice, client_id="m1", body="draft one for @bob").message
    edit_message(room_id=room.pk, message_id=sent["id"], actor=alice, body="draft two for @bob")
    edit_message(room_id=room.pk, message_id=sent["id"], actor=alice, body=f"{LONG_BODY} @bob")
    set_reaction(room_id=room.pk, message_id=sent["id"], actor=bob, emoji="👍", on=True)
    set_reaction(room_id=room.pk, message_id=sent["id"], actor=alice, emoji="👍", on=True)
    set_reaction(room_id=room.pk, message_id=sent["id"], actor=bob, emoji="party", on=True)
    reply = send_message(room_id=room.pk, sender=bob, client_id="r1", body="noted", reply_to=sent["id"]).message
    return {"room": room, "alice": alice, "bob": bob, "id": sent["id"], "reply_id": reply["id"]}


def test_the_message_page_shows_the_whole_body_edit_times_reactions_mentions_and_the_reply(talk) -> None:
    html = page(staff("view_message"), f"/admin/messaging/message/{talk['id']}/change/")
    assert "word " * 60 in html.replace("<br>", "\n")  # all of it, where the list cuts it at 80 characters
    assert "and the very end of it @bob" in html
    assert "Edited at" in html and "Deleted at" in html
    assert "👍 2 · party 1" in html
    assert "@bob" in html.split("Mentions")[1][:400]

    listing = page(staff("view_message"), "/admin/messaging/message/?state=edited")
    assert "line one of a long message" in listing and "and the very end of it" not in listing

    reply = page(staff("view_message"), f"/admin/messaging/message/{talk['reply_id']}/change/")
    assert f"/admin/messaging/message/{talk['id']}/change/" in reply  # reply_to links to the original


def test_the_edit_history_shows_only_to_staff_with_the_view_permission_of_message_edits(talk) -> None:
    url = f"/admin/messaging/message/{talk['id']}/change/"
    with_history = page(staff("view_message", "view_messageedit"), url)
    assert with_history.index("draft one for @bob") < with_history.index("draft two for @bob")
    without = page(staff("view_message"), url)
    assert "draft one" not in without and "draft two" not in without
    assert "and the very end of it" in without
    # The history page does not add a way in: nothing can be changed, nothing is shown twice.
    assert staff("view_messageedit").get(url).status_code == 403


def test_a_deleted_message_shows_no_body_anywhere_in_the_admin(talk) -> None:
    delete_message(room_id=talk["room"].pk, message_id=talk["id"], actor=talk["alice"])
    # The service removed the body, the history, the reactions and the mentions with the deletion ...
    row = Message.objects.get(pk=talk["id"])
    assert row.body == "" and row.deleted_at is not None
    assert not MessageEdit.objects.filter(message_id=talk["id"]).exists()
    assert not Reaction.objects.filter(message_id=talk["id"]).exists()
    assert not Mention.objects.filter(message_id=talk["id"]).exists()
    # ... and the admin would not show them if a row still held them.
    Message.objects.filter(pk=talk["id"]).update(body="draft three, kept by mistake", reactions=[{"emoji": "x"}])
    MessageEdit.objects.create(
        message_id=talk["id"], seq=999, previous_body="draft one, kept by mistake", edited_at=row.deleted_at
    )

    client = staff(superuser=True)
    urls = [
        "/admin/messaging/message/",
        f"/admin/messaging/message/?room__id__exact={talk['room'].pk}",
        "/admin/messaging/message/?state=deleted",
        "/admin/messaging/message/?q=three",
        f"/admin/messaging/message/{talk['id']}/change/",
        f"/admin/messaging/message/{talk['id']}/history/",
        f"/admin/messaging/message/{talk['reply_id']}/change/",
        "/admin/messaging/reaction/",
        "/admin/messaging/mention/",
        "/admin/events/outboxevent/",
    ]
    for url in urls:
        html = page(client, url)
        for secret in ("draft", "very end of it", "line one of a long message", "party"):
            assert secret not in html, (url, secret)
    assert "0 results" in page(client, "/admin/messaging/message/?q=three")
    tombstone = page(client, f"/admin/messaging/message/{talk['id']}/change/")
    assert "(deleted)" in tombstone
