// The sidebar of the viewer's rooms: rendered by the server, then kept live by the user socket /ws/me/
// (no polling). Each `room.activity` frame carries a room's full counts, so a frame simply replaces what
// the row shows; `member: false` removes the row, an unknown room with `member: true` (joined in another
// tab or device) is added after one GET of its title. The page title shows the unread total.
// A `mention` frame raises a browser notification only while the tab is hidden, and only once the user
// allowed it with the "Enable notifications" button: permission is asked for, never forced.
// Names and titles are always set as text.

import { api, format, readJson } from "./api.js";
import { ReconnectingSocket } from "./socket.js";

const config = readJson("sidebar-config");
const t = config.strings || {};
const list = document.getElementById("sidebar-rooms");
const sidebar = document.getElementById("sidebar");
const toggle = document.getElementById("sidebar-toggle");
const toggleBadge = document.getElementById("sidebar-toggle-unread");
const emptyNote = document.getElementById("sidebar-empty");
const notifyButton = document.getElementById("notify-enable");
const notifyState = document.getElementById("notify-state");
const baseTitle = document.title.replace(/^\(\d+\)\s*/, "");
const titles = new Map(); // room id -> title, for notifications
const fetching = new Set(); // room ids whose title is being read

function rowOf(roomId) {
  return list.querySelector(`li[data-room-id="${Number(roomId)}"]`);
}

function setBadge(badge, count) {
  badge.dataset.count = String(count);
  badge.querySelector(".count").textContent = String(count);
  badge.hidden = count <= 0;
}

function badgeElement(kind, count) {
  const badge = document.createElement("span");
  badge.className = `badge ${kind}-badge`;
  badge.setAttribute("data-testid", kind === "unread" ? "sidebar-unread" : "sidebar-mentions");
  if (kind === "mention") {
    const at = document.createElement("span");
    at.setAttribute("aria-hidden", "true");
    at.textContent = "@";
    badge.append(at);
  }
  const number = document.createElement("span");
  number.className = "count";
  const label = document.createElement("span");
  label.className = "visually-hidden";
  label.textContent = ` ${kind === "unread" ? t.unreadLabel : t.mentionsLabel}`;
  badge.append(number, label);
  setBadge(badge, count);
  return badge;
}

function newRow(roomId, title) {
  const li = document.createElement("li");
  li.dataset.roomId = String(roomId);
  li.setAttribute("data-testid", "sidebar-room");
  const link = document.createElement("a");
  link.href = format(config.roomUrl, { id: roomId });
  const name = document.createElement("span");
  name.className = "sidebar-title";
  name.textContent = title;
  link.append(name, badgeElement("mention", 0), badgeElement("unread", 0));
  li.append(link);
  return li;
}

function updateTotals() {
  let total = 0;
  for (const badge of list.querySelectorAll(".unread-badge")) total += Number(badge.dataset.count) || 0;
  document.title = total > 0 ? `(${total}) ${baseTitle}` : baseTitle;
  if (toggleBadge) {
    toggleBadge.textContent = String(total);
    toggleBadge.hidden = total <= 0;
  }
  emptyNote.hidden = list.children.length > 0;
}

function applyCounts(row, frame) {
  setBadge(row.querySelector(".unread-badge"), Number(frame.unread) || 0);
  setBadge(row.querySelector(".mention-badge"), Number(frame.mentions) || 0);
}

const latest = new Map(); // room id -> the newest frame of a room still being added

// A DM is shown by its other member's name, as the server renders it (its stored title names both users).
async function partnerName(roomId, fallback) {
  try {
    const data = await api("GET", format(config.membersApiUrl, { id: roomId }));
    const other = (data.results || []).find((member) => member.user && member.user.id !== config.meId);
    return other ? other.user.nickname || other.user.username : fallback;
  } catch {
    return fallback;
  }
}

async function addRoom(roomId) {
  if (fetching.has(roomId)) return;
  fetching.add(roomId);
  try {
    const room = await api("GET", format(config.roomApiUrl, { id: roomId }));
    const title = room.kind === "dm" ? await partnerName(roomId, room.title) : room.title;
    const frame = latest.get(roomId);
    if (!frame || frame.member === false || rowOf(roomId)) return;
    titles.set(roomId, title);
    const row = newRow(roomId, title);
    applyCounts(row, frame);
    list.prepend(row); // just joined: the most recently active
    updateTotals();
  } catch {
    // not readable (left again, or the server is away): the next connect lists it if it is still ours
  } finally {
    fetching.delete(roomId);
    latest.delete(roomId);
  }
}

function onActivity(frame) {
  const roomId = Number(frame.room_id);
  if (!Number.isInteger(roomId)) return;
  const row = rowOf(roomId);
  if (frame.member === false) {
    if (row) row.remove();
    latest.set(roomId, frame);
    updateTotals();
    return;
  }
  if (!row) {
    latest.set(roomId, frame);
    addRoom(roomId);
    return;
  }
  applyCounts(row, frame);
  updateTotals();
}

function onMention(frame) {
  const message = frame.message;
  if (!message || !document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  const sender = message.sender ? message.sender.nickname || message.sender.username : "?";
  const roomId = Number(frame.room_id);
  const room = titles.get(roomId) || "";
  const notification = new Notification(format(t.mentionTitle, { name: sender, room }), {
    body: String(message.body || "").slice(0, 200),
    tag: `mention-${message.id}`, // one per message, however many tabs receive the frame
  });
  notification.addEventListener("click", () => {
    window.focus();
    if (roomId !== config.currentRoomId) window.location.assign(format(config.roomUrl, { id: roomId }));
    notification.close();
  });
}

// --- notifications: offered by a button, never asked for unprompted ------------------------------------
function showNotifyState() {
  if (!("Notification" in window)) return;
  notifyButton.hidden = Notification.permission !== "default";
  if (Notification.permission === "granted") notifyState.textContent = t.notificationsOn;
  else if (Notification.permission === "denied") notifyState.textContent = t.notificationsBlocked;
}

notifyButton.addEventListener("click", async () => {
  try {
    await Notification.requestPermission();
  } finally {
    showNotifyState();
  }
});

// --- collapsing on narrow screens ----------------------------------------------------------------------
toggle.addEventListener("click", () => {
  const open = toggle.getAttribute("aria-expanded") !== "true";
  toggle.setAttribute("aria-expanded", String(open));
  sidebar.classList.toggle("open", open);
  if (open) sidebar.querySelector("a, button:not([hidden])")?.focus();
});

for (const row of list.children) {
  titles.set(Number(row.dataset.roomId), row.querySelector(".sidebar-title").textContent);
}
showNotifyState();
updateTotals();

const socket = new ReconnectingSocket({
  urlFor: () => config.socketPath,
  onFrame: (frame) => {
    if (frame.type === "room.activity") {
      socket.resetBackoff();
      sidebar.dataset.state = "live";
      onActivity(frame);
    } else if (frame.type === "mention") {
      onMention(frame);
    }
  },
  onState: (state) => {
    sidebar.dataset.state = state;
  },
  baseDelayMs: 500,
  maxDelayMs: 15000,
});
socket.start();
