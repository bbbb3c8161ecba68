"""Editing, deleting, reacting and replying in the chat page, between two browser users, live: one acts,
the other sees it without a reload. A deleted body leaves the other user's page entirely, and a page that
was away while messages changed shows the changes after it resumes.

Real server processes and Debian's headless Chromium, as in test_pages_browser.py (whose helpers these are).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from accounts.models import User
from chattalk_project.tests.test_pages_browser import (
    CSP_LISTENER,
    browser,  # noqa: F401 - the fixture
    log_in,
    new_page,
    off_loop,
    open_room,
    room_with_members,
    send,
    server,  # noqa: F401 - the fixture
)
from core.testing import ServerProcess
from messaging.models import Message
from messaging.services import delete_message, edit_message, send_message, set_reaction
from rooms.models import Room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRET = "the launch code is 0451-zebra"


def message(page: Page, text: str) -> Locator:
    """The one message whose body shows `text`."""
    return page.locator(
        "#message-list li[data-testid=message]", has=page.locator("[data-testid=message-body]", has_text=text)
    )


def by_id(page: Page, message_id: int) -> Locator:
    return page.locator(f"#message-list li[data-id='{message_id}']")


def stored(room: Room, body: str) -> Message:
    return off_loop(lambda: Message.objects.get(room=room, body=body))


def secret_anywhere(page: Page) -> bool:
    """The serialised DOM (text and every attribute) or any form field's value holds the secret."""
    values = page.evaluate("() => [...document.querySelectorAll('textarea, input')].map(e => e.value).join(' ')")
    return SECRET in page.content() or SECRET in values


def test_edit_react_reply_and_delete_reach_the_other_member_live_and_a_deleted_body_leaves_their_page(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    room = off_loop(room_with_members, "Lifecycle", 5, "alice", "bob")  # alice owns the room
    context_a, alice = new_page(browser, server)
    context_b, bob = new_page(browser, server)
    for context in (context_a, context_b):
        context.add_init_script(CSP_LISTENER)
    log_in(alice, "alice")
    log_in(bob, "bob")
    open_room(alice, room)
    open_room(bob, room)

    # A mention of the viewer marks the message and highlights the name, for the viewer only.
    send(bob, "first draft for @alice")
    on_alice = message(alice, "first draft for @alice")
    expect(on_alice).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(on_alice.locator("mark.mention-me")).to_have_text("@alice")
    first = stored(room, "first draft for @alice")
    on_bob = by_id(bob, first.pk)  # by id: while it is edited, the message shows an editor, not its body
    expect(on_bob).not_to_have_class(re.compile(r"\bmentions-me\b"))

    # Only the sender may edit; the owner may delete anyone's message; a member only their own.
    expect(on_alice.get_by_role("button", name="Edit message")).to_have_count(0)
    expect(on_alice.get_by_role("button", name="Delete message")).to_have_count(1)
    on_bob.get_by_role("button", name="Edit message").click()
    editor = on_bob.get_by_test_id("edit-body")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("first draft for @alice")
    editor.fill("final words for @alice")
    editor.press("Enter")
    edited_on_alice = by_id(alice, first.pk)
    expect(edited_on_alice.get_by_test_id("message-body")).to_have_text("final words for @alice")
    expect(edited_on_alice.get_by_test_id("edited-marker")).to_have_text("edited")
    expect(by_id(bob, first.pk).get_by_test_id("message-body")).to_have_text("final words for @alice")
    expect(by_id(bob, first.pk).get_by_test_id("edit-form")).to_have_count(0)
    send(alice, "a message of alice")
    expect(message(bob, "a message of alice").get_by_role("button", name="Delete message")).to_have_count(0)
    expect(message(bob, "a message of alice").get_by_role("button", name="Edit message")).to_have_count(0)

    # A reaction from the picker, with the keyboard: the other page counts it, unhighlighted.
    picker_button = edited_on_alice.get_by_role("button", name="Pick a reaction")
    picker_button.focus()
    alice.keyboard.press("Enter")
    thumbs = edited_on_alice.get_by_role("button", name="React with 👍")
    expect(thumbs).to_be_focused()
    alice.keyboard.press("Enter")
    expect(picker_button).to_be_focused()
    chip_on_alice = edited_on_alice.get_by_test_id("reaction")
    chip_on_bob = by_id(bob, first.pk).get_by_test_id("reaction")
    expect(chip_on_bob).to_have_text("👍1")
    expect(chip_on_bob).to_have_attribute("aria-pressed", "false")
    expect(chip_on_alice).to_have_attribute("aria-pressed", "true")
    # The other member joins in through the chip; the owner takes theirs back.
    chip_on_bob.click()
    expect(chip_on_alice.get_by_test_id("reaction-count")).to_have_text("2")
    expect(chip_on_bob).to_have_attribute("aria-pressed", "true")
    chip_on_alice.click()
    expect(chip_on_bob.get_by_test_id("reaction-count")).to_have_text("1")
    expect(chip_on_alice).to_have_attribute("aria-pressed", "false")
    expect(chip_on_alice).to_have_class(re.compile(r"^reaction$"))

    # A reply carries the quote; the other page shows the quoted excerpt.
    edited_on_alice.get_by_role("button", name="Reply to Bob").click()
    expect(alice.get_by_test_id("reply-bar")).to_contain_text("final words for @alice")
    expect(alice.locator("#send-body")).to_be_focused()
    send(alice, "agreed, Bob")
    expect(alice.get_by_test_id("reply-bar")).to_be_hidden()
    reply_on_bob = message(bob, "agreed, Bob")
    expect(reply_on_bob.get_by_test_id("reply-quote")).to_contain_text("Bob")
    expect(reply_on_bob.get_by_test_id("reply-excerpt")).to_have_text("final words for @alice")
    reply = stored(room, "agreed, Bob")
    assert reply.reply_to_id == first.pk

    # The secret: quoted by a reply and in alice's reply bar, then deleted by its sender.
    send(bob, SECRET)
    expect(message(alice, SECRET)).to_have_count(1)
    secret = stored(room, SECRET)
    message(alice, SECRET).get_by_role("button", name="Reply to Bob").click()
    send(alice, "quoting the secret")
    expect(message(bob, "quoting the secret").get_by_test_id("reply-excerpt")).to_have_text(SECRET)
    message(alice, "a message of alice").get_by_role("button", name="Reply to Alice").click()  # a reply bar open
    message(alice, SECRET).get_by_role("button", name="Reply to Bob").click()
    expect(alice.get_by_test_id("reply-bar")).to_contain_text(SECRET)

    secret_on_bob = by_id(bob, secret.pk)
    secret_on_bob.get_by_role("button", name="Delete message").click()
    confirm = secret_on_bob.get_by_test_id("confirm-delete")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    confirm.get_by_role("button", name="Delete", exact=True).click()

    tombstone_on_alice = by_id(alice, secret.pk)
    expect(tombstone_on_alice.get_by_test_id("message-tombstone")).to_have_text("message deleted")
    expect(tombstone_on_alice.get_by_test_id("message-body")).to_have_count(0)
    expect(tombstone_on_alice.get_by_role("button", name="Reply to Bob")).to_have_count(0)
    quote_on_alice = message(alice, "quoting the secret").get_by_test_id("reply-quote")
    expect(quote_on_alice.get_by_test_id("reply-excerpt")).to_have_text("message deleted")
    expect(alice.get_by_test_id("reply-bar")).to_be_hidden()
    expect(by_id(bob, secret.pk).get_by_test_id("message-tombstone")).to_have_count(1)
    assert not secret_anywhere(alice)
    assert not secret_anywhere(bob)
    alice.reload()
    expect(by_id(alice, secret.pk).get_by_test_id("message-tombstone")).to_have_count(1)
    expect(message(alice, "quoting the secret").get_by_test_id("reply-excerpt")).to_have_text("message deleted")
    assert not secret_anywhere(alice)

    for page in (alice, bob):
        assert page.evaluate("window.__csp") == []
    context_a.close()
    context_b.close()


def shown(page: Page) -> list[dict[str, Any]]:
    """Each message as the page shows it: what a reader can see, in order."""
    return page.locator("#message-list li[data-testid=message]").evaluate_all(
        """items => items.map(item => ({
            seq: Number(item.dataset.seq),
            text: item.querySelector('.body') ? item.querySelector('.body').textContent : null,
            edited: item.querySelector('[data-testid=edited-marker]') !== null,
            reactions: [...item.querySelectorAll('[data-testid=reaction]')].map(
                chip => [chip.querySelector('.emoji').textContent, chip.querySelector('.count').textContent,
                         chip.getAttribute('aria-pressed')]),
            quote: item.querySelector('[data-testid=reply-excerpt]')
                ? item.querySelector('[data-testid=reply-excerpt]').textContent : null,
        }))"""
    )


def test_a_page_away_while_messages_changed_resumes_into_the_state_a_fresh_page_shows(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> tuple[Room, list[int]]:
        room = room_with_members("Away", 5, "alice", "bob")
        bob = User.objects.get(username="bob")
        ids = [
            send_message(room_id=room.pk, sender=bob, client_id=f"away-{n}", body=body).message["id"]
            for n, body in enumerate(("to be edited", SECRET, "to be liked"))
        ]
        return room, ids

    room, (to_edit, to_delete, to_like) = off_loop(world)
    context, alice = new_page(browser, server)
    log_in(alice, "alice")
    open_room(alice, room)
    expect(alice.get_by_test_id("message-body")).to_have_count(3)

    server.stop()
    expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")

    def changes_meanwhile() -> None:
        bob = User.objects.get(username="bob")
        alice_user = User.objects.get(username="alice")
        edit_message(room_id=room.pk, message_id=to_edit, actor=bob, body="edited while away")
        set_reaction(room_id=room.pk, message_id=to_like, actor=bob, emoji="🎉", on=True)
        set_reaction(room_id=room.pk, message_id=to_like, actor=alice_user, emoji="🎉", on=True)
        send_message(room_id=room.pk, sender=bob, client_id="away-reply", body="see above", reply_to=to_edit)
        delete_message(room_id=room.pk, message_id=to_delete, actor=bob)

    off_loop(changes_meanwhile)
    restarted = ServerProcess(port=server.port, name="restarted").start()
    try:
        expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected", timeout=20_000)
        expect(by_id(alice, to_edit).get_by_test_id("message-body")).to_have_text("edited while away")
        expect(by_id(alice, to_delete).get_by_test_id("message-tombstone")).to_have_count(1)
        expect(by_id(alice, to_like).get_by_test_id("reaction")).to_have_attribute("aria-pressed", "true")
        expect(message(alice, "see above").get_by_test_id("reply-excerpt")).to_have_text("edited while away")
        assert not secret_anywhere(alice)
        resumed = shown(alice)

        fresh_context, fresh = new_page(browser, server)
        log_in(fresh, "alice")
        open_room(fresh, room)
        assert shown(fresh) == resumed
        assert [m["text"] for m in resumed if m["text"] is not None][-4:] == [
            "edited while away",
            "message deleted",
            "to be liked",
            "see above",
        ]
        # After the resume, changes arrive live again (made on another member's page: a service call from
        # this test process reaches no socket when the processes share no channel layer).
        bob_context, bob = new_page(browser, server)
        log_in(bob, "bob")
        open_room(bob, room)
        on_bob = by_id(bob, to_edit)
        on_bob.get_by_role("button", name="Edit message").click()
        on_bob.get_by_test_id("edit-body").fill("edited again")
        on_bob.get_by_test_id("edit-body").press("Enter")
        expect(by_id(alice, to_edit).get_by_test_id("message-body")).to_have_text("edited again")
        expect(message(alice, "see above").get_by_test_id("reply-excerpt")).to_have_text("edited again")
        bob_context.close()
        fresh_context.close()
        context.close()
    finally:
        restarted.stop()


# Swallows `message.updated` frames while window.__dropUpdates is set: the page misses a deletion, as a
# page does for an instant when a change and a click cross.
DROP_UPDATES = """
(() => {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    addEventListener(type, listener, options) {
      if (type !== "message") return super.addEventListener(type, listener, options);
      return super.addEventListener(type, (event) => {
        if (window.__dropUpdates && JSON.parse(event.data).type === "message.updated") return;
        listener(event);
      }, options);
    }
  };
})();
"""


def test_a_refused_change_shows_why_and_changes_nothing(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> Room:
        room = room_with_members("Refusals", 5, "alice", "bob")
        send_message(room_id=room.pk, sender=User.objects.get(username="bob"), client_id="gone", body="gone soon")
        return room

    room = off_loop(world)
    context, alice = new_page(browser, server)
    context.add_init_script(DROP_UPDATES)
    log_in(alice, "alice")
    open_room(alice, room)
    send(alice, "mine to edit")
    expect(message(alice, "gone soon")).to_have_count(1)
    gone = stored(room, "gone soon")

    alice.evaluate("() => { window.__dropUpdates = true; }")  # the page misses the deletion either way
    off_loop(lambda: delete_message(room_id=room.pk, message_id=gone.pk, actor=User.objects.get(username="bob")))
    on_page = by_id(alice, gone.pk)
    on_page.get_by_role("button", name="Pick a reaction").click()
    on_page.get_by_role("button", name="React with 🎉").click()
    expect(alice.get_by_test_id("chat-error")).to_have_text("That message was deleted.")
    assert off_loop(lambda: Message.objects.get(pk=gone.pk).reactions) == []

    # An edit to nothing is refused on the page itself; the editor stays open with the draft.
    alice.evaluate("() => { window.__dropUpdates = false; }")
    mine = by_id(alice, stored(room, "mine to edit").pk)
    mine.get_by_role("button", name="Edit message").click()
    mine.get_by_test_id("edit-body").fill("   ")
    mine.get_by_role("button", name="Save").click()
    expect(alice.get_by_test_id("chat-error")).to_have_text("The message is empty.")
    expect(mine.get_by_test_id("edit-body")).to_be_enabled()
    mine.get_by_test_id("edit-body").press("Escape")
    expect(mine.get_by_test_id("message-body")).to_have_text("mine to edit")
    assert off_loop(lambda: Message.objects.get(room=room, body="mine to edit").edited_at) is None
    context.close()
