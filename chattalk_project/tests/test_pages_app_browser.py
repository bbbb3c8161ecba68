"""The chat page as an app, in a real browser: the sidebar of the viewer's rooms with badges pushed over
/ws/me/, the page title's unread total, the reconnecting banner, the phone layout, keyboard-only use and
mention notifications that are asked for, never forced.

Real server processes and Debian's headless Chromium, as in test_pages_browser.py (whose helpers these are).
"""

from __future__ import annotations

import re
import uuid

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
from messaging.services import send_message
from rooms.models import Room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def say(room: Room, username: str, body: str) -> None:
    send_message(room_id=room.pk, sender=User.objects.get(username=username), client_id=str(uuid.uuid4()), body=body)


def sidebar_row(page: Page, room: Room):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("sidebar").locator(f"li[data-room-id='{room.pk}']")


def wait_for_user_socket(page: Page) -> None:
    expect(page.get_by_test_id("sidebar")).to_have_attribute("data-state", "live")


def no_horizontal_overflow(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_sidebar_badges_and_page_title_follow_another_users_messages_live_without_a_reload(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def rooms() -> tuple[Room, Room, Room]:
        return (
            room_with_members("Alpha", 5, "alice", "bob"),
            room_with_members("Beta", 5, "alice", "bob"),
            room_with_members("Gamma", 5, "alice"),
        )

    alpha, beta, gamma = off_loop(rooms)
    context_a, alice = new_page(browser, server)
    context_b, bob = new_page(browser, server)
    log_in(alice, "alice")
    log_in(bob, "bob")
    open_room(bob, alpha)
    expect(sidebar_row(bob, alpha)).to_have_class("current")
    expect(sidebar_row(bob, alpha).locator("a")).to_have_attribute("aria-current", "page")
    expect(sidebar_row(bob, gamma)).to_have_count(0)
    expect(sidebar_row(bob, beta).get_by_test_id("sidebar-unread")).to_be_hidden()
    expect(bob).to_have_title("Alpha · ChatTalk")
    wait_for_user_socket(bob)

    open_room(alice, beta)
    send(alice, "are you there @bob?")
    unread = sidebar_row(bob, beta).get_by_test_id("sidebar-unread")
    mentions = sidebar_row(bob, beta).get_by_test_id("sidebar-mentions")
    expect(unread).to_be_visible()
    expect(unread.locator(".count")).to_have_text("1")
    expect(mentions).to_be_visible()
    expect(mentions.locator(".count")).to_have_text("1")
    expect(bob).to_have_title("(1) Alpha · ChatTalk")
    send(alice, "no mention this time")
    expect(unread.locator(".count")).to_have_text("2")
    expect(mentions.locator(".count")).to_have_text("1")
    expect(bob).to_have_title("(2) Alpha · ChatTalk")
    # A message in the room on screen is read at once: it ends with no badge and adds nothing to the title.
    open_room(alice, alpha)
    send(alice, "here in Alpha")
    expect(bob.get_by_test_id("message-body").filter(has_text="here in Alpha")).to_have_count(1)
    expect(sidebar_row(bob, alpha).get_by_test_id("sidebar-unread")).to_be_hidden()
    expect(bob).to_have_title("(2) Alpha · ChatTalk")

    # Opening Beta from the sidebar reads it: its badges go, and the title total with them.
    sidebar_row(bob, beta).locator("a").click()
    expect(bob.get_by_test_id("room-title")).to_have_text("Beta")
    wait_for_user_socket(bob)
    expect(sidebar_row(bob, beta)).to_have_class("current")
    expect(sidebar_row(bob, beta).get_by_test_id("sidebar-unread")).to_be_hidden()
    expect(sidebar_row(bob, beta).get_by_test_id("sidebar-mentions")).to_be_hidden()
    expect(bob).to_have_title("Beta · ChatTalk")

    # A room joined in another tab appears in this one; left there, it disappears here.
    other_tab = context_b.new_page()
    other_tab.goto("/rooms/")
    other_tab.locator(f"tr[data-room-id='{gamma.pk}']").get_by_role("button", name="Join").click()
    expect(other_tab.get_by_test_id("room-title")).to_have_text("Gamma")
    expect(sidebar_row(bob, gamma).locator(".sidebar-title")).to_have_text("Gamma")
    open_room(alice, gamma)
    send(alice, "welcome @bob")
    expect(other_tab.get_by_test_id("message-body").filter(has_text="welcome")).to_have_count(1)
    other_tab.get_by_test_id("leave-form").get_by_role("button", name="Leave room").click()
    expect(other_tab).to_have_url(re.compile(r"/rooms/$"))
    expect(sidebar_row(bob, gamma)).to_have_count(0)
    expect(bob).to_have_title("Beta · ChatTalk")
    context_a.close()
    context_b.close()


def test_phone_layout_pins_the_composer_and_nothing_overflows_with_a_long_nickname(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    long_name = "Bartholomew-Maximilian-Fitzgerald-the-Third"

    def world() -> tuple[Room, Room]:
        make_user("bob", long_name)
        owner = make_user("maximilianowner", "Maximilian-Alexander-Wolfgang-Owner")
        lonely = room_with_members("A room with a rather long title for a small screen", 5, owner.username)
        room = room_with_members("Phone", 5, "alice", "bob")
        for n in range(30):
            say(room, "alice", f"line {n}")
        return room, lonely

    room, lonely = off_loop(world)
    context, page = new_page(browser, server, viewport=PHONE, is_mobile=True, has_touch=True)
    log_in(page, "bob")
    join = page.locator(f"tr[data-room-id='{lonely.pk}']").get_by_role("button", name="Join")
    expect(join).to_be_in_viewport()
    box = join.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert no_horizontal_overflow(page)

    open_room(page, room)
    composer = page.locator("#send-form")
    expect(composer).to_be_in_viewport()
    for _ in range(2):  # at the top of the page and scrolled to its end alike
        box = composer.bounding_box()
        assert box is not None and box["y"] + box["height"] <= PHONE["height"] and box["y"] > PHONE["height"] / 2
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        page.mouse.wheel(0, 3000)
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    expect(page.locator("#send-form button[type=submit]")).to_be_in_viewport()
    assert no_horizontal_overflow(page)
    who = page.get_by_test_id("current-user").bounding_box()
    assert who is not None and who["x"] + who["width"] <= PHONE["width"]

    # The sidebar folds away behind a toggle.
    sidebar = page.get_by_test_id("sidebar")
    toggle = page.get_by_test_id("sidebar-toggle")
    expect(sidebar).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(sidebar).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(sidebar_row(page, room)).to_have_class("current")
    toggle.click()
    expect(sidebar).to_be_hidden()

    send(page, "from the phone")
    expect(page.get_by_test_id("message-body").filter(has_text="from the phone")).to_have_count(1)
    assert no_horizontal_overflow(page)
    context.close()


def test_keyboard_alone_reaches_the_composer_with_tab_and_sends_with_enter(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> Room:
        room = room_with_members("Keys", 5, "alice", "bob")
        for n in range(30):  # each has Reply and React buttons: 60 tab stops between the top and the composer
            say(room, "bob", f"line {n}")
        return room

    room = off_loop(world)
    context, page = new_page(browser, server)
    log_in(page, "alice")
    open_room(page, room)
    # From the top of the page (the page itself puts the focus in the composer on load; start elsewhere):
    page.focus(".brand")
    page.keyboard.press("Shift+Tab")  # the first stop of the page: the skip link, visible once focused
    skip = page.get_by_test_id("skip-to-composer")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("#send-body")).to_be_focused()
    # And without the skip link: plain Tab presses through the page get there as well.
    page.focus(".brand")
    for _ in range(120):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "send-body":
            break
    else:
        pytest.fail("Tab never reached the message box")
    # What has focus is visibly marked.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), outline
    page.keyboard.type("typed without a mouse")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("message-body").filter(has_text="typed without a mouse")).to_have_text(
        "typed without a mouse\nsecond line"
    )
    expect(page.locator("#send-body")).to_have_value("")
    context.close()


FAKE_NOTIFICATIONS = """
window.__asked = 0;
window.__shown = [];
window.__hidden = false;
Object.defineProperty(document, "hidden", { get: () => window.__hidden });
class FakeNotification {
  static permission = "default";
  static async requestPermission() { window.__asked += 1; FakeNotification.permission = "granted"; return "granted"; }
  constructor(title, options) { window.__shown.push({ title, body: options.body }); }
  addEventListener() {}
  close() {}
}
window.Notification = FakeNotification;
window.__mentionFrames = 0;  // `mention` frames the user socket received, notified or not
const NativeSocket = window.WebSocket;
window.WebSocket = class extends NativeSocket {
  constructor(...args) {
    super(...args);
    if (String(args[0]).includes("/ws/me/")) {
      super.addEventListener("message", (e) => { if (e.data.includes('"type":"mention"')) window.__mentionFrames += 1; });
    }
  }
};
"""


def test_mention_notifications_come_only_after_the_user_enabled_them_and_only_while_the_tab_is_hidden(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def rooms() -> tuple[Room, Room]:
        return room_with_members("Here", 5, "alice", "bob"), room_with_members("Elsewhere", 5, "alice", "bob")

    here, elsewhere = off_loop(rooms)
    context_a, alice = new_page(browser, server)
    log_in(alice, "alice")
    open_room(alice, elsewhere)
    context, page = new_page(browser, server)
    context.add_init_script(FAKE_NOTIFICATIONS)
    log_in(page, "bob")
    open_room(page, here)
    wait_for_user_socket(page)
    enable = page.get_by_test_id("notify-enable")
    expect(enable).to_be_visible()
    assert page.evaluate("window.__asked") == 0  # never asked unprompted

    page.evaluate("window.__hidden = true")
    send(alice, "@bob before you enabled them")
    expect(sidebar_row(page, elsewhere).get_by_test_id("sidebar-mentions").locator(".count")).to_have_text("1")
    page.wait_for_function("() => window.__mentionFrames === 1")
    assert page.evaluate("window.__shown") == []

    page.evaluate("window.__hidden = false")
    enable.click()
    expect(enable).to_be_hidden()
    assert page.evaluate("window.__asked") == 1
    expect(page.get_by_test_id("sidebar")).to_contain_text("Notifications are on")

    send(alice, "@bob while you look")  # tab visible: the page itself shows it
    expect(sidebar_row(page, elsewhere).get_by_test_id("sidebar-mentions").locator(".count")).to_have_text("2")
    page.wait_for_function("() => window.__mentionFrames === 2")
    assert page.evaluate("window.__shown") == []

    page.evaluate("window.__hidden = true")
    send(alice, "@bob while you are away")
    page.wait_for_function("() => window.__shown.length === 1")
    shown = page.evaluate("window.__shown")
    assert shown == [{"title": "Alice mentioned you in Elsewhere", "body": "@bob while you are away"}]
    context.close()
    context_a.close()


def test_axe_finds_nothing_serious_in_the_sidebar_the_reconnecting_banner_and_the_phone_layout(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> Room:
        room = room_with_members("Checked", 5, "alice", "bob")
        busy = room_with_members("Busy", 5, "alice", "bob")
        say(busy, "alice", "@bob a mention")
        say(busy, "alice", "and more")
        return room

    room = off_loop(world)
    found: dict[str, dict[str, list[str]]] = {}
    context, page = new_page(browser, server, viewport=PHONE, is_mobile=True)
    log_in(page, "bob")
    page.get_by_test_id("sidebar-toggle").click()
    found["/rooms/ phone, sidebar open"] = serious_findings(page)
    open_room(page, room)
    found["room phone"] = serious_findings(page)
    context.close()

    context, page = new_page(browser, server)
    log_in(page, "bob")
    open_room(page, room)
    wait_for_user_socket(page)
    found["room desktop"] = serious_findings(page)
    server.stop()
    expect(page.get_by_test_id("connection-state")).to_be_visible()
    found["room while reconnecting"] = serious_findings(page)
    context.close()
    assert {state: rules for state, rules in found.items() if rules} == {}
