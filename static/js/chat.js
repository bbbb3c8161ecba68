// The chat page. History comes rendered into the page (newest page) and older pages from
// GET /messages?before_seq=; live messages from /ws/rooms/{id}/?after_seq=<newest seq seen>, so a
// reconnect resumes exactly where the page stood. Messages are kept by seq: one seq, one element, whatever
// arrives twice. A message is sent with a fresh client_id and kept as "sending…" until the server stored
// it; unacknowledged ones are sent again after a reconnect, which the server makes idempotent.
// Bodies and names are always set as text (textContent), never parsed as HTML.

import { api, format, readJson, showError } from "./api.js";
import { PresenceList } from "./presence.js";
import { ReconnectingSocket, newClientId } from "./socket.js";

const config = readJson("chat-config");
const t = config.strings;
const me = config.me;
const lang = document.documentElement.lang || config.language || undefined;

const scroller = document.getElementById("messages");
const list = document.getElementById("message-list");
const olderButton = document.getElementById("load-older");
const stateElement = document.getElementById("connection-state");
const errorElement = document.getElementById("chat-error");
const typingElement = document.getElementById("typing");
const form = document.getElementById("send-form");
const input = document.getElementById("send-body");
const personnelElement = document.querySelector(".chat-head [data-testid=personnel]");

const timeFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
const fullTimeFormat = new Intl.DateTimeFormat(lang, { dateStyle: "full", timeStyle: "medium" });

const TYPING_SEND_EVERY_MS = 2000;
const TYPING_SHOW_MS = 4000;
const RESEND_AFTER_MS = 5000;

const rendered = new Map(); // seq -> <li>
const pending = new Map(); // client_id -> {body, element, sentAt, acked}
let lastSeq = 0; // newest seq seen: where a (re)connect resumes from (the render's last_seq at least)
let firstSeq = null; // oldest seq shown: where "load older" continues from
let hasMore = config.hasMore;
let loadingOlder = false;
let lastReadSent = 0;
let readTimer = null;

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

function messageElement(message) {
  const li = document.createElement("li");
  li.className = `message kind-${String(message.kind).toLowerCase()}`;
  li.dataset.seq = String(message.seq);
  li.setAttribute("data-testid", "message");
  if (message.sender && message.sender.id === me.id) li.classList.add("mine");
  if (message.kind === "TALK") {
    const sender = document.createElement("span");
    sender.className = "sender";
    sender.textContent = displayName(message.sender);
    sender.title = usernameTitle(message.sender);
    const body = document.createElement("div");
    body.className = "body";
    body.setAttribute("data-testid", "message-body");
    body.textContent = message.body;
    li.append(sender, timeElement(message.created_at), body);
  } else {
    const note = document.createElement("span");
    note.className = "note";
    note.textContent = format(message.kind === "ENTER" ? t.entered : t.left, { name: displayName(message.sender) });
    note.title = usernameTitle(message.sender);
    li.append(note, timeElement(message.created_at));
  }
  return li;
}

function nearBottom() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollToBottom() {
  scroller.scrollTop = scroller.scrollHeight;
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
  list.insertBefore(element, next);
  rendered.set(message.seq, element);
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
  if (stick || own) scrollToBottom();
  return true;
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
    const heightBefore = scroller.scrollHeight;
    const topBefore = scroller.scrollTop;
    const fragment = document.createDocumentFragment();
    for (const message of data.results) {
      if (rendered.has(message.seq) || message.seq >= firstSeq) continue;
      const element = messageElement(message);
      rendered.set(message.seq, element);
      fragment.append(element);
    }
    const oldest = data.results.length ? data.results[0].seq : firstSeq;
    list.prepend(fragment);
    firstSeq = Math.min(firstSeq, oldest);
    hasMore = Boolean(data.has_more);
    scroller.scrollTop = topBefore + (scroller.scrollHeight - heightBefore); // the reader stays in place
  } catch (error) {
    showError(errorElement, format(t.error_generic, { detail: error.detail || error.message }));
  } finally {
    loadingOlder = false;
    updateOlderButton();
  }
}

olderButton.addEventListener("click", loadOlder);
scroller.addEventListener("scroll", () => {
  if (scroller.scrollTop < 60) loadOlder();
});

// --- connection state ---------------------------------------------------------------------------------
function setState(state, code) {
  stateElement.dataset.state = state;
  if (state === "closed") {
    const text = t[`closed_${code}`] || format(t.error_generic, { detail: code });
    stateElement.textContent = text;
    showError(errorElement, text);
    form.querySelector("button").disabled = true;
    return;
  }
  stateElement.textContent = t[state] || state;
}

// --- sending ------------------------------------------------------------------------------------------
function pendingElement(body) {
  const li = document.createElement("li");
  li.className = "message kind-talk mine pending";
  li.setAttribute("data-testid", "pending-message");
  const sender = document.createElement("span");
  sender.className = "sender";
  sender.textContent = displayName(me);
  const status = document.createElement("span");
  status.className = "status";
  status.textContent = t.sending;
  const text = document.createElement("div");
  text.className = "body";
  text.textContent = body;
  li.append(sender, status, text);
  return li;
}

function transmit(clientId) {
  const local = pending.get(clientId);
  if (!local || local.acked || local.failed || !chat.synced) return;
  if (socket.send({ type: "send", client_id: clientId, body: local.body })) local.sentAt = Date.now();
}

function sendMessage(body) {
  const clientId = newClientId();
  const element = pendingElement(body);
  pending.set(clientId, { body, element, sentAt: 0, acked: false, failed: false });
  pendingList.append(element);
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
  const body = input.value.trim();
  if (!body) return;
  input.value = "";
  typingSentAt = 0; // others clear our "typing…" when the message lands; the next keystroke says it again
  sendMessage(body);
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

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
function scheduleRead() {
  if (readTimer || document.visibilityState !== "visible") return;
  readTimer = setTimeout(() => {
    readTimer = null;
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
  switch (frame.type) {
    case "message": {
      const message = frame.message;
      if (showMessage(message) && message.seq > config.lastSeq && personnelElement) {
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
    case "synced":
      chat.synced = true;
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
      const text = t[`error_${frame.code}`] || format(t.error_generic, { detail: frame.detail });
      if (frame.client_id && frame.code !== "unavailable") {
        markFailed(frame.client_id, text); // a refusal: sending it again would be refused again
      } else if (frame.code !== "unavailable" && frame.code !== "rate_limited") {
        showError(errorElement, text);
      } // unavailable / rate_limited: the resend timer tries again with the same client_id
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
lastSeq = Math.max(lastSeq, config.lastSeq);
updateOlderButton();
scrollToBottom();
presence.start();
socket.start();
input.focus();
