// The chat page. History comes rendered into the page (newest page) and older pages from
// GET /messages?before_seq=; live messages from /ws/rooms/{id}/?after_seq=<newest seq seen>, so a
// reconnect resumes exactly where the page stood. Messages are kept by seq: one seq, one element, whatever
// arrives twice. A message is sent with a fresh client_id and kept as "sending…" until the server stored
// it; unacknowledged ones are sent again after a reconnect, which the server makes idempotent.
// Changes to a message (edit, delete, reaction) also take the room's seq: a `message.updated` frame redraws
// the message in place by id and moves the resume point like a new message does.
// The history is laid out as a reader expects: consecutive messages of one sender within a few minutes form a
// group (name and initials avatar once), a separator starts each local day, a "new messages" marker sits
// at the read position the page opened with, and a "jump to newest" button appears when new messages
// arrive below a reader who scrolled up. The layout is derived from the messages shown (see `arrange`).
// Bodies and names are always set as text (textContent), never parsed as HTML.

import { api, format, readJson, showError } from "./api.js";
import { attachmentsElement, formatSize, uploadFile } from "./attachments.js";
import { ConnectionBanner } from "./connection.js";
import { PresenceList } from "./presence.js";
import { ReconnectingSocket, newClientId } from "./socket.js";

const config = readJson("chat-config");
// Read once, then gone from the page: it holds the bodies as they were at render time, and a body deleted
// later must not stay anywhere in the document.
document.getElementById("chat-config")?.remove();
const t = config.strings;
const me = config.me;
const lang = document.documentElement.lang || config.language || undefined;

const scroller = document.getElementById("messages");
const list = document.getElementById("message-list");
const olderButton = document.getElementById("load-older");
const jumpButton = document.getElementById("jump-newest");
const stateElement = document.getElementById("connection-state");
const errorElement = document.getElementById("chat-error");
const typingElement = document.getElementById("typing");
const form = document.getElementById("send-form");
const input = document.getElementById("send-body");
const personnelElement = document.querySelector(".chat-head [data-testid=personnel]");

const timeFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
const fullTimeFormat = new Intl.DateTimeFormat(lang, { dateStyle: "full", timeStyle: "medium" });
const dayFormat = new Intl.DateTimeFormat(lang, { dateStyle: "full" });

const TYPING_SEND_EVERY_MS = 2000;
const TYPING_SHOW_MS = 4000;
const RESEND_AFTER_MS = 5000;
const GROUP_GAP_MS = 5 * 60 * 1000; // a pause longer than this starts a new group
const AVATAR_COLOURS = 10; // .avatar-0 … .avatar-9 in chattalk.css, each white text at 4.5:1 or more

const rendered = new Map(); // seq -> <li>
const pending = new Map(); // client_id -> {body, element, sentAt, acked}
let lastSeq = 0; // newest seq seen: where a (re)connect resumes from (the render's last_seq at least)
let firstSeq = null; // oldest seq shown: where "load older" continues from
let hasMore = config.hasMore;
let loadingOlder = false;
let lastReadSent = 0;
let readTimer = null;
let opened = false; // the rendered history is in place: from now on messages arrive

const pendingList = document.createElement("ol");
pendingList.className = "message-list pending";
list.after(pendingList);

function displayName(user) {
  return user ? user.nickname || user.username : "?";
}

// Who someone really is: a nickname is free text, so the username rides along as the tooltip.
function usernameTitle(user) {
  return user && user.username ? `@${user.username}` : "";
}

function timeElement(iso) {
  const element = document.createElement("time");
  const when = new Date(iso);
  element.dateTime = iso;
  element.textContent = timeFormat.format(when);
  element.title = fullTimeFormat.format(when);
  return element;
}

// Up to two letters: of the first and the last word of the name shown ("Kim Min-jun" -> "KM", "김민준" -> "김").
function initials(name) {
  const words = name.trim().split(/[\s._-]+/u).filter(Boolean);
  const picked = words.length > 1 ? [words[0], words[words.length - 1]] : [words[0] || "?"];
  return picked.map((word) => Array.from(word)[0]).join("").toLocaleUpperCase(lang);
}

// Decoration: the name beside it says who it is, so assistive technology skips it. The colour follows the
// user id, the same on every page and for every viewer.
function avatarElement(user) {
  const avatar = document.createElement("span");
  avatar.className = `avatar avatar-${user && user.id ? user.id % AVATAR_COLOURS : 0}`;
  avatar.setAttribute("aria-hidden", "true");
  avatar.setAttribute("data-testid", "avatar");
  avatar.textContent = initials(displayName(user));
  return avatar;
}

// The sender's name and the time; within a group the name is only there for screen readers.
function headElement(user, ...rest) {
  const head = document.createElement("div");
  head.className = "message-head";
  const sender = document.createElement("span");
  sender.className = "sender";
  sender.setAttribute("data-testid", "sender");
  sender.textContent = displayName(user);
  sender.title = usernameTitle(user);
  head.append(sender, ...rest);
  return head;
}

// --- one message: rendered from its current state -------------------------------------------------------
// A message element is drawn from (message, its UI state) and redrawn in place when a `message.updated`
// frame brings the message after a change: the same <li>, same place, new content.

const byId = new Map(); // message id -> {message, element, ui: {draft, saving, picker, confirming, fromComposer}}
const updatesWhileLoadingOlder = []; // changes to messages not shown yet, applied once "load older" lands
let replyTarget = null; // the message the composer replies to

function characters(text, count) {
  return Array.from(text).slice(0, count).join(""); // code points, as the server counts an excerpt
}

function isMine(message) {
  return Boolean(message.sender && message.sender.id === me.id);
}

function isLive(message) {
  return message.kind === "TALK" && !message.deleted_at;
}

function mayDelete(message) {
  return message.kind === "TALK" && !message.deleted_at && (isMine(message) || config.canModerate);
}

function reactedByMe(reaction) {
  // `me` comes with per-viewer reads (the rendered history, "load older"); frames are the same for
  // everyone and name up to 20 users.
  if (reaction.users && reaction.users.includes(me.id)) return true;
  return reaction.me === true && !(reaction.users && reaction.users.length >= reaction.count);
}

const MENTION_RE = /(?<![\p{L}\p{N}_@])@([\p{L}\p{N}_.+-]{1,150})/gu;

// The body as text nodes, with the viewer's own @username marked (the server's mention rule: not after a
// word character or @; "@kim." at the end of a sentence still names kim).
function bodyNodes(body) {
  const nodes = [];
  let at = 0;
  for (const match of body.matchAll(MENTION_RE)) {
    let name = match[1];
    if (name !== me.username) name = name.replace(/[.+-]+$/u, "");
    if (name !== me.username) continue;
    const start = match.index;
    const end = start + 1 + name.length;
    if (start > at) nodes.push(document.createTextNode(body.slice(at, start)));
    const mark = document.createElement("mark");
    mark.className = "mention-me";
    mark.textContent = body.slice(start, end);
    nodes.push(mark);
    at = end;
  }
  if (at < body.length) nodes.push(document.createTextNode(body.slice(at)));
  return nodes;
}

function actionButton(text, label, action, className = "link") {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  button.textContent = text;
  button.dataset.action = action;
  if (label) button.setAttribute("aria-label", label);
  return button;
}

function quoteElement(reply) {
  const quote = document.createElement("button");
  quote.type = "button";
  quote.className = "reply-quote";
  quote.dataset.action = "show-original";
  quote.dataset.originalId = String(reply.id);
  quote.setAttribute("data-testid", "reply-quote");
  quote.setAttribute("aria-label", format(t.showOriginal, { name: displayName(reply.sender) }));
  const who = document.createElement("span");
  who.className = "reply-sender";
  who.textContent = displayName(reply.sender);
  const excerpt = document.createElement("span");
  excerpt.className = "reply-excerpt";
  excerpt.setAttribute("data-testid", "reply-excerpt");
  if (reply.deleted) {
    quote.classList.add("deleted");
    excerpt.textContent = t.deleted;
  } else {
    excerpt.textContent = reply.excerpt;
  }
  quote.append(who, excerpt);
  return quote;
}

function reactionsElement(message) {
  const box = document.createElement("div");
  box.className = "reactions";
  box.setAttribute("data-testid", "reactions");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", t.reactions);
  for (const reaction of message.reactions || []) {
    const mine = reactedByMe(reaction);
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = mine ? "reaction mine" : "reaction";
    chip.dataset.action = "react";
    chip.dataset.emoji = reaction.emoji;
    chip.setAttribute("data-testid", "reaction");
    chip.setAttribute("aria-pressed", mine ? "true" : "false");
    chip.setAttribute(
      "aria-label",
      format(mine ? t.reactionChipMine : t.reactionChip, { emoji: reaction.emoji, count: reaction.count }),
    );
    const emoji = document.createElement("span");
    emoji.className = "emoji";
    emoji.textContent = reaction.emoji;
    const count = document.createElement("span");
    count.className = "count";
    count.setAttribute("data-testid", "reaction-count");
    count.textContent = String(reaction.count);
    chip.append(emoji, count);
    box.append(chip);
  }
  return box;
}

function pickerElement(message) {
  const picker = document.createElement("div");
  picker.className = "reaction-picker";
  picker.id = `picker-${message.id}`;
  picker.setAttribute("role", "group");
  picker.setAttribute("aria-label", t.pickReaction);
  picker.setAttribute("data-testid", "reaction-picker");
  const present = new Set((message.reactions || []).map((reaction) => reaction.emoji));
  const full = present.size >= config.maxReactions;
  for (const emoji of config.quickReactions) {
    const button = actionButton(emoji, format(t.reactWith, { emoji }), "pick", "emoji-choice");
    button.dataset.emoji = emoji;
    button.disabled = full && !present.has(emoji);
    picker.append(button);
  }
  return picker;
}

function editorElement(message, ui) {
  const editor = document.createElement("form");
  editor.className = "edit-form";
  editor.dataset.action = "save-edit";
  editor.setAttribute("data-testid", "edit-form");
  const field = document.createElement("textarea");
  field.className = "edit-body";
  field.rows = 2;
  field.maxLength = input.maxLength;
  field.value = ui.draft;
  field.setAttribute("aria-label", t.editMessage);
  field.setAttribute("data-testid", "edit-body");
  field.disabled = ui.saving;
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = t.save;
  save.disabled = ui.saving;
  const cancel = actionButton(t.cancel, null, "cancel-edit", "secondary");
  editor.append(field, save, cancel);
  return editor;
}

function confirmElement() {
  const confirm = document.createElement("div");
  confirm.className = "confirm-delete";
  confirm.setAttribute("role", "group");
  confirm.setAttribute("aria-label", t.confirmDelete);
  confirm.setAttribute("data-testid", "confirm-delete");
  const question = document.createElement("span");
  question.textContent = t.confirmDelete;
  confirm.append(
    question,
    actionButton(t.delete, null, "confirm-delete", "danger"),
    actionButton(t.cancel, null, "cancel-delete", "secondary"),
  );
  return confirm;
}

function talkContent(message, ui) {
  const parts = [avatarElement(message.sender), headElement(message.sender, timeElement(message.created_at))];
  if (message.reply_to) parts.push(quoteElement(message.reply_to));
  if (message.deleted_at) {
    const tombstone = document.createElement("div");
    tombstone.className = "body tombstone";
    tombstone.setAttribute("data-testid", "message-tombstone");
    tombstone.textContent = t.deleted;
    parts.push(tombstone);
    return parts;
  }
  if (ui.draft !== null) {
    parts.push(editorElement(message, ui));
  } else if (message.body || !(message.attachments && message.attachments.length)) {
    // Files sent without a caption have no text to show. "(edited)" follows the text, so a grouped message
    // needs no line of its own for it.
    const text = document.createElement("div");
    text.className = "message-text";
    const body = document.createElement("div");
    body.className = "body";
    body.setAttribute("data-testid", "message-body");
    body.append(...bodyNodes(message.body));
    text.append(body);
    if (message.edited_at) {
      const edited = document.createElement("span");
      edited.className = "edited";
      edited.setAttribute("data-testid", "edited-marker");
      edited.textContent = t.edited;
      edited.title = format(t.editedAt, { when: fullTimeFormat.format(new Date(message.edited_at)) });
      text.append(edited);
    }
    parts.push(text);
  }
  if (message.attachments && message.attachments.length) parts.push(attachmentsElement(message.attachments, t, lang));
  parts.push(reactionsElement(message));
  const actions = document.createElement("div");
  actions.className = "message-actions";
  actions.setAttribute("role", "group");
  actions.setAttribute("aria-label", t.messageActions);
  const name = displayName(message.sender);
  const react = actionButton(t.react, t.pickReaction, "toggle-picker");
  react.setAttribute("aria-expanded", ui.picker ? "true" : "false");
  react.setAttribute("aria-controls", `picker-${message.id}`);
  actions.append(actionButton(t.reply, format(t.replyTo, { name }), "reply"), react);
  if (isMine(message)) actions.append(actionButton(t.edit, t.editMessage, "edit"));
  if (mayDelete(message)) actions.append(actionButton(t.delete, t.deleteMessage, "delete", "link danger"));
  parts.push(actions);
  if (ui.picker) parts.push(pickerElement(message));
  if (ui.confirming) parts.push(confirmElement());
  return parts;
}

function noteContent(message) {
  const note = document.createElement("span");
  note.className = "note";
  note.textContent = format(message.kind === "ENTER" ? t.entered : t.left, { name: displayName(message.sender) });
  note.title = usernameTitle(message.sender);
  return [note, timeElement(message.created_at)];
}

// Which control had the focus, so a redraw can give it back (a keyboard user toggling a reaction stays
// on that chip).
function focusKey(element) {
  const active = document.activeElement;
  if (!active || !element.contains(active)) return null;
  if (active.dataset && active.dataset.action) return { action: active.dataset.action, emoji: active.dataset.emoji };
  if (active.classList.contains("edit-body")) return { action: "edit-body" };
  return null;
}

function restoreFocus(element, key) {
  if (!key) return;
  let target;
  if (key.action === "edit-body") target = element.querySelector(".edit-body");
  else if (key.emoji !== undefined) {
    target = [...element.querySelectorAll(`[data-action="${key.action}"]`)].find((b) => b.dataset.emoji === key.emoji);
  } else target = element.querySelector(`[data-action="${key.action}"]`);
  if (target && !target.disabled) target.focus();
}

function drawMessage(entry) {
  const { message, element, ui } = entry;
  const key = focusKey(element);
  element.className = `message kind-${String(message.kind).toLowerCase()}`;
  element.classList.toggle("mine", isMine(message));
  element.classList.toggle("deleted", Boolean(message.deleted_at));
  element.classList.toggle("edited", Boolean(message.edited_at && !message.deleted_at));
  const mentionsMe = !message.deleted_at && (message.mentions || []).includes(me.id);
  element.classList.toggle("mentions-me", mentionsMe);
  if (mentionsMe) element.setAttribute("aria-description", t.mentionsYou);
  else element.removeAttribute("aria-description");
  element.replaceChildren(...(message.kind === "TALK" ? talkContent(message, ui) : noteContent(message)));
  restoreFocus(element, key);
}

function messageElement(message) {
  const li = document.createElement("li");
  li.dataset.seq = String(message.seq);
  li.dataset.id = String(message.id);
  li.dataset.day = dayKey(new Date(message.created_at));
  li.setAttribute("data-testid", "message");
  const ui = { draft: null, saving: false, picker: false, confirming: false, fromComposer: false };
  const entry = { message, element: li, ui };
  byId.set(message.id, entry);
  drawMessage(entry);
  return li;
}

// A `message.updated` frame (live or replayed) or a newer copy: the message after its latest change.
function applyUpdate(message) {
  const entry = byId.get(message.id);
  if (!entry) {
    if (loadingOlder) updatesWhileLoadingOlder.push(message);
    return; // not shown: older than the loaded history; "load older" reads its current state
  }
  entry.message = message;
  const { ui } = entry;
  const saved = ui.saving && !message.deleted_at;
  if (message.deleted_at) Object.assign(ui, { draft: null, saving: false, picker: false, confirming: false });
  else if (ui.saving) Object.assign(ui, { draft: null, saving: false });
  const hadFocus = entry.element.contains(document.activeElement);
  drawMessage(entry);
  if (saved && (hadFocus || document.activeElement === document.body)) focusAfterEdit(entry);
  refreshQuotesOf(message);
}

// Replies quote the original as it was when they were sent; the page shows it as it is now.
function refreshQuotesOf(original) {
  const deleted = Boolean(original.deleted_at);
  const excerpt = deleted ? "" : characters(original.body, config.replyExcerptChars);
  for (const entry of byId.values()) {
    const reply = entry.message.reply_to;
    if (!reply || reply.id !== original.id) continue;
    if (reply.deleted === deleted && reply.excerpt === excerpt) continue;
    entry.message = { ...entry.message, reply_to: { ...reply, excerpt, deleted } };
    drawMessage(entry);
  }
  if (replyTarget && replyTarget.id === original.id) {
    if (deleted) setReplyTarget(null);
    else setReplyTarget(original);
  }
}

// --- the history's layout: groups, day separators, the new-messages marker ----------------------------
// Derived from the messages shown, never stored: `arrange(li)` sets what goes between a message and the one
// before it (a day separator, the marker) and whether it continues that one's group. Inserting a message
// changes only its own place and the next message's, so each insertion arranges those two.

function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth() + 1}-${date.getDate()}`;
}

function dayLabel(iso) {
  const when = new Date(iso);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(when) === dayKey(today)) return t.today;
  if (dayKey(when) === dayKey(yesterday)) return t.yesterday;
  return dayFormat.format(when);
}

// The unread rule of the server (messaging.services: TALK from others, not deleted, after the read
// position), for the messages that were there when the page opened: live ones are being read as they come.
function unreadAtOpen(message) {
  return (
    message.seq > config.lastReadSeq &&
    message.seq <= config.renderedSeq &&
    message.kind === "TALK" &&
    !message.deleted_at &&
    !isMine(message)
  );
}

let markerSeq = null; // the first message unread at open that is shown (older pages may move it up)
const newMarker = separatorElement("new-messages", t.newMessages);

function separatorElement(kind, text) {
  const li = document.createElement("li");
  li.className = `separator ${kind}`;
  li.setAttribute("data-testid", kind);
  const label = document.createElement("span");
  label.textContent = text;
  li.append(label);
  return li;
}

function isMessageElement(node) {
  return Boolean(node && node.dataset.seq);
}

function previousMessageElement(li) {
  let node = li.previousElementSibling;
  while (node && !isMessageElement(node)) node = node.previousElementSibling;
  return node;
}

function nextMessageElement(li) {
  let node = li.nextElementSibling;
  while (node && !isMessageElement(node)) node = node.nextElementSibling;
  return node;
}

function messageOf(li) {
  return byId.get(Number(li.dataset.id)).message;
}

function sameGroup(before, message) {
  if (before.kind !== "TALK" || message.kind !== "TALK" || !before.sender || !message.sender) return false;
  const gap = Date.parse(message.created_at) - Date.parse(before.created_at);
  return before.sender.id === message.sender.id && gap >= 0 && gap < GROUP_GAP_MS;
}

function arrange(li) {
  const message = messageOf(li);
  const previous = previousMessageElement(li);
  const wanted = [];
  if (!previous || previous.dataset.day !== li.dataset.day) wanted.push(`day ${li.dataset.day}`);
  // The first unread message shown is the first unread one only if the message before it is shown too.
  if (message.seq === markerSeq && (previous || !hasMore)) wanted.push("new");
  const present = [];
  for (let node = li.previousElementSibling; node && node !== previous; node = node.previousElementSibling) {
    present.unshift(node);
  }
  if (present.map((node) => node.dataset.key).join("|") !== wanted.join("|")) {
    for (const node of present) node.remove();
    for (const key of wanted) {
      const separator = key === "new" ? newMarker : separatorElement("day-separator", "");
      separator.dataset.key = key;
      separator.dataset.when = message.created_at;
      li.before(separator);
    }
    relabelDays(); // a page open past midnight: yesterday's "Today" says "Yesterday" now
  }
  const continued = wanted.length === 0 && previous !== null && sameGroup(messageOf(previous), message);
  li.dataset.group = continued ? "continued" : "start";
}

function relabelDays() {
  for (const separator of list.querySelectorAll(".day-separator")) {
    separator.firstChild.textContent = dayLabel(separator.dataset.when);
  }
}

// A message was inserted: its own place and the next message's may have changed.
function arrangeAround(li) {
  arrange(li);
  const next = nextMessageElement(li);
  if (next) arrange(next);
}

function noteUnreadAtOpen(message) {
  if (!unreadAtOpen(message) || (markerSeq !== null && message.seq >= markerSeq)) return;
  const before = markerSeq;
  markerSeq = message.seq;
  if (before !== null && rendered.has(before)) arrange(rendered.get(before)); // the marker moves up
}

// --- jump to newest ----------------------------------------------------------------------------------
let unseen = 0; // messages that arrived below a reader who scrolled up

function distanceFromBottom() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
}

function updateJumpButton() {
  if (distanceFromBottom() < 80) unseen = 0;
  jumpButton.hidden = unseen === 0;
  jumpButton.textContent = unseen ? `${t.jumpToNewest} · ${format(t.newBelow, { count: unseen })}` : t.jumpToNewest;
}

jumpButton.addEventListener("click", () => {
  releaseAnchor();
  scrollToBottom();
  unseen = 0;
  updateJumpButton();
  input.focus(); // the button is gone: the focus goes where a reader of the newest messages writes
});

// Opened at a message (`?at=SEQ`, a search hit): the page stays on it while the replay brings the newer
// messages, until the reader scrolls, types or sends; then new messages stick to the bottom again.
let anchored = config.atSeq !== null && config.atSeq !== undefined;

function nearBottom() {
  return !anchored && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function releaseAnchor() {
  anchored = false;
}
for (const type of ["wheel", "pointerdown", "keydown"]) scroller.addEventListener(type, releaseAnchor, { passive: true });

function scrollToBottom() {
  scroller.scrollTop = scroller.scrollHeight;
}

// At the newest messages, unless what arrived since the last visit is taller than the view: then at the
// marker, the first of them on top.
function openAtReadPosition() {
  scrollToBottom();
  if (!newMarker.isConnected) return;
  const above = newMarker.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
  if (above < 0) scroller.scrollTop += above - 8;
}

// A stored message (history, replay or live). Returns false if that seq is already shown.
function showMessage(message) {
  if (rendered.has(message.seq)) return false;
  const stick = nearBottom();
  const element = messageElement(message);
  let next = null;
  if (message.seq < lastSeq) {
    next = [...list.children].find((child) => Number(child.dataset.seq) > message.seq) || null;
  }
  const arrivedBelow = message.seq > lastSeq && lastSeq > 0; // a new message, not history filling in
  list.insertBefore(element, next);
  rendered.set(message.seq, element);
  noteUnreadAtOpen(message);
  arrangeAround(element);
  lastSeq = Math.max(lastSeq, message.seq);
  if (firstSeq === null || message.seq < firstSeq) firstSeq = message.seq;
  const own = message.sender && message.sender.id === me.id;
  if (own) {
    const local = pending.get(message.client_id);
    if (local) {
      local.element.remove();
      pending.delete(message.client_id);
    }
  }
  if (stick || (own && !anchored)) scrollToBottom();
  else if (arrivedBelow && !own && opened) {
    unseen += 1;
    updateJumpButton();
  }
  return true;
}

// The message a search hit named (or the closest one before it: its seq may be a change's), centred and
// marked until the reader moves on.
function showTarget(seq) {
  let target = null;
  for (const [shownSeq, element] of rendered) {
    if (shownSeq <= seq && (target === null || shownSeq > Number(target.dataset.seq))) target = element;
  }
  if (!target) return;
  target.classList.add("search-target");
  target.setAttribute("aria-current", "true");
  target.scrollIntoView({ block: "center" });
}

// --- older history ----------------------------------------------------------------------------------
function updateOlderButton() {
  olderButton.hidden = false;
  olderButton.disabled = !hasMore || loadingOlder;
  olderButton.textContent = loadingOlder ? t.loading : hasMore ? t.loadOlder : t.noOlder;
}

async function loadOlder() {
  if (!hasMore || loadingOlder || firstSeq === null) return;
  loadingOlder = true;
  updateOlderButton();
  try {
    const data = await api("GET", `${config.messagesUrl}?before_seq=${firstSeq}&limit=${config.pageSize}`);
    // The reader stays in place: the message that was first keeps its place on screen, whatever the
    // separators above it became.
    const anchor = rendered.get(firstSeq);
    const anchorTop = anchor.getBoundingClientRect().top;
    const fragment = document.createDocumentFragment();
    const added = [];
    for (const message of data.results) {
      if (rendered.has(message.seq) || message.seq >= firstSeq) continue;
      const element = messageElement(message);
      rendered.set(message.seq, element);
      fragment.append(element);
      added.push(element);
      noteUnreadAtOpen(message);
    }
    const oldest = data.results.length ? data.results[0].seq : firstSeq;
    list.prepend(fragment);
    firstSeq = Math.min(firstSeq, oldest);
    hasMore = Boolean(data.has_more);
    for (const element of added) arrange(element);
    arrange(anchor);
    scroller.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
  } catch (error) {
    showError(errorElement, format(t.error_generic, { detail: error.detail || error.message }));
  } finally {
    loadingOlder = false;
    // Changes that arrived while the page was read came in seq order and are at least as new as it.
    for (const message of updatesWhileLoadingOlder.splice(0)) applyUpdate(message);
    updateOlderButton();
  }
}

olderButton.addEventListener("click", loadOlder);
scroller.addEventListener("scroll", () => {
  if (scroller.scrollTop < 60) loadOlder();
  if (unseen) updateJumpButton();
  if (nearBottom()) scheduleRead();
});

// --- connection state ---------------------------------------------------------------------------------
const banner = new ConnectionBanner({ element: stateElement, presenceElement: document.querySelector(".presence") });

function setState(state, code) {
  if (state === "closed") {
    const text = t[`closed_${code}`] || format(t.error_generic, { detail: code });
    banner.set(state, text);
    showError(errorElement, text);
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    return;
  }
  banner.set(state, t[state === "reconnecting" ? "connectionLost" : state] || state);
}

// --- sending ------------------------------------------------------------------------------------------
function pendingElement(body, reply, files) {
  const li = document.createElement("li");
  li.className = "message kind-talk mine pending";
  li.setAttribute("data-testid", "pending-message");
  const status = document.createElement("span");
  status.className = "status";
  status.textContent = t.sending;
  li.append(avatarElement(me), headElement(me, status));
  if (reply) li.append(quoteElement(reply));
  const text = document.createElement("div");
  text.className = "body";
  text.textContent = body;
  li.append(text);
  if (files.length) {
    const names = document.createElement("div");
    names.className = "pending-attachments";
    names.textContent = files.map((file) => `📎 ${file.name}`).join("  ");
    li.append(names);
  }
  return li;
}

function transmit(clientId) {
  const local = pending.get(clientId);
  if (!local || local.acked || local.failed || !chat.synced) return;
  const frame = { type: "send", client_id: clientId, body: local.body };
  if (local.replyTo !== null) frame.reply_to = local.replyTo;
  if (local.attachments.length) frame.attachments = local.attachments.map((attachment) => attachment.id);
  if (socket.send(frame)) local.sentAt = Date.now();
}

function sendMessage(body, attachments) {
  releaseAnchor();
  const clientId = newClientId();
  const reply = replyTarget ? replySummary(replyTarget) : null;
  const element = pendingElement(body, reply, attachments);
  pending.set(clientId, {
    body,
    attachments,
    replyTo: reply ? reply.id : null,
    element,
    sentAt: 0,
    acked: false,
    failed: false,
  });
  pendingList.append(element);
  setReplyTarget(null);
  scrollToBottom();
  transmit(clientId);
}

// After a (re)connect and its replay: whatever is still unacknowledged goes again, same client_id.
function resendUnacknowledged() {
  for (const clientId of pending.keys()) transmit(clientId);
}

setInterval(() => {
  const now = Date.now();
  for (const [clientId, local] of pending) {
    if (!local.acked && !local.failed && now - local.sentAt > RESEND_AFTER_MS) transmit(clientId);
  }
}, 1000);

function markFailed(clientId, text) {
  const local = pending.get(clientId);
  if (!local) return;
  local.failed = true;
  local.element.classList.add("failed");
  local.element.querySelector(".status").textContent = `${t.failed}: ${text}`;
  pending.delete(clientId);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (uploads.some((upload) => upload.state === "uploading")) {
    showError(errorElement, t.uploadsRunning);
    return;
  }
  const attachments = uploads.filter((upload) => upload.state === "done").map((upload) => upload.attachment);
  const body = input.value.trim();
  if (!body && !attachments.length) return; // files alone are a message (no caption); nothing at all is not
  input.value = "";
  clearUploads();
  typingSentAt = 0; // others clear our "typing…" when the message lands; the next keystroke says it again
  sendMessage(body, attachments);
});

// --- attaching files: button, drag and drop, paste ------------------------------------------------------
// Each file is uploaded at once (its own progress bar); the send then carries the uploaded ids. A refusal
// (too large, a type not allowed, too many) stays in the tray with the reason until it is dismissed.
const tray = document.getElementById("upload-tray");
const attachInput = document.getElementById("attach-input");
const attachButton = document.getElementById("attach-button");
const dropZone = form.closest(".chat-main") || form;
const uploads = []; // {file, state: "uploading"|"done"|"failed", attachment, element, progress, abort}

function uploadRefusal(error) {
  if (error.code === "validation_error" && error.fields) {
    return format(t.error_validation_error, { detail: Object.values(error.fields).flat().join(" ") });
  }
  return t[`upload_${error.code}`] || t[`error_${error.code}`] || format(t.error_generic, { detail: error.detail });
}

function drawUpload(upload) {
  const { element, file } = upload;
  element.className = `upload upload-${upload.state}`;
  element.dataset.state = upload.state;
  const name = document.createElement("span");
  name.className = "upload-name";
  name.textContent = file.name || "file";
  const size = document.createElement("span");
  size.className = "upload-size";
  size.textContent = formatSize(file.size, lang);
  const parts = [name, size];
  if (upload.state === "uploading") parts.push(upload.progress);
  if (upload.state === "failed") {
    const reason = document.createElement("span");
    reason.className = "upload-error";
    reason.setAttribute("role", "alert");
    reason.setAttribute("data-testid", "upload-error");
    reason.textContent = upload.error;
    parts.push(reason);
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "link";
  remove.textContent = "✕";
  remove.setAttribute("aria-label", format(t.removeFile, { name: file.name || "file" }));
  remove.addEventListener("click", () => removeUpload(upload));
  parts.push(remove);
  element.replaceChildren(...parts);
  tray.hidden = uploads.length === 0;
}

function removeUpload(upload) {
  if (upload.state === "uploading") upload.abort();
  const index = uploads.indexOf(upload);
  if (index >= 0) uploads.splice(index, 1);
  upload.element.remove();
  tray.hidden = uploads.length === 0;
  input.focus();
}

function clearUploads() {
  uploads.splice(0);
  tray.replaceChildren();
  tray.hidden = true;
}

function failUpload(upload, text) {
  upload.state = "failed";
  upload.error = text;
  drawUpload(upload);
}

function addFiles(files) {
  for (const file of files) {
    const element = document.createElement("li");
    element.setAttribute("data-testid", "upload");
    const progress = document.createElement("progress");
    progress.max = 1;
    progress.value = 0;
    progress.setAttribute("data-testid", "upload-progress");
    progress.setAttribute("aria-label", format(t.uploading, { name: file.name || "file" }));
    const upload = { file, state: "uploading", attachment: null, element, progress, abort: () => {}, error: "" };
    uploads.push(upload);
    tray.append(element);
    drawUpload(upload);
    const waiting = uploads.filter((u) => u.state !== "failed").length;
    if (file.size > config.attachmentMaxBytes) {
      failUpload(upload, t.upload_file_too_large);
      continue;
    }
    if (waiting > config.attachmentMaxPerMessage) {
      failUpload(upload, t.upload_too_many_attachments);
      continue;
    }
    const request = uploadFile(config.attachmentsUrl, file, (loaded, total) => {
      progress.value = total ? loaded / total : 0;
      element.dataset.percent = String(Math.round((100 * loaded) / (total || 1))); // the furthest it got
    });
    upload.abort = request.abort;
    request.done.then(
      (attachment) => {
        if (!uploads.includes(upload)) return; // removed meanwhile
        upload.state = "done";
        upload.attachment = attachment;
        drawUpload(upload);
      },
      (error) => {
        if (uploads.includes(upload)) failUpload(upload, uploadRefusal(error));
      },
    );
  }
}

attachButton.addEventListener("click", () => attachInput.click());
attachInput.addEventListener("change", () => {
  addFiles([...attachInput.files]);
  attachInput.value = "";
  input.focus();
});
input.addEventListener("paste", (event) => {
  const files = event.clipboardData ? [...event.clipboardData.files] : [];
  if (!files.length) return; // text pastes as text
  event.preventDefault();
  addFiles(files);
});
function carriesFiles(event) {
  return Boolean(event.dataTransfer && [...event.dataTransfer.types].includes("Files"));
}
dropZone.addEventListener("dragover", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
  dropZone.classList.add("dragging");
});
dropZone.addEventListener("dragleave", (event) => {
  if (!dropZone.contains(event.relatedTarget)) dropZone.classList.remove("dragging");
});
dropZone.addEventListener("drop", (event) => {
  dropZone.classList.remove("dragging");
  if (!carriesFiles(event)) return;
  event.preventDefault();
  addFiles([...event.dataTransfer.files]);
  input.focus();
});
// Enter sends, Shift+Enter is a new line; Up in an empty composer edits the viewer's newest message.
input.addEventListener("keydown", (event) => {
  if (event.isComposing) return;
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  } else if (event.key === "ArrowUp" && !input.value && !modified(event)) {
    const entry = newestOwnMessage();
    if (!entry) return;
    event.preventDefault();
    startEdit(entry, true);
  }
});

function modified(event) {
  return event.shiftKey || event.altKey || event.ctrlKey || event.metaKey;
}

function newestOwnMessage() {
  let newest;
  for (const entry of byId.values()) {
    if (isMine(entry.message) && isLive(entry.message) && (!newest || entry.message.seq > newest.message.seq)) {
      newest = entry;
    }
  }
  return newest;
}

// --- replying ----------------------------------------------------------------------------------------
const replyBar = document.getElementById("reply-bar");
const replyBarQuote = document.getElementById("reply-bar-quote");
const replyCancel = document.getElementById("reply-cancel");

function replySummary(message) {
  return {
    id: message.id,
    seq: message.seq,
    sender: message.sender,
    excerpt: characters(message.body, config.replyExcerptChars),
    deleted: Boolean(message.deleted_at),
  };
}

function setReplyTarget(message) {
  replyTarget = message && isLive(message) ? message : null;
  replyBar.hidden = replyTarget === null;
  if (replyTarget === null) {
    replyBarQuote.replaceChildren();
    return;
  }
  const label = document.createElement("span");
  label.className = "reply-label";
  label.textContent = format(t.replyingTo, { name: displayName(replyTarget.sender) });
  const excerpt = document.createElement("span");
  excerpt.className = "reply-excerpt";
  excerpt.textContent = replySummary(replyTarget).excerpt;
  replyBarQuote.replaceChildren(label, excerpt);
}

replyCancel.addEventListener("click", () => {
  setReplyTarget(null);
  input.focus();
});

// --- changing a message: edit, delete, react -----------------------------------------------------------
// Each change goes over the socket; what it did comes back to every member (this page included) as a
// `message.updated` frame, which redraws the message. Only a refusal is answered to this page alone.

function sendChange(frame) {
  if (chat.synced && socket.send(frame)) return true;
  showError(errorElement, t.notConnected);
  return false;
}

function toggleReaction(entry, emoji) {
  const reaction = (entry.message.reactions || []).find((r) => r.emoji === emoji);
  const on = !(reaction && reactedByMe(reaction));
  sendChange({ type: "react", message_id: entry.message.id, emoji, on });
}

function saveEdit(entry) {
  const field = entry.element.querySelector(".edit-body");
  const body = (field ? field.value : entry.ui.draft || "").trim();
  if (!body && !(entry.message.attachments && entry.message.attachments.length)) {
    showError(errorElement, t.error_body_empty); // a message that carries files may lose its caption
    return;
  }
  if (body === entry.message.body) {
    entry.ui.draft = null; // nothing changed: nothing to send
  } else {
    entry.ui.draft = body;
    if (!sendChange({ type: "edit", message_id: entry.message.id, body })) return;
    entry.ui.saving = true; // until the change comes back as message.updated, or is refused
  }
  drawMessage(entry);
  if (entry.ui.draft === null) focusAfterEdit(entry);
}

// An edit started with Up in the composer goes back there when it ends; one started with the Edit button
// goes back to that button.
function startEdit(entry, fromComposer) {
  Object.assign(entry.ui, { draft: entry.message.body, saving: false, fromComposer });
  drawMessage(entry);
  const field = entry.element.querySelector(".edit-body");
  if (!field) return;
  field.focus();
  field.setSelectionRange(field.value.length, field.value.length);
  field.scrollIntoView({ block: "nearest" });
}

function focusAfterEdit(entry) {
  if (entry.ui.fromComposer) input.focus();
  else entry.element.querySelector('[data-action="edit"]')?.focus();
  entry.ui.fromComposer = false;
}

function entryOf(target) {
  const li = target.closest("li[data-testid=message]");
  return li ? byId.get(Number(li.dataset.id)) : undefined;
}

list.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || !list.contains(button)) return;
  const entry = entryOf(button);
  if (!entry) return;
  const { message, ui } = entry;
  switch (button.dataset.action) {
    case "reply":
      setReplyTarget(message);
      input.focus();
      return;
    case "toggle-picker":
      ui.picker = !ui.picker;
      drawMessage(entry);
      if (ui.picker) entry.element.querySelector(".reaction-picker button:not(:disabled)")?.focus();
      return;
    case "pick":
      ui.picker = false;
      toggleReaction(entry, button.dataset.emoji);
      drawMessage(entry);
      entry.element.querySelector('[data-action="toggle-picker"]')?.focus();
      return;
    case "react":
      toggleReaction(entry, button.dataset.emoji);
      return;
    case "edit":
      startEdit(entry, false);
      return;
    case "cancel-edit":
      ui.draft = null;
      ui.saving = false;
      drawMessage(entry);
      focusAfterEdit(entry);
      return;
    case "delete":
      ui.confirming = true;
      drawMessage(entry);
      entry.element.querySelector('[data-action="cancel-delete"]')?.focus();
      return;
    case "confirm-delete":
      ui.confirming = false;
      sendChange({ type: "delete", message_id: message.id });
      drawMessage(entry);
      return;
    case "cancel-delete":
      ui.confirming = false;
      drawMessage(entry);
      entry.element.querySelector('[data-action="delete"]')?.focus();
      return;
    case "show-original": {
      const original = byId.get(Number(button.dataset.originalId));
      if (original) {
        original.element.scrollIntoView({ block: "center" });
        original.element.classList.add("highlight");
        setTimeout(() => original.element.classList.remove("highlight"), 1500);
      }
      return;
    }
    default:
      return;
  }
});

list.addEventListener("submit", (event) => {
  const editor = event.target.closest("form.edit-form");
  if (!editor) return;
  event.preventDefault();
  const entry = entryOf(editor);
  if (entry && !entry.ui.saving) saveEdit(entry);
});

list.addEventListener("input", (event) => {
  if (!event.target.classList.contains("edit-body")) return;
  const entry = entryOf(event.target);
  if (entry) entry.ui.draft = event.target.value; // a redraw meanwhile (a reaction arriving) keeps the draft
});

list.addEventListener("keydown", (event) => {
  const entry = entryOf(event.target);
  if (!entry) return;
  if (event.target.classList.contains("edit-body")) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!entry.ui.saving) saveEdit(entry);
    } else if (event.key === "Escape") {
      event.preventDefault();
      entry.ui.draft = null;
      drawMessage(entry);
      focusAfterEdit(entry);
    }
  } else if (event.key === "Escape" && (entry.ui.picker || entry.ui.confirming)) {
    const back = entry.ui.picker ? "toggle-picker" : "delete";
    entry.ui.picker = false;
    entry.ui.confirming = false;
    drawMessage(entry);
    entry.element.querySelector(`[data-action="${back}"]`)?.focus();
  }
});

// A change that was sent but neither came back nor was refused (the socket dropped): it did not happen if
// the replay after the reconnect did not bring it, so the editor opens again with the draft.
function releaseSavingEditors() {
  for (const entry of byId.values()) {
    if (entry.ui.saving) {
      entry.ui.saving = false;
      drawMessage(entry);
    }
  }
}

// --- typing -------------------------------------------------------------------------------------------
let typingSentAt = 0;
const typingUsers = new Map(); // user id -> {user, until}

input.addEventListener("input", () => {
  const now = Date.now();
  if (input.value.trim() && now - typingSentAt > TYPING_SEND_EVERY_MS && chat.synced) {
    typingSentAt = now;
    socket.send({ type: "typing" });
  }
});

function renderTyping() {
  const now = Date.now();
  for (const [id, entry] of typingUsers) if (entry.until <= now) typingUsers.delete(id);
  const names = [...typingUsers.values()].map((entry) => displayName(entry.user));
  typingElement.textContent = names.length ? format(t.typing, { name: names.join(", ") }) : "";
}
setInterval(renderTyping, 1000);

// --- read position ------------------------------------------------------------------------------------
// Read means seen: only while the newest message is on screen (a page opened at the new-messages marker, or
// scrolled up, reports nothing until the reader reaches the bottom).
function scheduleRead() {
  if (readTimer || document.visibilityState !== "visible") return;
  readTimer = setTimeout(() => {
    readTimer = null;
    if (!nearBottom()) return;
    if (lastSeq > lastReadSent && chat.synced && socket.send({ type: "read", seq: lastSeq })) {
      lastReadSent = lastSeq;
      scroller.dataset.readSeq = String(lastSeq); // what the page has reported as read
    }
  }, 500);
}
document.addEventListener("visibilitychange", scheduleRead);

// --- frames -------------------------------------------------------------------------------------------
const chat = { synced: false };

function onFrame(frame) {
  // Other modules of the page (members.js) follow the room's events without a socket of their own.
  document.dispatchEvent(new CustomEvent("chat:frame", { detail: frame }));
  switch (frame.type) {
    case "message": {
      const message = frame.message;
      if (showMessage(message) && message.seq > config.renderedSeq && personnelElement) {
        // Personnel moves with ENTER/LEAVE written after the page was rendered.
        const [now, max] = personnelElement.textContent.split("/").map((part) => Number(part.trim()));
        const delta = message.kind === "ENTER" ? 1 : message.kind === "LEAVE" ? -1 : 0;
        if (delta && Number.isFinite(now)) personnelElement.textContent = `${Math.max(0, now + delta)} / ${max}`;
      }
      if (message.sender) typingUsers.delete(message.sender.id);
      renderTyping();
      scheduleRead();
      break;
    }
    case "message.updated":
      // A change takes the room's next seq: a resume continues after it.
      lastSeq = Math.max(lastSeq, frame.seq);
      applyUpdate(frame.message); // no `read`: unread counts messages, and a change is not a new one
      break;
    case "synced":
      chat.synced = true;
      releaseSavingEditors();
      socket.resetBackoff();
      setState("connected");
      errorElement.hidden = true;
      presence.markSelfConnected(me);
      resendUnacknowledged();
      scheduleRead();
      break;
    case "ack": {
      const local = pending.get(frame.client_id);
      if (local) {
        local.acked = true;
        if (rendered.has(frame.seq)) {
          local.element.remove();
          pending.delete(frame.client_id);
        }
      }
      break;
    }
    case "typing":
      if (frame.user && frame.user.id !== me.id) {
        typingUsers.set(frame.user.id, { user: frame.user, until: Date.now() + TYPING_SHOW_MS });
        renderTyping();
      }
      break;
    case "error": {
      const text =
        frame.code === "validation_error"
          ? format(t.error_validation_error, { detail: frame.detail })
          : t[`error_${frame.code}`] || format(t.error_generic, { detail: frame.detail });
      if (frame.message_id !== undefined && frame.message_id !== null) {
        // A refused edit, delete or reaction: nothing changed; an open editor keeps its draft.
        const entry = byId.get(frame.message_id);
        if (entry && entry.ui.saving) {
          entry.ui.saving = false;
          drawMessage(entry);
        }
        showError(errorElement, text);
      } else if (frame.client_id && frame.code !== "unavailable") {
        markFailed(frame.client_id, text); // a refusal: sending it again would be refused again
      } else if (frame.code !== "unavailable" && frame.code !== "rate_limited") {
        showError(errorElement, text);
      } else if (frame.code === "unavailable" && !frame.client_id && [...byId.values()].some((e) => e.ui.saving)) {
        releaseSavingEditors(); // "nothing was changed": the edit can be saved again
        showError(errorElement, text);
      } // otherwise unavailable / rate_limited: the resend timer tries again with the same client_id
      break;
    }
    default:
      break; // pong, read receipts
  }
}

const socket = new ReconnectingSocket({
  urlFor: () => `${config.chatSocketPath}?after_seq=${lastSeq}`,
  onFrame,
  onState: (state, code) => {
    chat.synced = false;
    setState(state, code);
  },
});

const presence = new PresenceList({
  element: document.getElementById("presence-list"),
  config,
  strings: t,
  lang,
});

for (const message of config.history) showMessage(message);
config.history = null; // what is shown now lives in the page's messages, kept current by the socket
lastSeq = Math.max(lastSeq, config.lastSeq);
updateOlderButton();
if (anchored) showTarget(config.atSeq);
else openAtReadPosition();
opened = true;
presence.start();
socket.start();
input.focus();
