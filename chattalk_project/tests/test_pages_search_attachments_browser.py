"""Message search and attachments in a real browser, between two users: a search finds what the viewer may
read (not another room's, a private room's, history from before a since_join join, or deleted messages) and
opens the room at the hit; files go up with a progress bar and reach the other member live as an
image preview or a file card; refusals are shown; a deleted message's files leave the page.

Real server processes and Debian's headless Chromium, as in test_pages_browser.py (whose helpers these are).
"""

from __future__ import annotations

import io
import random
import re
import uuid

import pytest
from PIL import Image
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
from messaging.services import delete_message, send_message
from rooms.models import Room
from rooms.services import create_room, join_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
IMAGE_PROCESSING_WAIT_MS = 30_000  # how long an image upload may take to be done (the worker runs at nice 10)


def say(room: Room, username: str, body: str) -> int:
    sender = User.objects.get(username=username)
    return send_message(room_id=room.pk, sender=sender, client_id=str(uuid.uuid4()), body=body).message["seq"]


def message(page: Page, text: str) -> Locator:
    return page.locator(
        "#message-list li[data-testid=message]", has=page.locator("[data-testid=message-body]", has_text=text)
    )


def noisy_png(side: int) -> bytes:
    """A PNG that does not compress much (random pixels), so its upload takes a few progress events."""
    rng = random.Random(19)
    image = Image.frombytes("RGB", (side, side), bytes(rng.getrandbits(8) for _ in range(side * side * 3)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def no_csp_violation(page: Page) -> None:
    assert page.evaluate("window.__csp") == []


def test_search_finds_a_message_of_my_room_only_and_its_link_opens_the_room_at_it_then_goes_live(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    def world() -> tuple[Room, Room, int]:
        ours = room_with_members("Ours", 5, "alice", "bob")
        theirs = room_with_members("Theirs", 5, "carol")
        say(theirs, "carol", "the vault address is 9 Hidden lane")
        # Nor may alice read these: a private room she is not in, a since_join room's history from before
        # she joined, a deleted message of her own room.
        carol, alice_user, bob_user = (User.objects.get(username=n) for n in ("carol", "alice", "bob"))
        private = create_room(owner=carol, title="Private", max_personnel=5, visibility="private")
        say(private, "carol", "the private address is 3 Secret road")
        late = create_room(owner=carol, title="Late", max_personnel=5, history_visibility="since_join")
        say(late, "carol", "the early address is 4 Before street")
        join_room(room_id=late.pk, user=alice_user)
        gone = send_message(room_id=ours.pk, sender=bob_user, client_id="gone", body="an old address, deleted")
        delete_message(room_id=ours.pk, message_id=gone.message["id"], actor=bob_user)
        for n in range(30):
            say(ours, "bob", f"older filler {n}")
        target = say(ours, "bob", "my new address is 12 Pine street <b>not bold</b>")
        for n in range(60):  # the hit is far from the newest page
            say(ours, "bob", f"newer filler {n}")
        return ours, theirs, target

    ours, theirs, target = off_loop(world)
    context_a, alice = new_page(browser, server)
    context_b, bob = new_page(browser, server)
    context_a.add_init_script(CSP_LISTENER)
    log_in(alice, "alice")
    log_in(bob, "bob")

    # The header's box on the room list, then the results page.
    alice.goto("/rooms/")
    alice.get_by_test_id("header-search").get_by_role("searchbox").fill("address")
    alice.get_by_test_id("header-search").get_by_role("button", name="Find messages").click()
    expect(alice).to_have_url(re.compile(r"/search/\?q=address"))
    results = alice.get_by_test_id("search-result")
    expect(results).to_have_count(1)
    hit = results.first
    expect(hit).to_contain_text("Ours")
    expect(hit).to_contain_text("Bob")
    expect(hit).not_to_contain_text("Theirs")
    for hidden in ("vault", "private address", "early address", "old address"):
        expect(alice.get_by_text(hidden)).to_have_count(0)
    snippet = hit.get_by_test_id("search-snippet")
    expect(snippet.locator("mark")).to_have_text("address")
    expect(snippet.locator("b")).to_have_count(0)  # a body's markup is text, never an element
    no_csp_violation(alice)

    # The link opens the room at the hit: shown, centred, highlighted; the older history loads from there.
    hit.get_by_role("link").click()
    expect(alice).to_have_url(re.compile(rf"/rooms/{ours.pk}/\?at={target}$"))
    expect(alice.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")
    shown = alice.locator(f"#message-list li[data-seq='{target}']")
    expect(shown).to_have_class(re.compile(r"\bsearch-target\b"))
    expect(shown).to_be_in_viewport()
    # The replay from the last message shown brings every newer one, once each, in order: no gap.
    expect(message(alice, "newer filler 59")).to_have_count(1)
    seqs = [
        int(s) for s in alice.locator("#message-list li[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    ]
    assert seqs == sorted(set(seqs))
    assert seqs[-1] - seqs[0] + 1 == len(seqs)  # contiguous from the first shown to the newest
    expect(shown).to_be_in_viewport()  # the replay did not scroll the hit away

    # Live after that: the other member's message arrives, and the page follows once the reader sends.
    open_room(bob, ours)
    send(bob, "are you there?")
    expect(message(alice, "are you there?")).to_have_count(1)
    send(alice, "yes, reading back")
    expect(message(bob, "yes, reading back")).to_have_count(1)
    expect(message(alice, "yes, reading back")).to_be_in_viewport()
    no_csp_violation(alice)

    # "This room" from the room page's header box keeps the search in it.
    alice.get_by_test_id("header-search").get_by_role("searchbox").fill("filler")
    alice.get_by_test_id("search-this-room").check()
    alice.get_by_test_id("header-search").get_by_role("button", name="Find messages").click()
    expect(alice).to_have_url(re.compile(rf"room={ours.pk}"))
    expect(alice.get_by_test_id("search-count")).to_have_text("90 messages found")
    expect(alice.get_by_role("link", name="Next")).to_have_count(1)
    context_a.close()
    context_b.close()


def test_an_uploaded_image_shows_its_progress_and_reaches_the_other_member_live_as_a_preview(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    room = off_loop(room_with_members, "Pictures", 5, "alice", "bob")
    context_a, alice = new_page(browser, server)
    context_b, bob = new_page(browser, server)
    for context in (context_a, context_b):
        context.add_init_script(CSP_LISTENER)
    log_in(alice, "alice")
    log_in(bob, "bob")
    open_room(alice, room)
    open_room(bob, room)

    png = noisy_png(700)
    alice.get_by_test_id("attach-input").set_input_files(
        {"name": "holiday.png", "mimeType": "image/png", "buffer": png}
    )
    upload = alice.get_by_test_id("upload")
    expect(upload).to_have_count(1)
    # An image is processed by the server's image worker (nice 10): on a busy machine that takes seconds.
    expect(upload).to_have_attribute("data-state", "done", timeout=IMAGE_PROCESSING_WAIT_MS)
    expect(upload).to_have_attribute("data-percent", "100")  # the progress bar ran to the end
    expect(upload).to_contain_text("holiday.png")
    send(alice, "from the beach")

    on_bob = message(bob, "from the beach")
    preview = on_bob.get_by_test_id("attachment-image")
    expect(preview).to_have_count(1)
    expect(preview).to_have_attribute("href", re.compile(r"^/api/attachments/\d+/file\?sig="))
    image = preview.locator("img")
    expect(image).to_have_attribute("src", re.compile(r"^/api/attachments/\d+/thumbnail\?sig="))
    expect(image).to_have_attribute("alt", "Image holiday.png (opens the full size)")
    bob.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )  # the thumbnail loads under the page's policy
    assert image.evaluate("img => Math.max(img.naturalWidth, img.naturalHeight)") <= 320
    expect(alice.get_by_test_id("upload-tray")).to_be_hidden()
    expect(message(alice, "from the beach").get_by_test_id("attachment-image")).to_have_count(1)

    # The preview opens the full image, served to a member.
    with bob.expect_popup() as popup_info:
        preview.click()
    full = popup_info.value
    full.wait_for_load_state()
    assert full.evaluate("() => document.images.length && document.images[0].naturalWidth") == 700
    no_csp_violation(alice)
    no_csp_violation(bob)
    context_a.close()
    context_b.close()


def test_a_text_file_becomes_a_file_card_refusals_are_shown_and_a_deleted_message_takes_its_files(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    room = off_loop(room_with_members, "Documents", 5, "alice", "bob")
    context_a, alice = new_page(browser, server)
    context_b, bob = new_page(browser, server)
    for context in (context_a, context_b):
        context.add_init_script(CSP_LISTENER)
    log_in(alice, "alice")
    log_in(bob, "bob")
    open_room(alice, room)
    open_room(bob, room)

    # A file that lies about its type is refused by the server, and the page says why.
    alice.get_by_test_id("attach-input").set_input_files(
        {"name": "evil.png", "mimeType": "image/png", "buffer": b"MZ\x90\x00\x03\x00\x00\x00binary"}
    )
    expect(alice.get_by_test_id("upload-error")).to_have_text("Files of this type cannot be shared.")
    alice.get_by_role("button", name="Remove evil.png").click()
    expect(alice.get_by_test_id("upload")).to_have_count(0)

    # Dropped onto the chat: a text file; sent without text, it goes alone, as a file card with no caption.
    notes = "Meeting notes\nbring the slides\n"
    alice.evaluate(
        """(text) => {
          const data = new DataTransfer();
          data.items.add(new File([text], "notes.txt", { type: "text/plain" }));
          const zone = document.querySelector(".chat-main");
          zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
          zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""",
        notes,
    )
    expect(alice.get_by_test_id("upload")).to_have_attribute("data-state", "done")
    alice.click("#send-form button[type=submit]")
    sent_alone = bob.locator(
        "#message-list li[data-testid=message]", has=bob.get_by_test_id("attachment-name").filter(has_text="notes.txt")
    )
    expect(sent_alone.get_by_test_id("message-body")).to_have_count(0)
    card = sent_alone.get_by_test_id("attachment-file")
    expect(card).to_have_count(1)
    expect(card.get_by_test_id("attachment-name")).to_have_text("notes.txt")
    expect(card.get_by_test_id("attachment-size")).to_have_text(f"{len(notes)} byte")
    href = card.get_attribute("href")
    assert href and re.match(r"^/api/attachments/\d+/file\?sig=", href)
    download = context_b.request.get(href)
    assert download.status == 200 and download.text() == notes
    assert "attachment" in download.headers["content-disposition"]

    # Pasted into the composer: an image file goes up like a chosen one.
    alice.evaluate(
        """async (bytes) => {
          const data = new DataTransfer();
          data.items.add(new File([new Uint8Array(bytes)], "pasted.png", { type: "image/png" }));
          const input = document.getElementById("send-body");
          input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
        }""",
        list(noisy_png(40)),
    )
    expect(alice.get_by_test_id("upload")).to_have_attribute("data-state", "done", timeout=IMAGE_PROCESSING_WAIT_MS)
    send(alice, "a pasted picture")
    expect(message(bob, "a pasted picture").get_by_test_id("attachment-image")).to_have_count(1)

    # Deleting the message takes its card off the other page, and its link stops working.
    sent = off_loop(lambda: Message.objects.get(room=room, attachment_files__name="notes.txt"))
    assert sent.body == ""
    on_alice = alice.locator(f"#message-list li[data-id='{sent.pk}']")
    on_alice.get_by_role("button", name="Delete message").click()
    on_alice.get_by_test_id("confirm-delete").get_by_role("button", name="Delete").click()
    on_bob = bob.locator(f"#message-list li[data-id='{sent.pk}']")
    expect(on_bob.get_by_test_id("message-tombstone")).to_have_count(1)
    expect(on_bob.get_by_test_id("attachments")).to_have_count(0)
    assert context_b.request.get(href).status == 404
    no_csp_violation(alice)
    no_csp_violation(bob)
    context_a.close()
    context_b.close()
