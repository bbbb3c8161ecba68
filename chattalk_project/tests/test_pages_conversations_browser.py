"""Conversations and moderation in a real browser (issue 18): a private room made from the list page, an
invitation link made in the dialog, copied and used by another user; role badges that follow a grant live;
a moderator removing and banning members whose pages say so; the ban list's unban; a DM opened from the
members panel with messages arriving live both ways; axe on the room page with the panel and dialog open.

Real server processes and Debian's headless Chromium, as in test_pages_browser.py (whose helpers these are).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import User
from chattalk_project.tests.test_docs_browser import serious_findings
from chattalk_project.tests.test_pages_browser import (
    browser,  # noqa: F401 - the fixture
    log_in,
    make_user,
    new_page,
    off_loop,
    open_room,
    room_with_members,
    send,
    server,  # noqa: F401 - the fixture
)
from core.testing import ServerProcess
from rooms.models import Ban, Membership, Room
from rooms.services import accept_invite, create_invite, create_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def member_row(page: Page, username: str):  # type: ignore[no-untyped-def]
    user_id = off_loop(lambda: User.objects.get(username=username).pk)
    return page.get_by_test_id("member-roles").locator(f"li[data-user-id='{user_id}']")


def open_panel(page: Page) -> None:
    toggle = page.get_by_test_id("members-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_test_id("members-panel")).to_be_visible()


def bodies(page: Page) -> list[str]:
    return page.locator("#message-list [data-testid=message-body]").all_text_contents()


def private_room_with(title: str, owner: str, *members: str) -> Room:
    """A private room of `owner` (users created if new), the others in through invitations."""
    users = {name: User.objects.filter(username=name).first() or make_user(name) for name in (owner, *members)}
    room = create_room(owner=users[owner], title=title, max_personnel=10, visibility="private")
    for name in members:
        accept_invite(token=create_invite(room_id=room.pk, actor=users[owner]).token, user=users[name])
    return room


def test_owner_makes_a_private_room_and_an_invite_link_the_other_user_joins_through_and_a_granted_badge_shows_live(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    off_loop(make_user, "alice", "Alice")
    off_loop(make_user, "bob", "Bob")
    context_a, alice = new_page(browser, server)
    context_a.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.http_url)
    context_b, bob = new_page(browser, server)
    log_in(alice, "alice")
    log_in(bob, "bob")

    # The list page makes a private room.
    form = alice.get_by_test_id("create-room-form")
    form.get_by_label("Title").fill("Hideout")
    form.get_by_label("Who may join").select_option("private")
    form.get_by_role("button", name="Create").click()
    expect(alice.get_by_test_id("room-title")).to_have_text("Hideout")
    expect(alice.get_by_test_id("room-kind")).to_have_text("private")
    expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
    room = off_loop(lambda: Room.objects.get(title="Hideout"))
    bob.goto("/rooms/")
    expect(bob.get_by_test_id("room-table")).not_to_contain_text("Hideout")

    # The invitation dialog: a link for one use, copied with the button.
    open_panel(alice)
    expect(member_row(alice, "alice").get_by_test_id("role-badge")).to_have_text("owner")
    alice.get_by_test_id("invite-open").click()
    dialog = alice.get_by_test_id("invite-dialog")
    expect(dialog).to_be_visible()
    expect(alice.locator("#invite-username")).to_be_focused()
    expect(dialog.get_by_test_id("invite-list")).to_contain_text("No active invitations.")
    dialog.get_by_label("Expires after").select_option("86400")
    dialog.get_by_label("Uses (empty: no limit)").fill("1")
    dialog.get_by_role("button", name="Create link").click()
    link_field = dialog.get_by_test_id("invite-link")
    expect(link_field).to_have_value(re.compile(r"^http://.+/invites/[A-Za-z0-9_-]{43}/$"))
    expect(dialog.get_by_test_id("invite-row")).to_have_count(1)
    expect(dialog.get_by_test_id("invite-row")).to_contain_text("0 of 1 uses")
    dialog.get_by_test_id("invite-copy").click()
    expect(dialog.get_by_test_id("invite-copy-status")).to_have_text("Link copied.")
    link = link_field.input_value()
    assert alice.evaluate("navigator.clipboard.readText()") == link
    alice.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(alice.get_by_test_id("invite-open")).to_be_focused()

    # Bob follows the link: the invitation page names the room and joins it.
    bob.goto(link)
    expect(bob.get_by_test_id("invite-card")).to_contain_text("Hideout")
    bob.get_by_role("button", name="Join the room").click()
    expect(bob.get_by_test_id("room-title")).to_have_text("Hideout")
    expect(bob.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
    # Used up: another visit (of someone else) is refused, with no room named.
    context_c, carol = new_page(browser, server)
    off_loop(make_user, "carol")
    log_in(carol, "carol")
    carol.goto(link)
    expect(carol.get_by_test_id("invite-refusal")).to_contain_text("used as many times")
    expect(carol.get_by_test_id("invite-card")).not_to_contain_text("Hideout")

    # Alice's open panel shows Bob (his ENTER refreshed it); granting moderator shows on both pages.
    expect(member_row(alice, "bob").get_by_test_id("role-badge")).to_have_text("member")
    open_panel(bob)
    expect(bob.get_by_test_id("invite-open")).to_be_hidden()
    expect(member_row(bob, "alice").get_by_test_id("member-kick")).to_have_count(0)  # not on the owner
    member_row(alice, "bob").get_by_role("button", name="Make moderator").click()
    expect(member_row(alice, "bob").get_by_test_id("role-badge")).to_have_text("moderator")
    expect(alice.get_by_test_id("members-status")).to_have_text("Bob is now moderator.")
    expect(member_row(bob, "bob").get_by_test_id("role-badge")).to_have_text("moderator")
    expect(bob.get_by_test_id("invite-open")).to_be_visible()  # a moderator may invite
    assert off_loop(lambda: Membership.objects.get(room=room, user__username="bob").role) == "moderator"
    for context in (context_a, context_b, context_c):
        context.close()


def test_a_moderator_removes_and_bans_members_whose_pages_say_so_and_lifts_the_ban(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> Room:
        room = private_room_with("Club", "owner", "mod", "carol", "dave")
        Membership.objects.filter(room=room, user__username="mod").update(role="moderator")
        return room

    room = off_loop(world)
    pages = {}
    contexts = []
    for name in ("mod", "carol", "dave"):
        context, page = new_page(browser, server)
        contexts.append(context)
        log_in(page, name)
        open_room(page, room)
        pages[name] = page
    mod = pages["mod"]
    open_panel(mod)
    expect(mod.get_by_test_id("member-row")).to_have_count(4)
    # A moderator acts on plain members only.
    expect(member_row(mod, "owner").get_by_test_id("member-kick")).to_have_count(0)
    expect(member_row(mod, "owner").get_by_test_id("member-role")).to_have_count(0)

    member_row(mod, "carol").get_by_role("button", name="Remove").click()
    confirm = member_row(mod, "carol").get_by_test_id("member-confirm")
    expect(confirm).to_be_focused()
    confirm.click()
    expect(mod.get_by_test_id("members-status")).to_have_text("Carol was removed.")
    expect(member_row(mod, "carol")).to_have_count(0)
    expect(pages["carol"].get_by_test_id("connection-state")).to_contain_text("no longer a member")

    # Cancel keeps the member; then the ban goes through.
    member_row(mod, "dave").get_by_role("button", name="Ban").click()
    member_row(mod, "dave").get_by_test_id("member-cancel").click()
    expect(member_row(mod, "dave").get_by_role("button", name="Ban")).to_be_focused()
    member_row(mod, "dave").get_by_role("button", name="Ban").click()
    member_row(mod, "dave").get_by_test_id("member-confirm").click()
    expect(mod.get_by_test_id("members-status")).to_have_text("Dave was banned.")
    expect(pages["dave"].get_by_test_id("connection-state")).to_contain_text("no longer a member")
    ban_row = mod.get_by_test_id("ban-list").get_by_test_id("ban-row")
    expect(ban_row).to_have_count(1)
    expect(ban_row).to_contain_text("Dave")
    expect(ban_row).to_contain_text("banned by Mod")
    # Dave cannot come back through a link while banned.
    link = off_loop(lambda: create_invite(room_id=room.pk, actor=User.objects.get(username="owner")).token)
    pages["dave"].goto(f"/invites/{link}/")
    expect(pages["dave"].get_by_test_id("invite-card")).to_be_visible()
    pages["dave"].get_by_role("button", name="Join the room").click()
    expect(pages["dave"].get_by_test_id("invite-refusal")).to_contain_text("banned")

    ban_row.get_by_role("button", name="Unban").click()
    expect(mod.get_by_test_id("members-status")).to_have_text("Dave may come back.")
    expect(mod.get_by_test_id("ban-list")).to_contain_text("Nobody is banned.")
    assert not off_loop(lambda: Ban.objects.filter(room=room).exists())
    pages["dave"].goto(f"/invites/{link}/")
    pages["dave"].get_by_role("button", name="Join the room").click()
    expect(pages["dave"].get_by_test_id("room-title")).to_have_text("Club")
    for context in contexts:
        context.close()


def test_the_message_button_opens_the_dm_and_messages_arrive_live_both_ways(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> Room:
        make_user("alice", "Alice")
        make_user("bob", "Bob")
        return room_with_members("Lobby", 5, "alice", "bob")

    room = off_loop(world)
    context_a, alice = new_page(browser, server)
    context_b, bob = new_page(browser, server)
    log_in(alice, "alice")
    log_in(bob, "bob")
    open_room(alice, room)
    open_room(bob, room)
    expect(bob.get_by_test_id("sidebar")).to_have_attribute("data-state", "live")
    open_panel(alice)
    expect(member_row(alice, "alice").get_by_test_id("member-dm")).to_have_count(0)  # not to yourself
    member_row(alice, "bob").get_by_role("button", name="Send Bob a direct message").click()
    expect(alice.get_by_test_id("room-title")).to_have_text("Bob")
    expect(alice.get_by_test_id("room-kind")).to_have_text("direct message")
    expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
    dm = off_loop(lambda: Room.objects.get(kind="dm"))
    send(alice, "psst, Bob")

    # Bob's sidebar gains the DM live, named after Alice; it opens on the message.
    dm_row = bob.get_by_test_id("sidebar").locator(f"li[data-room-id='{dm.pk}']")
    expect(dm_row.locator(".sidebar-title")).to_have_text("Alice")
    dm_row.locator("a").click()
    expect(bob.get_by_test_id("room-title")).to_have_text("Alice")
    expect(bob.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
    expect(bob.get_by_test_id("message-body").filter(has_text="psst, Bob")).to_have_count(1)
    send(bob, "hi Alice")
    expect(alice.get_by_test_id("message-body").filter(has_text="hi Alice")).to_have_count(1)
    send(alice, "one more")
    expect(bob.get_by_test_id("message-body").filter(has_text="one more")).to_have_count(1)
    assert [b for b in bodies(alice) if b] == ["psst, Bob", "hi Alice", "one more"]
    # The same button from Bob's side opens the same conversation.
    open_room(bob, room)
    open_panel(bob)
    member_row(bob, "alice").get_by_test_id("member-dm").click()
    expect(bob).to_have_url(re.compile(rf"/rooms/{dm.pk}/$"))
    assert off_loop(lambda: Room.objects.filter(kind="dm").count()) == 1
    context_a.close()
    context_b.close()


def test_axe_finds_nothing_serious_with_the_members_panel_and_the_invitation_dialog_open(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> tuple[Room, str]:
        room = private_room_with("Checked", "owner", "mod", "member")
        Membership.objects.filter(room=room, user__username="mod").update(role="moderator")
        Ban.objects.create(room=room, user=make_user("outcast"), banned_by=User.objects.get(username="mod"),
                           created_at=room.created_at)
        return room, create_invite(room_id=room.pk, actor=User.objects.get(username="owner")).token

    room, token = off_loop(world)
    off_loop(make_user, "guest")
    found: dict[str, dict[str, list[str]]] = {}
    context, page = new_page(browser, server)
    log_in(page, "owner")
    open_room(page, room)
    open_panel(page)
    expect(page.get_by_test_id("member-row")).to_have_count(3)
    expect(page.get_by_test_id("ban-row")).to_have_count(1)
    found["room, panel open"] = serious_findings(page)
    member_row(page, "member").get_by_role("button", name="Ban").click()
    found["room, confirming a ban"] = serious_findings(page)
    page.get_by_test_id("invite-open").click()
    page.get_by_test_id("invite-link-form").get_by_role("button", name="Create link").click()
    expect(page.get_by_test_id("invite-link")).to_have_value(re.compile("/invites/"))
    expect(page.get_by_test_id("invite-row")).to_have_count(4)  # three links made by world(), one here
    found["room, invitation dialog"] = serious_findings(page)
    # Keyboard: Tab never reaches the page behind the modal dialog (past its end, the browser's own UI).
    inside = "(e => e === document.body || document.getElementById('invite-dialog').contains(e))(document.activeElement)"
    for _ in range(16):
        page.keyboard.press("Tab")
        assert page.evaluate(inside)
    context.close()

    context, page = new_page(browser, server)
    log_in(page, "guest")
    page.goto(f"/invites/{token}/")
    found["invitation page"] = serious_findings(page)
    page.goto(f"/invites/{'x' * 43}/")
    found["invitation page, refused"] = serious_findings(page)
    context.close()
    assert {state: rules for state, rules in found.items() if rules} == {}
