// The member list beside the chat: who is connected now, and when the others were last here
// ("left 5 minutes ago"). Seeded from GET /members, kept live by the presence socket; if that socket is
// not available the list is refreshed from /members now and then instead.

import { api, format } from "./api.js";
import { ReconnectingSocket } from "./socket.js";

const REFRESH_MS = 30000;

function displayName(user) {
  return user ? user.nickname || user.username : "?";
}

export function relativeTime(when, lang, now = Date.now()) {
  const rtf = new Intl.RelativeTimeFormat(lang || undefined, { numeric: "always" });
  const seconds = Math.max(0, Math.round((now - when.getTime()) / 1000));
  if (seconds < 60) return rtf.format(-seconds, "second");
  if (seconds < 3600) return rtf.format(-Math.floor(seconds / 60), "minute");
  if (seconds < 86400) return rtf.format(-Math.floor(seconds / 3600), "hour");
  return rtf.format(-Math.floor(seconds / 86400), "day");
}

export class PresenceList {
  constructor({ element, config, strings, lang }) {
    this.element = element;
    this.config = config;
    this.strings = strings;
    this.lang = lang;
    this.participants = new Map(); // user id -> {user, connected, left_at}
    this.socket = null;
    this.pollTimer = null;
  }

  start() {
    this.refreshFromMembers();
    this.socket = new ReconnectingSocket({
      urlFor: () => this.config.presenceSocketPath,
      onFrame: (frame) => this.onFrame(frame),
      onState: (state, code) => {
        if (state === "closed" && code === 4404) this.poll(); // no presence socket here: poll instead
      },
      baseDelayMs: 500,
      maxDelayMs: 15000,
    }).start();
    setInterval(() => this.render(), REFRESH_MS); // keeps "left 5 minutes ago" true
  }

  poll() {
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => this.refreshFromMembers(), REFRESH_MS);
  }

  async refreshFromMembers() {
    try {
      const data = await api("GET", this.config.membersUrl);
      const results = Array.isArray(data) ? data : data.results || [];
      for (const member of results) this.upsert(member);
      this.render();
    } catch {
      // the list stays as it is; the socket (or the next poll) will fill it in
    }
  }

  onFrame(frame) {
    if (frame.type === "presence.snapshot") {
      for (const participant of frame.participants || []) this.upsert(participant);
      this.socket.resetBackoff();
      this.render();
    } else if (frame.type === "presence.changed" && frame.participant) {
      this.upsert(frame.participant);
      this.render();
    }
  }

  upsert(participant) {
    if (!participant || !participant.user) return;
    const previous = this.participants.get(participant.user.id) || {};
    this.participants.set(participant.user.id, { ...previous, ...participant });
  }

  // The chat socket is proof that the viewer is here, whatever the last snapshot said.
  markSelfConnected(me) {
    const current = this.participants.get(me.id);
    if (current && current.connected) return;
    this.upsert({ user: me, connected: true });
    this.render();
  }

  statusText(participant) {
    if (participant.connected) return this.strings.online;
    if (participant.left_at) {
      const when = new Date(participant.left_at);
      if (!Number.isNaN(when.getTime())) return format(this.strings.leftAgo, { ago: relativeTime(when, this.lang) });
    }
    return this.strings.offline;
  }

  render() {
    const people = [...this.participants.values()].sort(
      (a, b) => Number(Boolean(b.connected)) - Number(Boolean(a.connected)) ||
        displayName(a.user).localeCompare(displayName(b.user), this.lang),
    );
    const items = people.map((participant) => {
      const li = document.createElement("li");
      li.className = participant.connected ? "online" : "offline";
      li.dataset.userId = String(participant.user.id);
      li.setAttribute("data-testid", "participant");
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.setAttribute("aria-hidden", "true");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = displayName(participant.user);
      name.title = participant.user && participant.user.username ? `@${participant.user.username}` : "";
      const status = document.createElement("span");
      status.className = "status";
      status.textContent = this.statusText(participant);
      li.append(dot, name, status);
      return li;
    });
    this.element.replaceChildren(...items);
  }
}
