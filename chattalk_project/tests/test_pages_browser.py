"""The server-rendered pages in a real browser: Playwright's sync API driving Debian's headless Chromium
against real server processes (uvicorn) on the test database.

Each test sets up what it needs with the domain services, then drives the pages like a user would.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from django.db import connections
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from accounts.models import User
from core.testing import ServerProcess
from messaging.models import Message
from messaging.services import send_message
from rooms.models import Room
from rooms.services import create_room, join_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "Corr3ct-Horse-Battery"
T = TypeVar("T")
WAIT_MS = 10_000


def off_loop(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ORM and service calls in a plain worker thread.

    While a browser is open, Playwright's sync API keeps an asyncio loop running in the test thread: Django
    refuses ORM calls there (SynchronousOnlyOperation) and the services' after-commit publishing
    (async_to_sync) cannot run. A worker thread has no loop; its connection is closed when it is done, so
    that nothing holds the test database open.
    """

    def run() -> T:
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def server(server_factory: object) -> ServerProcess:
    return server_factory()  # type: ignore[operator]


@pytest.fixture
def browser(server: ServerProcess) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser, server: ServerProcess, **context_options: object) -> tuple[BrowserContext, Page]:
    options = {"locale": "en-US", "timezone_id": "Asia/Seoul", "base_url": server.http_url, **context_options}
    context = browser.new_context(**options)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    return context, page


def make_user(username: str, nickname: str = "") -> User:
    return User.objects.create_user(username=username, password=PASSWORD, nickname=nickname or username.title())


def room_with_members(title: str, max_personnel: int, owner: str, *members: str) -> Room:
    """Users by name (created if new), a room of `owner`, the others joined."""
    users = {name: User.objects.filter(username=name).first() or make_user(name) for name in (owner, *members)}
    room = create_room(owner=users[owner], title=title, max_personnel=max_personnel)
    for name in members:
        join_room(room_id=room.pk, user=users[name])
    return Room.objects.get(pk=room.pk)


def log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("[data-testid=login-form] button[type=submit]")
    expect(page).to_have_url(re.compile(r"/rooms/$"))


def open_room(page: Page, room: Room) -> None:
    page.goto(f"/rooms/{room.pk}/")
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")


def send(page: Page, text: str) -> None:
    page.fill("#send-body", text)
    page.click("#send-form button[type=submit]")


def bodies(page: Page) -> list[str]:
    return page.locator("#message-list [data-testid=message-body]").all_text_contents()


def test_two_users_sign_up_create_join_and_chat_both_ways_live(browser: Browser, server: ServerProcess) -> None:
    context_a, alice = new_page(browser, server)
    context_b, bob = new_page(browser, server)
    for page, username, nickname in ((alice, "alice", "Alice"), (bob, "bob", "Bob")):
        page.goto("/signup/")
        page.fill("#id_username", username)
        page.fill("#id_nickname", nickname)
        page.fill("#id_password", PASSWORD)
        page.fill("#id_password_again", PASSWORD)
        page.click("[data-testid=signup-form] button[type=submit]")
        expect(page).to_have_url(re.compile(r"/rooms/$"))
        expect(page.get_by_test_id("current-user")).to_have_text(nickname)

    alice.fill("#id_title", "Lobby")
    alice.fill("#id_max_personnel", "5")
    alice.click("[data-testid=create-room-form] button[type=submit]")
    expect(alice.get_by_test_id("room-title")).to_have_text("Lobby")
    expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")

    bob.reload()
    row = bob.locator("tr", has_text="Lobby")
    expect(row.get_by_test_id("personnel")).to_have_text("1 / 5")
    row.get_by_role("button", name="Join").click()
    expect(bob.get_by_test_id("room-title")).to_have_text("Lobby")
    expect(bob.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")

    # Alice sees Bob arrive live: the ENTER message and the personnel count.
    expect(alice.locator("#message-list .kind-enter", has_text="Bob joined the room")).to_have_count(1)
    expect(alice.locator(".chat-head [data-testid=personnel]")).to_have_text("2 / 5")

    send(alice, "Hello Bob")
    expect(bob.locator("#message-list [data-testid=message-body]", has_text="Hello Bob")).to_have_count(1)
    bob.fill("#send-body", "typing something")
    bob.dispatch_event("#send-body", "input")
    expect(alice.get_by_test_id("typing")).to_have_text("Bob is typing…")
    send(bob, "Hi Alice")
    expect(alice.locator("#message-list [data-testid=message-body]", has_text="Hi Alice")).to_have_count(1)
    expect(alice.get_by_test_id("typing")).to_have_text("")
    # A quick reply: typing again right after the send is news again (neither side holds it back).
    bob.fill("#send-body", "and one more")
    bob.dispatch_event("#send-body", "input")
    expect(alice.get_by_test_id("typing")).to_have_text("Bob is typing…")
    bob.fill("#send-body", "")
    assert bodies(alice) == bodies(bob) == ["Hello Bob", "Hi Alice"]
    # Own messages are confirmed: nothing is left "sending…".
    expect(alice.get_by_test_id("pending-message")).to_have_count(0)

    # Times are shown in the viewer's time zone (Asia/Seoul, UTC+9, no DST).
    last = alice.locator("#message-list li.message").last
    created = datetime.fromisoformat(last.locator("time").get_attribute("datetime") or "")
    expected = created.astimezone(ZoneInfo("Asia/Seoul")).strftime("%I:%M %p")
    assert last.locator("time").inner_text() == expected

    # Both see each other connected in the presence list.
    expect(alice.locator("[data-testid=participant].online", has_text="Bob")).to_have_count(1)
    expect(bob.locator("[data-testid=participant].online", has_text="Alice")).to_have_count(1)
    # A nickname is free text: who someone really is, the username, rides along as the tooltip.
    expect(alice.locator("[data-testid=participant] .name", has_text="Bob")).to_have_attribute("title", "@bob")
    expect(alice.locator("#message-list .sender", has_text="Bob")).to_have_attribute("title", "@bob")

    context_a.close()
    context_b.close()


def test_a_message_with_html_is_shown_as_text_never_run(browser: Browser, server: ServerProcess) -> None:
    room = off_loop(room_with_members, "Safe", 5, "alice", "bob")
    context_a, page_a = new_page(browser, server)
    context_b, page_b = new_page(browser, server)
    log_in(page_a, "alice")
    log_in(page_b, "bob")
    open_room(page_a, room)
    open_room(page_b, room)

    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
    send(page_b, hostile)
    body = page_a.locator("#message-list [data-testid=message-body]").last
    expect(body).to_have_text(hostile)
    assert body.evaluate("element => element.children.length") == 0
    assert page_a.evaluate("window.__pwned") is None
    # History rendered into the page is text too.
    page_a.reload()
    expect(page_a.locator("#message-list [data-testid=message-body]").last).to_have_text(hostile)
    assert page_a.evaluate("window.__pwned") is None
    context_a.close()
    context_b.close()


def test_page_reconnects_after_a_server_restart_and_shows_a_message_sent_meanwhile_once(
    browser: Browser, server: ServerProcess
) -> None:
    room = off_loop(room_with_members, "Resilient", 5, "alice", "bob")
    context_a, page_a = new_page(browser, server)
    context_b, page_b = new_page(browser, server)
    log_in(page_a, "alice")
    log_in(page_b, "bob")
    open_room(page_a, room)
    open_room(page_b, room)
    send(page_b, "before the restart")
    expect(page_a.locator("#message-list [data-testid=message-body]", has_text="before the restart")).to_have_count(1)

    banner = page_a.get_by_test_id("connection-state")
    presence = page_a.locator(".presence")
    expect(banner).to_be_hidden()  # nothing to say while connected
    expect(presence).not_to_have_class(re.compile(r"\bstale\b"))

    server.stop()
    # A banner says the connection is lost; who is online cannot be known meanwhile: the list is greyed out.
    expect(banner).to_have_attribute("data-state", "reconnecting")
    expect(banner).to_be_visible()
    expect(banner).to_have_text("Connection lost. Reconnecting…")
    expect(banner).to_have_attribute("role", "status")
    expect(presence).to_have_class(re.compile(r"\bstale\b"))
    expect(page_a.get_by_test_id("presence-list")).to_have_attribute("aria-disabled", "true")
    expect(page_b.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")
    # Bob writes while the server is down: the page keeps it as "sending…" and sends it after reconnecting.
    send(page_b, "sent while the server was down")
    expect(page_b.get_by_test_id("pending-message")).to_have_count(1)

    restarted = ServerProcess(port=server.port, name="restarted").start()
    try:
        for page in (page_a, page_b):
            expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected", timeout=20_000)
            expect(
                page.locator("#message-list [data-testid=message-body]", has_text="sent while the server was down")
            ).to_have_count(1)
            expect(page.get_by_test_id("pending-message")).to_have_count(0)
        expect(banner).to_be_hidden()
        expect(presence).not_to_have_class(re.compile(r"\bstale\b"))
        expect(page_a.get_by_test_id("presence-list")).to_have_attribute("aria-disabled", "false")
        send(page_a, "after the restart")
        expect(page_b.locator("#message-list [data-testid=message-body]", has_text="after the restart")).to_have_count(
            1
        )
        page_a.wait_for_timeout(300)  # a duplicate, if any, would arrive right behind
        expected = ["before the restart", "sent while the server was down", "after the restart"]
        assert bodies(page_a) == expected
        assert bodies(page_b) == expected
        seqs = [
            int(s)
            for s in page_a.locator("#message-list li.message").evaluate_all("els => els.map(e => e.dataset.seq)")
        ]
        assert seqs == sorted(set(seqs))
        stored = off_loop(lambda: Message.objects.filter(room=room, body="sent while the server was down").count())
        assert stored == 1
        context_a.close()
        context_b.close()
    finally:
        restarted.stop()


def test_full_room_join_is_disabled_and_a_room_filling_up_meanwhile_shows_the_409(
    browser: Browser, server: ServerProcess
) -> None:
    off_loop(make_user, "viewer")
    off_loop(room_with_members, "Packed", 2, "owner", "other")
    tiny = off_loop(room_with_members, "Tiny", 2, "owner")
    context, page = new_page(browser, server)
    log_in(page, "viewer")

    packed_row = page.locator("tr", has_text="Packed")
    expect(packed_row.get_by_test_id("personnel")).to_have_text("2 / 2")
    expect(packed_row.locator(".full-tag")).to_have_text("Full")
    expect(packed_row.get_by_role("button", name="Join")).to_be_disabled()
    tiny_row = page.locator("tr", has_text="Tiny")
    expect(tiny_row.get_by_test_id("personnel")).to_have_text("1 / 2")
    expect(tiny_row.get_by_role("button", name="Join")).to_be_enabled()

    # The last seat goes while the page is open.
    off_loop(lambda: join_room(room_id=tiny.pk, user=User.objects.get(username="other")))
    tiny_row.get_by_role("button", name="Join").click()
    expect(page.get_by_test_id("page-error")).to_have_text("The room is full.")
    expect(page).to_have_url(re.compile(r"/rooms/$"))
    expect(tiny_row.get_by_role("button", name="Join")).to_be_disabled()
    assert off_loop(lambda: Room.objects.get(pk=tiny.pk).personnel) == 2

    page.reload()
    expect(page.locator("tr", has_text="Tiny").get_by_role("button", name="Join")).to_be_disabled()
    context.close()


def test_admin_lists_the_room_with_its_personnel(browser: Browser, server: ServerProcess) -> None:
    off_loop(User.objects.create_superuser, username="root", password=PASSWORD, email="root@example.com")
    off_loop(room_with_members, "Admin-visible room", 7, "owner", "member")
    context, page = new_page(browser, server)
    page.goto("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.goto("/admin/rooms/room/")
    row = page.locator("#result_list tbody tr", has_text="Admin-visible room")
    expect(row).to_have_count(1)
    expect(row.locator("td.field-personnel")).to_have_text("2")
    expect(row.locator("td.field-max_personnel")).to_have_text("7")
    context.close()


def test_scrolling_up_loads_older_history_in_order_without_duplicates(browser: Browser, server: ServerProcess) -> None:
    def busy_room() -> Room:
        room = room_with_members("Long history", 5, "alice", "bob")  # seq 1, 2: ENTER
        bob = User.objects.get(username="bob")
        for n in range(60):  # seq 3..62
            send_message(room_id=room.pk, sender=bob, client_id=f"seed-{n}", body=f"old message {n}")
        return room

    room = off_loop(busy_room)
    context, page = new_page(browser, server)
    log_in(page, "alice")
    open_room(page, room)
    messages = page.locator("#message-list li.message")
    expect(messages).to_have_count(50)
    assert messages.first.get_attribute("data-seq") == "13"
    expect(page.get_by_test_id("message-body").last).to_have_text("old message 59")

    page.locator("#messages").evaluate("element => { element.scrollTop = 0; }")
    expect(messages).to_have_count(62)
    expect(page.locator("#load-older")).to_have_text("This is the beginning of the room.")
    seqs = [int(s) for s in messages.evaluate_all("items => items.map(item => item.dataset.seq)")]
    assert seqs == list(range(1, 63))
    # The reader stays where they were: the message that was on top is still in view.
    assert page.locator("#message-list li[data-seq='13']").evaluate(
        "item => { const box = item.getBoundingClientRect(); "
        "const view = document.getElementById('messages').getBoundingClientRect(); "
        "return box.top >= view.top - 1 && box.top < view.bottom; }"
    )
    context.close()


def test_room_list_shows_unread_badges_that_clear_once_the_room_is_read(
    browser: Browser, server: ServerProcess
) -> None:
    def room_with_unread() -> Room:
        room = room_with_members("Busy", 5, "alice", "bob")
        bob = User.objects.get(username="bob")
        for n in range(3):
            send_message(room_id=room.pk, sender=bob, client_id=f"unread-{n}", body=f"news {n}")
        return room

    room = off_loop(room_with_unread)
    context, page = new_page(browser, server)
    log_in(page, "alice")
    mine = page.get_by_test_id("sidebar").locator(f"li[data-room-id='{room.pk}']")
    expect(mine.get_by_test_id("sidebar-unread").locator(".count")).to_have_text("3")
    expect(page).to_have_title("(3) Rooms · ChatTalk")

    open_room(page, room)
    expect(page.get_by_test_id("message-body")).to_have_count(3)
    expect(page.locator("#messages")).to_have_attribute("data-read-seq", str(room.last_seq + 3))
    for _ in range(20):  # the read position went over the socket; the server stores it right after
        page.goto("/rooms/")
        if mine.get_by_test_id("sidebar-unread").is_hidden():
            break
        page.wait_for_timeout(100)
    expect(mine.get_by_test_id("sidebar-unread")).to_be_hidden()
    expect(page).to_have_title("Rooms · ChatTalk")
    context.close()


def test_leaving_updates_the_other_members_page_and_presence_shows_when_they_left(
    browser: Browser, server: ServerProcess
) -> None:
    room = off_loop(room_with_members, "Presence", 5, "alice", "bob")
    context_a, page_a = new_page(browser, server)
    context_b, page_b = new_page(browser, server)
    log_in(page_a, "alice")
    log_in(page_b, "bob")
    open_room(page_a, room)
    open_room(page_b, room)
    bob_in_list = page_a.locator("[data-testid=participant]", has_text="Bob")
    expect(bob_in_list).to_have_class(re.compile(r"\bonline\b"))
    expect(bob_in_list.locator(".status")).to_have_text("online")

    page_b.get_by_test_id("leave-form").get_by_role("button", name="Leave room").click()
    expect(page_b).to_have_url(re.compile(r"/rooms/$"))
    expect(page_b.locator(".flash")).to_contain_text("You left Presence.")
    expect(page_b.locator("tr", has_text="Presence").get_by_role("button", name="Join")).to_be_enabled()

    expect(page_a.locator("#message-list .kind-leave", has_text="Bob left the room")).to_have_count(1)
    expect(page_a.locator(".chat-head [data-testid=personnel]")).to_have_text("1 / 5")
    expect(bob_in_list).to_have_class(re.compile(r"\boffline\b"))
    expect(bob_in_list.locator(".status")).to_have_text(re.compile(r"^left \d+ seconds? ago$"))
    context_a.close()
    context_b.close()


def test_room_list_search_pagination_create_errors_and_logout(browser: Browser, server: ServerProcess) -> None:
    def many_rooms() -> None:
        owner = make_user("owner")
        make_user("alice")
        for n in range(24):
            create_room(owner=owner, title=f"Room {n:02d}", max_personnel=50)
        create_room(owner=owner, title="Special interest", max_personnel=12)

    off_loop(many_rooms)
    context, page = new_page(browser, server)
    log_in(page, "alice")
    rows = page.get_by_test_id("room-table").locator("tbody tr")
    expect(rows).to_have_count(20)
    expect(page.locator(".pagination")).to_contain_text("Page 1 of 2")
    page.get_by_role("link", name="Next").click()
    expect(rows).to_have_count(5)

    page.fill("#room-search", "special")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_test_id("personnel")).to_have_text("1 / 12")

    page.fill("#id_title", "   ")
    page.fill("#id_max_personnel", "5")
    page.click("[data-testid=create-room-form] button[type=submit]")
    expect(page.get_by_test_id("create-room-form").locator(".errors")).to_have_text("This field is required.")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
    page.goto("/rooms/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/rooms/$"))
    context.close()


def test_pages_follow_the_browser_language_and_switch_to_english(browser: Browser, server: ServerProcess) -> None:
    room = off_loop(room_with_members, "다국어", 5, "minji")
    context, page = new_page(browser, server, locale="ko-KR")
    page.goto("/login/")
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page.locator("h1")).to_have_text("로그인")
    log_in(page, "minji")
    expect(page.locator("h2", has_text="방 만들기")).to_have_count(1)
    page.goto(f"/rooms/{room.pk}/")
    # Strings the script shows come translated from the page too.
    expect(page.get_by_test_id("connection-state")).to_have_text("연결됨")
    expect(page.locator("#message-list .kind-enter")).to_have_text(re.compile("Minji님이 입장했습니다"))

    page.select_option("#language-select", "en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_test_id("connection-state")).to_have_text("connected")
    expect(page.get_by_role("button", name="Leave room")).to_have_count(1)
    context.close()


# Wraps the page's WebSocket: once window.__loseNextAck is set, the next ack is swallowed and the socket is
# closed on the spot, as when a connection dies after the server stored a message but before the ack came.
LOSE_NEXT_ACK = """
(() => {
  const Native = window.WebSocket;
  window.__socketsOpened = 0;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const url = String(args[0]);
      if (url.includes("/ws/rooms/") && !url.includes("/presence/")) window.__socketsOpened += 1; }
    addEventListener(type, listener, options) {
      if (type !== "message") return super.addEventListener(type, listener, options);
      return super.addEventListener(type, (event) => {
        if (window.__loseNextAck && JSON.parse(event.data).type === "ack") {
          window.__loseNextAck = false;
          this.close(4000, "test: connection lost before the ack");
          return;
        }
        listener(event);
      }, options);
    }
  };
})();
"""


def test_a_message_whose_ack_was_lost_shows_once_after_the_reconnect(browser: Browser, server: ServerProcess) -> None:
    room = off_loop(room_with_members, "Lossy", 5, "alice")
    context, page = new_page(browser, server)
    context.add_init_script(LOSE_NEXT_ACK)
    log_in(page, "alice")
    open_room(page, room)
    assert page.evaluate("window.__socketsOpened") == 1

    page.evaluate("window.__loseNextAck = true")
    send(page, "stored, but the ack never came")
    # A function, not a bare expression: Playwright evaluates an expression with eval, which the CSP forbids.
    page.wait_for_function("() => window.__socketsOpened === 2")
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
    expect(page.get_by_test_id("message-body")).to_have_text(["stored, but the ack never came"])
    expect(page.get_by_test_id("pending-message")).to_have_count(0)
    send(page, "and the next one")
    expect(page.get_by_test_id("message-body")).to_have_text(["stored, but the ack never came", "and the next one"])
    assert off_loop(lambda: Message.objects.filter(room=room, kind="TALK").count()) == 2
    context.close()


def test_logging_out_in_another_tab_ends_the_open_chat_page(browser: Browser, server: ServerProcess) -> None:
    room = off_loop(room_with_members, "Two tabs", 5, "alice")
    context, chat_tab = new_page(browser, server)
    log_in(chat_tab, "alice")
    open_room(chat_tab, room)
    other_tab = context.new_page()
    other_tab.goto("/rooms/")
    other_tab.get_by_role("button", name="Log out").click()
    expect(other_tab).to_have_url(re.compile(r"/login/$"))

    state = chat_tab.get_by_test_id("connection-state")
    expect(state).to_have_attribute("data-state", "closed")
    expect(chat_tab.get_by_test_id("chat-error")).to_have_text("Your session has ended. Please log in again.")
    expect(chat_tab.locator("#send-form button[type=submit]")).to_be_disabled()
    context.close()


CSP_LISTENER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(
  `${e.violatedDirective} blocked ${e.blockedURI || "inline"} in ${e.sourceFile}:${e.lineNumber} ${e.sample}`));
"""


def test_every_page_runs_under_the_strict_content_security_policy_without_a_violation(
    browser: Browser, server: ServerProcess
) -> None:
    def world() -> Room:
        User.objects.create_superuser(username="root", password=PASSWORD, email="root@example.com")
        room = room_with_members("Strict", 5, "alice", "bob")
        send_message(room_id=room.pk, sender=User.objects.get(username="bob"), client_id="csp-1", body="hello")
        return room

    room = off_loop(world)
    context, page = new_page(browser, server)
    context.add_init_script(CSP_LISTENER)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    violations: dict[str, list[str]] = {}
    policies: dict[str, str] = {}

    def visit(path: str, then: Callable[[], None] | None = None) -> None:
        response = page.goto(path)
        assert response is not None and response.status < 500, path
        policies[path] = response.headers.get("content-security-policy", "")
        if then is not None:
            then()
        page.wait_for_load_state("networkidle")
        violations[path] = page.evaluate("window.__csp")

    def chat() -> None:
        expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
        send(page, "under a strict policy")
        expect(
            page.locator("#message-list [data-testid=message-body]", has_text="under a strict policy")
        ).to_have_count(1)
        expect(page.locator("[data-testid=participant].online", has_text="Alice")).to_have_count(1)

    for path in ("/", "/signup/", "/login/?next=/rooms/"):
        visit(path)
    log_in(page, "alice")
    visit("/rooms/")
    visit("/rooms/?search=Str&page=abc")
    visit(f"/rooms/{room.pk}/", chat)
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))

    visit("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    admin_pages = [
        "/admin/",
        "/admin/rooms/room/",
        "/admin/rooms/room/add/",
        f"/admin/rooms/room/{room.pk}/change/",
        "/admin/rooms/membership/",
        "/admin/accounts/user/",
        "/admin/messaging/message/",
        "/admin/presence/presenceconnection/",
        "/admin/events/outboxevent/",
        "/api/rooms",  # DRF's browsable API, served when DEBUG is on (as in this test server)
    ]
    for path in admin_pages:
        visit(path)

    reported = [line for line in console if "Content Security Policy" in line]
    # The policy is enforced: a script injected inline does not run, and the browser reports it.
    page.goto("/rooms/")
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.__ran = 1";
        document.body.appendChild(s); }""")
    page.wait_for_timeout(200)
    assert page.evaluate("window.__ran") is None
    assert any("script-src" in v for v in page.evaluate("window.__csp"))
    context.close()

    assert {path: found for path, found in violations.items() if found} == {}
    assert reported == []
    chat_policy = policies[f"/rooms/{room.pk}/"]
    for directive in (
        "script-src 'self';",
        "style-src 'self';",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        f"connect-src 'self' ws://{server.http_url.split('://')[1]} wss://",
    ):
        assert directive in chat_policy, (directive, chat_policy)
    assert all(policies.values()), [path for path, policy in policies.items() if not policy]
