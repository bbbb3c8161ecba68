// The room page's members panel and invitation dialog (issue 18): members with their role badges, the
// moderation actions the viewer may take (the owner grants and takes the moderator role and hands the room
// over; the owner and moderators remove and ban, and lift bans), a "Message" button that opens the DM with a
// member, and, for the owner and moderators, a dialog that invites a user or makes a link to copy, and lists
// and revokes the invitations still usable.
// Everything goes through the REST API with the page's session (api.js); the role in the config only decides
// which buttons are shown, the server still decides. The panel reads GET /members when opened and again
// whenever the chat socket brings a membership event (chat.js re-dispatches its frames as "chat:frame").
// Names are always set as text.

import { ApiError, api, format, readJson } from "./api.js";

const config = readJson("members-config");
const t = config.strings || {};
const me = config.me;
let myRole = config.myRole;

const toggle = document.getElementById("members-toggle");
const panel = document.getElementById("members-panel");
const list = document.getElementById("member-roles");
const statusLine = document.getElementById("members-status");
const bansBox = document.getElementById("bans");
const banList = document.getElementById("ban-list");
const inviteOpen = document.getElementById("invite-open");
const dialog = document.getElementById("invite-dialog");
const inviteError = document.getElementById("invite-error");
const userForm = document.getElementById("invite-user-form");
const linkForm = document.getElementById("invite-link-form");
const created = document.getElementById("invite-created");
const createdNote = document.getElementById("invite-created-note");
const linkInput = document.getElementById("invite-link");
const copyButton = document.getElementById("invite-copy");
const copyStatus = document.getElementById("invite-copy-status");
const inviteList = document.getElementById("invite-list");
const inviteStatus = document.getElementById("invite-status");

const RANK = { owner: 0, moderator: 1, member: 2 };
const MEMBERSHIP_EVENTS = new Set(["member.kicked", "member.banned", "member.unbanned", "role.changed"]);
let members = [];
let refreshTimer = null;
let refreshDeferred = false;
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function displayName(user) {
  return user ? user.nickname || user.username : "?";
}

function errorText(error) {
  const code = error instanceof ApiError ? error.code : "network_error";
  const detail = error && error.detail ? error.detail : String(error);
  const template = t[`error_${code}`];
  return template ? format(template, { detail }) : format(t.error_generic, { detail });
}

function say(text) {
  statusLine.textContent = text;
}

function isModerator() {
  return config.isStaff || myRole === "owner" || myRole === "moderator";
}

// The services' rule, mirrored to show only the buttons that would work: the owner (and staff) act on
// anyone but the owner, a moderator on plain members only, nobody on themselves.
function mayActOn(member) {
  if (member.user.id === me.id || member.role === "owner") return false;
  if (config.isStaff || myRole === "owner") return true;
  return myRole === "moderator" && member.role === "member";
}

function makeButton(label, testId, onClick, className = "link") {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  button.textContent = label;
  button.setAttribute("data-testid", testId);
  button.addEventListener("click", onClick);
  return button;
}

function memberUrl(userId, action) {
  return `${format(config.memberUrl, { user: userId })}/${action}`;
}

// --- the members panel ---------------------------------------------------------------------------------
function actionsFor(member, row) {
  const name = displayName(member.user);
  const actions = [];
  if (member.user.id === me.id) return actions;
  if (config.kind !== "dm") {
    const dm = makeButton(t.message, "member-dm", () => openDm(member.user));
    dm.setAttribute("aria-label", format(t.messageUser, { name }));
    actions.push(dm);
  }
  if (config.kind !== "room") return actions;
  if ((config.isStaff || myRole === "owner") && member.role !== "owner") {
    const promote = member.role === "moderator" ? "member" : "moderator";
    const label = promote === "moderator" ? t.makeModerator : t.removeModerator;
    actions.push(
      makeButton(label, "member-role", () =>
        act(
          api("POST", memberUrl(member.user.id, "role"), { role: promote }),
          format(t.done_role, { name, role: t[promote] }),
          member.user.id,
        ),
      ),
    );
    actions.push(
      makeButton(t.makeOwner, "member-owner", (event) =>
        confirmInRow(row, event.target, format(t.confirmOwner, { name }), () =>
          act(api("POST", config.ownerUrl, { user_id: member.user.id }), format(t.done_owner, { name }), member.user.id),
        ),
      ),
    );
  }
  if (mayActOn(member)) {
    actions.push(
      makeButton(t.kick, "member-kick", (event) =>
        confirmInRow(row, event.target, format(t.confirmKick, { name }), () =>
          act(api("POST", memberUrl(member.user.id, "kick")), format(t.done_kick, { name }), member.user.id),
        ),
      "link danger"),
    );
    actions.push(
      makeButton(t.ban, "member-ban", (event) =>
        confirmInRow(row, event.target, format(t.confirmBan, { name }), () =>
          act(api("POST", memberUrl(member.user.id, "ban")), format(t.done_ban, { name }), member.user.id),
        ),
      "link danger"),
    );
  }
  return actions;
}

// A second step inside the row for what cannot be undone at once; focus goes to Confirm, Cancel returns it.
function confirmInRow(row, opener, question, run) {
  const actions = row.querySelector(".member-actions");
  const box = document.createElement("div");
  box.className = "member-confirm";
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", question);
  const text = document.createElement("span");
  text.textContent = question;
  const yes = makeButton(t.confirm, "member-confirm", () => run(), "danger");
  const no = makeButton(t.cancel, "member-cancel", () => {
    box.remove();
    actions.hidden = false;
    opener.focus();
    if (refreshDeferred) scheduleRefresh();
  }, "secondary");
  box.append(text, yes, no);
  actions.hidden = true;
  row.append(box);
  yes.focus();
}

// After an action, focus stays where the keyboard was: the same member's first button if the row is still
// there, else the panel's toggle.
async function act(request, doneText, userId) {
  try {
    await request;
    say(doneText);
  } catch (error) {
    say(errorText(error));
  }
  await refresh({ afterAction: true }); // the action ends its own confirmation: redraw under it
  const row = list.querySelector(`li[data-user-id="${Number(userId)}"]`);
  const again = row && row.querySelector(".member-actions button");
  (again || toggle).focus();
}

// A redraw keeps the keyboard where it was: the same button of the same member, if it is still offered.
function focusedButton() {
  const active = document.activeElement;
  if (!active || !list.contains(active)) return null;
  const row = active.closest("li[data-user-id]");
  return row ? { userId: row.dataset.userId, testId: active.getAttribute("data-testid") } : null;
}

function render() {
  const focused = focusedButton();
  const sorted = [...members].sort(
    (a, b) => (RANK[a.role] ?? 3) - (RANK[b.role] ?? 3) || displayName(a.user).localeCompare(displayName(b.user)),
  );
  list.replaceChildren(
    ...sorted.map((member) => {
      const li = document.createElement("li");
      li.className = "member-row";
      li.dataset.userId = String(member.user.id);
      li.setAttribute("data-testid", "member-row");
      const name = document.createElement("span");
      name.className = "member-name";
      name.textContent = displayName(member.user);
      name.title = `@${member.user.username}`;
      if (member.user.id === me.id) {
        const you = document.createElement("span");
        you.className = "member-you";
        you.textContent = ` ${t.you}`;
        name.append(you);
      }
      const badge = document.createElement("span");
      badge.className = `role-badge role-${member.role || "member"}`;
      badge.setAttribute("data-testid", "role-badge");
      badge.textContent = t[member.role] || t.member;
      const actions = document.createElement("div");
      actions.className = "member-actions";
      actions.setAttribute("role", "group");
      actions.setAttribute("aria-label", format(t.actionsFor, { name: displayName(member.user) }));
      li.append(name, badge, actions);
      actions.append(...actionsFor(member, li));
      if (!actions.children.length) actions.hidden = true;
      return li;
    }),
  );
  if (focused) {
    const again = list.querySelector(`li[data-user-id="${focused.userId}"] [data-testid="${focused.testId}"]`);
    if (again) again.focus();
  }
}

async function refresh({ afterAction = false } = {}) {
  try {
    const data = await api("GET", config.membersUrl);
    members = (data.results || []).filter((member) => member.user);
    const mine = members.find((member) => member.user.id === me.id);
    myRole = mine ? mine.role : null;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 403 || error.status === 404)) myRole = null;
    else say(errorText(error));
  }
  showInviteButton();
  // A confirmation opened while the list was being read (or while a refresh waited for its timer) stays:
  // the list is redrawn when it closes.
  if (!afterAction && confirmationOpen()) {
    refreshDeferred = true;
    return;
  }
  render();
  await refreshBans();
}

function confirmationOpen() {
  return Boolean(list.querySelector(".member-confirm"));
}

async function refreshBans() {
  if (config.kind !== "room" || !isModerator()) {
    bansBox.hidden = true;
    return;
  }
  let bans = [];
  try {
    bans = (await api("GET", config.bansUrl)).results || [];
  } catch {
    bansBox.hidden = true;
    return;
  }
  bansBox.hidden = false;
  if (!bans.length) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = t.noBans;
    banList.replaceChildren(empty);
    return;
  }
  banList.replaceChildren(
    ...bans.map((ban) => {
      const li = document.createElement("li");
      li.setAttribute("data-testid", "ban-row");
      li.dataset.userId = String(ban.user.id);
      const name = document.createElement("span");
      name.className = "member-name";
      name.textContent = displayName(ban.user);
      const by = document.createElement("span");
      by.className = "member-meta";
      by.textContent = ban.by ? format(t.bannedBy, { name: displayName(ban.by) }) : "";
      const unban = makeButton(t.unban, "member-unban", () =>
        act(api("DELETE", memberUrl(ban.user.id, "ban")), format(t.done_unban, { name: displayName(ban.user) }), ban.user.id),
      );
      li.append(name, by, unban);
      return li;
    }),
  );
}

// Membership events come in bursts (a kick is a LEAVE and a member.kicked): one read for the burst. While a
// confirmation is open the list is not redrawn under it; Cancel (or the action itself) reads it afterwards.
function scheduleRefresh() {
  if (panel.hidden || refreshTimer) return;
  if (confirmationOpen()) {
    refreshDeferred = true;
    return;
  }
  refreshDeferred = false;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refresh();
  }, 150);
}

toggle.addEventListener("click", () => {
  const open = panel.hidden;
  panel.hidden = !open;
  toggle.setAttribute("aria-expanded", String(open));
  if (open) refresh();
});

document.addEventListener("chat:frame", (event) => {
  const frame = event.detail || {};
  const membership =
    MEMBERSHIP_EVENTS.has(frame.type) ||
    (frame.type === "message" && frame.message && (frame.message.kind === "ENTER" || frame.message.kind === "LEAVE"));
  if (!membership) return;
  if (frame.user && frame.user.id === me.id) {
    if (frame.type === "role.changed") myRole = frame.role;
    if (frame.type === "member.kicked" || frame.type === "member.banned") {
      myRole = null;
      say(format(frame.type === "member.kicked" ? t.removedYou : t.bannedYou, { by: displayName(frame.by) }));
    }
    showInviteButton();
  }
  scheduleRefresh();
});

// --- direct messages -------------------------------------------------------------------------------------
async function openDm(user) {
  try {
    const room = await api("POST", config.dmsUrl, { user_id: user.id });
    window.location.assign(format(config.roomPageUrl, { id: room.id }));
  } catch (error) {
    say(errorText(error));
  }
}

// --- the invitation dialog ---------------------------------------------------------------------------------
function showInviteButton() {
  inviteOpen.hidden = !(config.kind === "room" && isModerator());
  if (inviteOpen.hidden && dialog.open) dialog.close();
}

function showInviteError(error) {
  inviteError.textContent = errorText(error);
  inviteError.hidden = false;
}

function inviteLink(token) {
  return `${config.invitePageBase}${token}/`;
}

function showCreated(invite) {
  created.hidden = false;
  createdNote.textContent = invite.user ? format(t.createdFor, { username: invite.user.username }) : t.created;
  linkInput.value = inviteLink(invite.token);
  copyStatus.textContent = "";
  copyButton.focus();
}

async function createInvite(body, form) {
  inviteError.hidden = true;
  inviteStatus.textContent = "";
  try {
    const invite = await api("POST", config.invitesUrl, body);
    form.reset();
    showCreated(invite);
  } catch (error) {
    showInviteError(error);
  }
  await loadInvites();
}

userForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const username = userForm.elements.username.value.trim().replace(/^@/, "");
  if (username) createInvite({ username }, userForm);
});

linkForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const body = { expires_in_seconds: Number(linkForm.elements.expires_in_seconds.value) };
  const uses = linkForm.elements.max_uses.value.trim();
  if (uses) body.max_uses = Number(uses);
  createInvite(body, linkForm);
});

copyButton.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(linkInput.value);
    copyStatus.textContent = t.copied;
  } catch {
    // No clipboard API (a plain-http origin): select the text so that one keystroke copies it.
    linkInput.focus();
    linkInput.select();
    copyStatus.textContent = t.copyFailed;
  }
});

function inviteText(invite) {
  const parts = [invite.user ? format(t.linkFor, { username: invite.user.username }) : t.linkAnyone];
  parts.push(
    invite.max_uses === null || invite.max_uses === undefined
      ? format(t.usesUnlimited, { uses: invite.uses })
      : format(t.uses, { uses: invite.uses, max: invite.max_uses }),
  );
  if (invite.expires_at) parts.push(format(t.expires, { when: dateFormat.format(new Date(invite.expires_at)) }));
  return parts.join(" · ");
}

async function loadInvites() {
  let invites = [];
  try {
    invites = (await api("GET", config.invitesUrl)).results || [];
  } catch (error) {
    showInviteError(error);
    return;
  }
  if (!invites.length) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = t.noInvites;
    inviteList.replaceChildren(empty);
    return;
  }
  inviteList.replaceChildren(
    ...invites.map((invite) => {
      const li = document.createElement("li");
      li.setAttribute("data-testid", "invite-row");
      li.dataset.inviteId = String(invite.id);
      const text = document.createElement("span");
      text.textContent = inviteText(invite);
      const revoke = makeButton(t.revoke, "invite-revoke", () => revokeInvite(invite.id), "link danger");
      revoke.setAttribute("aria-label", `${t.revokeLink}: ${inviteText(invite)}`);
      li.append(text, revoke);
      return li;
    }),
  );
}

async function revokeInvite(inviteId) {
  inviteError.hidden = true;
  try {
    await api("DELETE", format(config.inviteByIdUrl, { id: inviteId }));
    created.hidden = true; // the link shown may be the one revoked
    inviteStatus.textContent = t.revoked;
  } catch (error) {
    showInviteError(error);
  }
  await loadInvites();
  (inviteList.querySelector("button") || userForm.elements.username).focus();
}

inviteOpen.addEventListener("click", () => {
  inviteError.hidden = true;
  created.hidden = true;
  dialog.showModal();
  userForm.elements.username.focus();
  loadInvites();
});
document.getElementById("invite-close").addEventListener("click", () => dialog.close());
dialog.addEventListener("close", () => inviteOpen.focus()); // Escape closes it too: focus goes back

showInviteButton();
