"""The chat page's history as a reader sees it, in a real browser: consecutive messages of one sender grouped
under one name and avatar (and kept so through edits, deletions, reactions, replies and a resume), day
separators, the "new messages" marker at the read position, "jump to newest", older pages on scroll-up
(also opened at a message), Up to edit one's last message; axe and the phone layout on all of it.

Real server processes and Debian's headless Chromium, as in test_pages_browser.py (whose helpers these are).
Messages get older `created_at` through the ORM, as history stores them.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Browser, Locator, Page, expect

from accounts.models import User
from chattalk_project.tests.test_docs_browser import serious_findings
from chattalk_project.tests.test_pages_app_browser import PHONE, no_horizontal_overflow
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
from core.testing import ServerProcess, wait_until
from messaging.models import Message
from messaging.services import edit_message, mark_read, send_message, set_reaction
from rooms.models import Membership, Room
from rooms.services import create_room, join_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SEOUL = ZoneInfo("Asia/Seoul")  # the browser's zone in these tests (new_page)

# Per message shown: its text, its place in a group, whether its avatar and its name are drawn.
LAYOUT = """items => items.map(item => {
  const text = item.querySelector('[data-testid=message-body], [data-testid=message-tombstone]');
  const avatar = item.querySelector('[data-testid=avatar]');
  const name = item.querySelector('[data-testid=sender]');
  return [text ? text.textContent : '', item.dataset.group, Boolean(avatar && avatar.checkVisibility()),
          Boolean(name && name.getBoundingClientRect().width > 1)];
})"""


def say(room: Room, username: str, body: str, **extra: Any) -> dict[str, Any]:
    sender = User.objects.get(username=username)
    return send_message(room_id=room.pk, sender=sender, client_id=str(uuid.uuid4()), body=body, **extra).message


def message(page: Page, text: str) -> Locator:
    """The one message whose body reads exactly `text`."""
    body = page.locator("[data-testid=message-body]", has_text=re.compile(f"^{re.escape(text)}$"))
    return page.locator("#message-list li[data-testid=message]", has=body)


def backdate(message_ids: list[int], when: datetime) -> None:
    Message.objects.filter(pk__in=message_ids).update(created_at=when)


def layout(page: Page) -> list[tuple[str, str, bool, bool]]:
    items = page.locator("#message-list li.kind-talk").evaluate_all(LAYOUT)
    return [tuple(item) for item in items]  # type: ignore[misc]


def start(text: str) -> tuple[str, str, bool, bool]:
    return (text, "start", True, True)


def continued(text: str) -> tuple[str, str, bool, bool]:
    return (text, "continued", False, False)


def separators(page: Page) -> list[tuple[str, str]]:
    """Each separator of the history as (its text, the seq of the message right after it)."""
    return [
        tuple(pair)  # type: ignore[misc]
        for pair in page.locator("#message-list li.separator").evaluate_all(
            "items => items.map(item => { let next = item.nextElementSibling;"
            " while (next && !next.dataset.seq) next = next.nextElementSibling;"
            " return [item.textContent, next ? next.dataset.seq : null]; })"
        )
    ]


def shown_seqs(page: Page) -> list[int]:
    return [int(s) for s in page.locator("#message-list li.message").evaluate_all("i => i.map(e => e.dataset.seq)")]


def in_view(page: Page, selector: str) -> bool:
    return bool(
        page.locator(selector).evaluate(
            "item => { const box = item.getBoundingClientRect();"
            " const view = document.getElementById('messages').getBoundingClientRect();"
            " return box.top >= view.top - 1 && box.bottom <= view.bottom + 1; }"
        )
    )


def long_date(day: datetime) -> str:
    """What Intl.DateTimeFormat("en-US", {dateStyle: "full"}) writes for that day."""
    return f"{day:%A}, {day:%B} {day.day}, {day.year}"


def test_consecutive_messages_of_one_sender_are_grouped_under_one_name_and_avatar_through_changes_and_a_resume(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> Room:
        room = room_with_members("Groups", 5, "alice", "bob")
        early = say(room, "alice", "a while ago")
        backdate([early["id"]], timezone.now() - timedelta(minutes=10))  # a pause: a group of its own
        for body in ("one", "two", "three"):
            say(room, "alice", body)
        say(room, "bob", "bob here")
        say(room, "alice", "alice again")
        return room

    room = off_loop(world)
    context_a, alice = new_page(browser, server)
    context_b, bob = new_page(browser, server)
    log_in(alice, "alice")
    log_in(bob, "bob")
    open_room(alice, room)
    open_room(bob, room)
    expected = [
        start("a while ago"),
        start("one"),
        continued("two"),
        continued("three"),
        start("bob here"),
        start("alice again"),
    ]
    assert layout(bob) == expected
    # One colour per sender, the same wherever their avatar is drawn; initials of the name shown.
    avatars = bob.locator("#message-list li[data-group=start] [data-testid=avatar]")
    assert avatars.all_text_contents() == ["A", "A", "B", "A"]
    classes = avatars.evaluate_all("items => items.map(item => item.className)")
    assert classes[0] == classes[1] == classes[3] != classes[2]
    # Within a group the name is still there for a screen reader.
    expect(message(bob, "two").get_by_test_id("sender")).to_have_text("Alice")

    # A live message continues the sender's group.
    send(alice, "four")
    expect(message(bob, "four")).to_have_count(1)
    expected.append(continued("four"))
    assert layout(bob) == expected

    # Reacting to, replying to, editing and deleting grouped messages, live: the groups stay as they were.
    grouped = message(bob, "two")
    grouped.hover()
    grouped.get_by_role("button", name="Pick a reaction").click()
    grouped.get_by_role("button", name="React with 👍").click()
    expect(message(alice, "two").get_by_test_id("reaction")).to_have_text("👍1")
    message(bob, "three").get_by_role("button", name="Reply to Alice").click()
    send(bob, "re three")
    reply = message(alice, "re three")
    expect(reply.get_by_test_id("reply-excerpt")).to_have_text("three")
    expected.append(start("re three"))

    # Up in the empty composer edits Alice's newest message; the edit ends back in the composer.
    alice.focus("#send-body")
    alice.keyboard.press("ArrowUp")
    editor = alice.get_by_test_id("edit-body")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("four")
    alice.keyboard.type(", edited")
    alice.keyboard.press("Enter")
    expect(message(bob, "four, edited").get_by_test_id("edited-marker")).to_have_text("edited")
    expect(alice.locator("#send-body")).to_be_focused()
    expected[6] = continued("four, edited")
    on_alice = message(alice, "three")
    on_alice.hover()
    on_alice.get_by_role("button", name="Delete message").click()
    on_alice.get_by_role("button", name="Delete", exact=True).click()
    expect(bob.get_by_test_id("message-tombstone")).to_have_count(1)
    expect(message(bob, "re three").get_by_test_id("reply-excerpt")).to_have_text("message deleted")
    expected[3] = continued("message deleted")
    assert layout(bob) == expected

    # Away while the room went on: the replay after the reconnect lands in the same groups.
    server.stop()
    expect(bob.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")

    def meanwhile() -> None:
        say(room, "alice", "while you were away")
        say(room, "alice", "and more")
        one = Message.objects.get(room=room, body="one")
        edit_message(room_id=room.pk, message_id=one.pk, actor=User.objects.get(username="alice"), body="one, fixed")
        two = Message.objects.get(room=room, body="two")
        set_reaction(room_id=room.pk, message_id=two.pk, actor=User.objects.get(username="alice"), emoji="🎉", on=True)

    off_loop(meanwhile)
    server.start()
    expect(bob.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected", timeout=20_000)
    expect(message(bob, "and more")).to_have_count(1)
    expect(message(bob, "two").get_by_test_id("reaction")).to_have_count(2)
    expected[1] = start("one, fixed")
    expected += [start("while you were away"), continued("and more")]
    assert layout(bob) == expected
    assert len(shown_seqs(bob)) == len(set(shown_seqs(bob)))
    context_a.close()
    context_b.close()


def test_scrolling_up_through_several_days_loads_each_older_page_once_in_place_with_one_separator_per_day(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    now = timezone.now()
    three_days_ago = now.astimezone(SEOUL).replace(hour=12, minute=0) - timedelta(days=3)
    yesterday = now.astimezone(SEOUL).replace(hour=12, minute=0) - timedelta(days=1)

    def world() -> Room:
        room = room_with_members("Days", 5, "alice", "bob")  # seq 1, 2: ENTER
        sent = [say(room, "bob", f"message {n}") for n in range(120)]  # seq 3..122
        Message.objects.filter(room=room, seq__lte=2).update(created_at=three_days_ago)
        for n, item in enumerate(sent[:80]):  # 3..42 three days ago, 43..82 yesterday, 83..122 now
            backdate([item["id"]], (three_days_ago if n < 40 else yesterday) + timedelta(minutes=n % 40))
        mark_read(room_id=room.pk, user=User.objects.get(username="alice"), seq=122)  # no "new messages" marker
        return room

    room = off_loop(world)
    context, page = new_page(browser, server)
    log_in(page, "alice")
    open_room(page, room)
    expect(page.locator("#message-list li.message")).to_have_count(50)
    assert separators(page) == [("Yesterday", "73"), ("Today", "83")]

    # At the top, the older page comes in above; the message that was first keeps its place on screen.
    before = page.locator("#messages").evaluate(
        "view => { view.scrollTop = 0; const item = view.querySelector('li[data-seq=\"73\"]');"
        " return item.getBoundingClientRect().top - view.getBoundingClientRect().top; }"
    )
    expect(page.locator("#message-list li.message")).to_have_count(100)
    after = page.locator("#message-list li[data-seq='73']").evaluate(
        "item => item.getBoundingClientRect().top - document.getElementById('messages').getBoundingClientRect().top"
    )
    assert abs(after - before) <= 1, (before, after)
    assert separators(page) == [(long_date(three_days_ago), "23"), ("Yesterday", "43"), ("Today", "83")]

    page.locator("#messages").evaluate("view => { view.scrollTop = 0; }")
    expect(page.locator("#load-older")).to_have_text("This is the beginning of the room.")
    assert shown_seqs(page) == list(range(1, 123))
    assert separators(page) == [(long_date(three_days_ago), "1"), ("Yesterday", "43"), ("Today", "83")]

    # Opened at a message (a search hit): the page around it, then older pages up and newer ones from the
    # replay, each message once.
    page.goto(f"/rooms/{room.pk}/?at=60")
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#message-list li.message")).to_have_count(122 - 35)  # 36..60 shown, 61..122 replayed
    assert separators(page) == [(long_date(three_days_ago), "36"), ("Yesterday", "43"), ("Today", "83")]
    expect(page.locator("#message-list li[data-seq='60']")).to_have_class(re.compile(r"\bsearch-target\b"))
    page.locator("#messages").evaluate("view => { view.scrollTop = 0; }")
    expect(page.locator("#load-older")).to_have_text("This is the beginning of the room.")
    assert shown_seqs(page) == list(range(1, 123))
    assert separators(page) == [(long_date(three_days_ago), "1"), ("Yesterday", "43"), ("Today", "83")]
    context.close()


def test_the_new_messages_marker_sits_at_the_read_position_and_jump_to_newest_appears_for_new_arrivals(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> tuple[Room, int]:
        room = room_with_members("Unread", 5, "alice", "bob")
        for n in range(20):
            say(room, "alice", f"read {n}")
        mark_read(room_id=room.pk, user=User.objects.get(username="bob"), seq=Room.objects.get(pk=room.pk).last_seq)
        say(room, "bob", "my own, after the read position")  # not unread: the marker is after it
        first_unread = say(room, "alice", "unread 0")
        for n in range(1, 40):
            say(room, "alice", f"unread {n}")
        return room, first_unread["seq"]

    room, first_unread = off_loop(world)
    context_a, alice = new_page(browser, server)
    log_in(alice, "alice")
    open_room(alice, room)
    context, page = new_page(browser, server)
    log_in(page, "bob")
    open_room(page, room)
    marker = page.get_by_test_id("new-messages")
    expect(marker).to_have_count(1)
    expect(marker).to_have_text("New messages")
    assert separators(page)[-1] == ("New messages", str(first_unread))
    # More arrived than the view holds: the page opens at the marker, the first unread message below it.
    assert in_view(page, "[data-testid=new-messages]")
    assert in_view(page, f"#message-list li[data-seq='{first_unread}']")
    jump = page.get_by_test_id("jump-newest")
    expect(jump).to_be_hidden()
    # Opened at the marker with unread messages below the screen: nothing is reported read yet (the page's
    # read report waits 0.5 s; three times that shows it did not go).
    page.wait_for_timeout(1500)
    assert page.locator("#messages").get_attribute("data-read-seq") in (None, "")
    assert off_loop(lambda: Membership.objects.get(room=room, user__username="bob").last_read_seq) < first_unread

    send(alice, "fresh news")
    expect(jump).to_be_visible()
    expect(jump).to_have_text("Jump to newest · 1 new")
    assert separators(page)[-1] == ("New messages", str(first_unread))  # it stays where the reading began
    assert serious_findings(page) == {}
    jump.click()
    expect(jump).to_be_hidden()
    assert in_view(page, "#message-list li.message:last-child")
    expect(page.locator("#send-body")).to_be_focused()
    send(alice, "seen as it comes")  # at the bottom: it sticks there, no button
    expect(message(page, "seen as it comes")).to_have_count(1)
    assert in_view(page, "#message-list li.message:last-child")
    expect(jump).to_be_hidden()

    # Read now (the page said so over its socket): opened again, nothing is new.
    last_seq = off_loop(lambda: Room.objects.get(pk=room.pk).last_seq)
    expect(page.locator("#messages")).to_have_attribute("data-read-seq", str(last_seq))
    wait_until(
        lambda: off_loop(lambda: Membership.objects.get(room=room, user__username="bob").last_read_seq) == last_seq,
        timeout=10,
        what="the read position stored",
    )
    page.reload()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
    expect(marker).to_have_count(0)
    context.close()
    context_a.close()


def readme_scene() -> tuple[Room, int]:
    """A room as the README shows it: yesterday's and today's talk of three people, grouped, with a reply,
    reactions and a mention of the viewer (bob) after his read position. Returns the room and the seq of
    the first message new to bob."""
    for username, nickname in (("alice", "Alice Kim"), ("bob", "Bob Lee"), ("carol", "Carol Park")):
        make_user(username, nickname)
    room = room_with_members("Weekend hike", 8, "alice", "bob", "carol")
    now = timezone.now()
    yesterday = now.astimezone(SEOUL).replace(hour=19, minute=2) - timedelta(days=1)
    # Today's talk over the last 45 minutes, never before today's midnight (the test must hold at any hour).
    midnight = now.astimezone(SEOUL).replace(hour=0, minute=0, second=30)
    today = max(now - timedelta(minutes=45), midnight)
    script = [
        (yesterday, "alice", "Who's up for a hike on Saturday?", None),
        (yesterday + timedelta(minutes=1), "alice", "Thinking Bukhansan, starting around 8.", None),
        (yesterday + timedelta(minutes=6), "carol", "Count me in! 🥾", None),
        (yesterday + timedelta(minutes=9), "bob", "Me too. I'll bring snacks.", None),
        (today, "alice", "Weather looks great for Saturday ☀️", None),
        (today + timedelta(minutes=1), "alice", "Meet at Bukhansan-ui station, exit 2?", None),
        (today + timedelta(minutes=12), "carol", "Works for me. Lunch after?", 5),
        (today + timedelta(minutes=20), "bob", "There's a good noodle place near the trailhead.", None),
        (today + timedelta(minutes=21), "bob", "I'll book a table for four at 1 pm.", None),
        (today + timedelta(minutes=30), "carol", "Perfect! @bob can you bring the map too?", None),
        (today + timedelta(minutes=31), "carol", "And sunscreen 😅", None),
    ]
    sent: list[dict[str, Any]] = []
    for when, username, body, reply_to in script:
        extra = {"reply_to": sent[reply_to]["id"]} if reply_to is not None else {}
        sent.append(say(room, username, body, **extra))
        backdate([sent[-1]["id"]], when)
    Message.objects.filter(room=room, seq__lt=sent[0]["seq"]).update(created_at=yesterday - timedelta(minutes=5))
    users = {user.username: user for user in User.objects.filter(username__in=["alice", "bob", "carol"])}
    for username, index, emoji in (("alice", 8, "👍"), ("carol", 8, "👍"), ("bob", 2, "🎉"), ("alice", 2, "🎉")):
        set_reaction(room_id=room.pk, message_id=sent[index]["id"], actor=users[username], emoji=emoji, on=True)
    mark_read(room_id=room.pk, user=users["bob"], seq=sent[8]["seq"])
    return room, sent[9]["seq"]


def test_a_room_with_groups_days_a_reply_and_reactions_reads_well_on_desktop_and_phone(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    """Also the README's screenshots: CHATTALK_SCREENSHOT=1 (scripts/screenshots) writes them to docs/."""
    room, first_new = off_loop(readme_scene)
    docs = Path(settings.BASE_DIR) / "docs"
    found: dict[str, dict[str, list[str]]] = {}
    context_a, alice = new_page(browser, server)  # someone else online
    log_in(alice, "alice")
    open_room(alice, room)
    for name, options in (
        ("chat", {"viewport": {"width": 1200, "height": 860}}),
        ("phone", {"viewport": PHONE, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}),
    ):
        # Bob as he opens the room, before he read the newest (the first pass read them: a second device).
        off_loop(lambda: Membership.objects.filter(room=room, user__username="bob").update(last_read_seq=first_new - 1))
        context, page = new_page(browser, server, **options)
        log_in(page, "bob")
        open_room(page, room)
        # Alice and, on his first device, Bob (the second pass may see his first device's leaving late).
        online = page.locator("[data-testid=participant].online")
        expect(online if name == "chat" else online.filter(has_text="Alice Kim")).to_have_count(
            2 if name == "chat" else 1
        )
        seqs = {text: seq for text, seq in separators(page)}
        assert list(seqs) == ["Yesterday", "Today", "New messages"]
        assert seqs["New messages"] == str(first_new)
        expect(page.locator("#message-list li.kind-talk[data-group=start]")).to_have_count(7)
        expect(message(page, "Works for me. Lunch after?").get_by_test_id("reply-excerpt")).to_have_text(
            "Meet at Bukhansan-ui station, exit 2?"
        )
        chip = message(page, "I'll book a table for four at 1 pm.").get_by_test_id("reaction")
        expect(chip).to_have_text("👍2")
        expect(message(page, "Perfect! @bob can you bring the map too?")).to_have_class(re.compile(r"\bmentions-me\b"))
        assert in_view(page, "#message-list li.message:last-child")
        assert no_horizontal_overflow(page)
        found[name] = serious_findings(page)
        if name == "phone":
            # The composer stays pinned on screen; the actions are shown without hover.
            box = page.locator("#send-form").bounding_box()
            assert box is not None and box["y"] + box["height"] <= PHONE["height"]
            expect(message(page, "And sunscreen 😅").get_by_role("button", name="Reply to Carol Park")).to_be_visible()
        if os.environ.get("CHATTALK_SCREENSHOT"):
            page.screenshot(path=str(docs / f"screenshot-{name}.png"))
        context.close()
    context_a.close()
    assert {name: rules for name, rules in found.items() if rules} == {}


def test_scrolling_up_stops_at_the_history_floor_and_the_marker_appears_once_its_place_is_loaded(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> tuple[Room, int]:
        alice = make_user("alice")
        room = create_room(owner=alice, title="Since join", max_personnel=5, history_visibility="since_join")
        for n in range(30):
            say(room, "alice", f"before bob {n}")
        join_room(room_id=room.pk, user=make_user("bob"))
        floor = Membership.objects.get(room=room, user__username="bob").visible_after_seq
        for n in range(60):
            say(room, "alice", f"after bob {n}")
        return room, floor

    room, floor = off_loop(world)
    context, page = new_page(browser, server)
    log_in(page, "bob")
    open_room(page, room)
    expect(page.locator("#message-list li.message")).to_have_count(50)
    # More is unread than one page holds: where the unread part begins is not shown yet, nor the marker.
    expect(page.get_by_test_id("new-messages")).to_have_count(0)
    page.locator("#messages").evaluate("view => { view.scrollTop = 0; }")
    expect(page.locator("#load-older")).to_have_text("This is the beginning of the room.")
    assert shown_seqs(page) == list(range(floor + 1, floor + 62))  # bob's ENTER, then the 60 after it
    expect(page.locator("#message-list [data-testid=message-body]", has_text="before bob")).to_have_count(0)
    assert separators(page) == [("Today", str(floor + 1)), ("New messages", str(floor + 2))]
    context.close()
