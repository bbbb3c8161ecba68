"""Server-rendered pages: thin edges over the same domain services the REST API calls.

A page parses a CSRF-protected form, calls rooms/messaging services and turns a DomainError into a message
the user can read. The chat page hands the browser everything it needs to start (the newest history page,
the viewer, translated UI strings) in one json_script, so the first paint needs no API round trip and the
socket resumes from the exact seq the page was rendered at.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts import services as accounts_services
from accounts.models import User
from accounts.password_pool import takes_password_turn
from accounts.services import InvalidCredentials
from accounts.throttling import LOGIN_THROTTLES, SIGNUP_THROTTLES, form_throttle_wait
from core.domain import DomainError, InvalidInput
from core.query_params import integer_param, page_param, text_param
from core.rate_limits import RateLimited
from messaging.limits import MESSAGE_SEARCHES
from messaging.models import MAX_DISTINCT_REACTIONS
from messaging.search import QUERY_MAX_CHARS, SearchFilters, search_messages
from messaging.services import REPLY_EXCERPT_CHARS, history, my_rooms_queryset, search_results
from rooms.limits import INVITE_ACCEPTS, ROOM_CREATIONS, ROOM_WRITES
from rooms.models import MAX_MAX_PERSONNEL, MIN_MAX_PERSONNEL, TITLE_MAX_LENGTH, Room, RoomKind, Visibility
from rooms.services import (
    NotRoomMember,
    RoomNotFound,
    accept_invite,
    active_membership,
    create_room,
    dm_partners,
    invitation_room,
    join_room,
    leave_room,
    may_moderate,
    role_of,
    search_rooms,
)

ROOMS_PER_PAGE = 20
# The reaction picker's fixed choices; any other emoji already on a message is offered as its own chip.
QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "😢"]
HISTORY_PAGE = 50
SEARCH_RESULTS_PER_PAGE = 20
MARK_RE = re.compile(r"<mark>(.*?)</mark>", re.DOTALL)
NEXT_URL_MAX_LENGTH = 2000


class SignupForm(forms.Form):
    """Only shapes and labels the fields; accounts.services.signup validates (password rules included)."""

    username = forms.CharField(label=gettext_lazy("Username"), max_length=150)
    nickname = forms.CharField(label=gettext_lazy("Nickname"), max_length=50, required=False)
    password = forms.CharField(label=gettext_lazy("Password"), widget=forms.PasswordInput, strip=False)
    password_again = forms.CharField(label=gettext_lazy("Password again"), widget=forms.PasswordInput, strip=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("password") and data.get("password_again") and data["password"] != data["password_again"]:
            self.add_error("password_again", _("The two passwords differ."))
        return data


class LoginForm(forms.Form):
    username = forms.CharField(label=gettext_lazy("Username"), max_length=150)
    password = forms.CharField(label=gettext_lazy("Password"), widget=forms.PasswordInput, strip=False)


class CreateRoomForm(forms.Form):
    """Only shapes the fields for the template; rooms.services.create_room does the validation."""

    title = forms.CharField(label=gettext_lazy("Title"), max_length=TITLE_MAX_LENGTH)
    max_personnel = forms.IntegerField(
        label=gettext_lazy("Max personnel"), min_value=MIN_MAX_PERSONNEL, max_value=MAX_MAX_PERSONNEL, initial=50
    )
    visibility = forms.ChoiceField(
        label=gettext_lazy("Who may join"),
        choices=[
            (Visibility.PUBLIC, gettext_lazy("Anyone: listed and searchable")),
            (Visibility.PRIVATE, gettext_lazy("Invited people only: not listed")),
        ],
        initial=Visibility.PUBLIC,
    )


def domain_error_text(exc: DomainError) -> str:
    """A refusal in the viewer's language: the code picks a translated sentence; unknown codes keep the detail."""
    known = {
        "room_full": _("The room is full."),
        "not_found": _("No such room."),
        "not_member": _("You are not a member of this room."),
        "banned": _("You are banned from this room."),
        "invite_invalid": _("This invitation does not exist or was revoked."),
        "invite_expired": _("This invitation has expired."),
        "invite_used_up": _("This invitation has been used as many times as it allows."),
        "invite_not_for_you": _("This invitation is for another user."),
        "validation_error": _("Please correct the errors below."),
        "rate_limited": _("Too many attempts. Try again in %(seconds)d s.")
        % {"seconds": getattr(exc, "retry_after", 1)},
    }
    return known.get(exc.code, exc.detail)


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("room-list")
    return render(request, "home.html")


def add_domain_errors(form: forms.Form, exc: DomainError) -> None:
    """A service's field errors onto the form's fields (unknown fields become form-wide errors)."""
    if not exc.fields:
        form.add_error(None, domain_error_text(exc))
        return
    for field, errors in exc.fields.items():
        for error in errors:
            form.add_error(field if field in form.fields else None, error)


def throttled_response(request: HttpRequest, template: str, context: dict[str, Any], wait: float) -> HttpResponse:
    context["form"].add_error(None, _("Too many attempts. Try again in %(seconds)d s.") % {"seconds": int(wait)})
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(int(wait))
    return response


@takes_password_turn
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("room-list")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        wait = form_throttle_wait(request, SIGNUP_THROTTLES, form.cleaned_data["username"])
        if wait is not None:
            return throttled_response(request, "pages/signup.html", {"form": form}, wait)
        try:
            user = accounts_services.signup(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
                nickname=form.cleaned_data["nickname"],
            )
        except DomainError as exc:
            add_domain_errors(form, exc)
        else:
            accounts_services.login(request=request, username=user.username, password=form.cleaned_data["password"])
            messages.success(request, _("Welcome, %(name)s!") % {"name": user.display_name})
            return redirect("room-list")
    return render(request, "pages/signup.html", {"form": form})


@takes_password_turn
def login_page(request: HttpRequest) -> HttpResponse:
    try:
        next_url = text_param(request.POST, "next", max_length=NEXT_URL_MAX_LENGTH) or text_param(
            request.GET, "next", max_length=NEXT_URL_MAX_LENGTH
        )
    except InvalidInput:
        next_url = ""  # a malformed `next` only loses the redirect, as an unsafe one does
    # A local path only: anything else would be read by redirect() as a view name (a 500 on `?next=foo`).
    if not next_url.startswith("/") or not url_has_allowed_host_and_scheme(next_url, {request.get_host()}):
        next_url = ""
    if request.user.is_authenticated:
        return redirect(next_url or "room-list")
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        wait = form_throttle_wait(request, LOGIN_THROTTLES, form.cleaned_data["username"])
        if wait is not None:
            return throttled_response(request, "pages/login.html", {"form": form, "next": next_url}, wait)
        try:
            accounts_services.login(
                request=request, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
            )
        except InvalidCredentials:
            form.add_error(None, _("Wrong username or password."))
        except DomainError as exc:
            add_domain_errors(form, exc)
        else:
            return redirect(next_url or "room-list")
    return render(request, "pages/login.html", {"form": form, "next": next_url})


@require_POST
def logout_page(request: HttpRequest) -> HttpResponse:
    """Ends the session and closes the sockets opened with it (accounts.services.logout does both)."""
    if request.user.is_authenticated:
        accounts_services.logout(request=request, user=request.user, access=None, refresh_token=None)
    return redirect("login")


def sidebar_context(viewer: User, memberships: Iterable[Any], current_room_id: int | None = None) -> dict[str, Any]:
    """The sidebar's first paint from my_rooms_queryset's rows (the counts of /api/me/rooms), the room on
    screen marked. sidebar.js keeps it live from /ws/me/, which sends every room's counts on connect.

    The caller passes the same rooms the user socket follows (the WS_ME_MAX_ROOMS most recently active), so
    the only rows the script must add, one GET each, are rooms joined after the page was rendered."""
    memberships = list(memberships)
    partners = dm_partners(viewer, [m.room_id for m in memberships if m.room.kind == RoomKind.DM])
    rooms = [
        {
            "id": m.room_id,
            "title": partners[m.room_id].display_name if m.room_id in partners else m.room.title,
            "unread": m.unread,
            "mentions": m.mentions,
            "current": m.room_id == current_room_id,
        }
        for m in memberships
    ]
    config = {
        "currentRoomId": current_room_id,
        # A DM added live is named after its other member (one GET of its members): the viewer is not it.
        "meId": viewer.pk,
        "membersApiUrl": "/api/rooms/{id}/members",
        "socketPath": "/ws/me/",
        "roomUrl": "/rooms/{id}/",
        "roomApiUrl": "/api/rooms/{id}",
        "strings": {
            "unreadLabel": _("unread"),
            "mentionsLabel": _("mentioning you"),
            "mentionTitle": _("{name} mentioned you in {room}"),
            "notificationsOn": _("Notifications are on for mentions."),
            "notificationsBlocked": _("Notifications are blocked in this browser's settings."),
        },
    }
    return {"sidebar_rooms": rooms, "sidebar_config": config, "sidebar_unread_total": sum(r["unread"] for r in rooms)}


def room_list_query(request: HttpRequest) -> tuple[str, int]:
    """The list's `search` and `page`; a malformed one is InvalidInput, as in the REST API."""
    search = text_param(request.GET, "search", max_length=TITLE_MAX_LENGTH).strip()
    return search, page_param(request.GET)


def room_list_context(
    request: HttpRequest, create_form: CreateRoomForm | None = None, *, search: str = "", page: int = 1
) -> dict[str, Any]:
    """All rooms (search + pages) and the viewer's own rooms with their unread badges (the sidebar)."""
    rooms = search_rooms(search)
    mine = list(my_rooms_queryset(request.user))
    return {
        "page": Paginator(rooms, ROOMS_PER_PAGE).get_page(page),
        "search": search,
        "member_of": {m.room_id for m in mine},
        "create_form": create_form or CreateRoomForm(),
        "list_strings": list_strings(),
        **sidebar_context(request.user, mine[: settings.WS_ME_MAX_ROOMS]),
    }


@login_required
def room_list(request: HttpRequest) -> HttpResponse:
    try:
        search, page = room_list_query(request)
    except InvalidInput as exc:
        # The first page instead, with what was wrong: a hand-edited URL gets an answer, not a 500.
        for field, errors in (exc.fields or {}).items():
            for error in errors:
                messages.error(request, f"{field}: {error}")
        return render(request, "pages/room_list.html", room_list_context(request), status=400)
    return render(request, "pages/room_list.html", room_list_context(request, search=search, page=page))


def rate_limited_page(
    request: HttpRequest, exc: RateLimited, create_form: CreateRoomForm | None = None
) -> HttpResponse:
    """The room list again with the refusal shown: a 429 with Retry-After, as the API answers."""
    messages.error(request, domain_error_text(exc))
    response = render(request, "pages/room_list.html", room_list_context(request, create_form), status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@login_required
@require_POST
def room_create(request: HttpRequest) -> HttpResponse:
    try:
        ROOM_CREATIONS.hit(request.user.pk)
    except RateLimited as exc:
        return rate_limited_page(request, exc, CreateRoomForm(data=request.POST))
    try:
        room = create_room(
            owner=request.user,
            title=request.POST.get("title", ""),
            max_personnel=request.POST.get("max_personnel"),
            visibility=request.POST.get("visibility") or None,
        )
    except InvalidInput as exc:
        form = CreateRoomForm(data=request.POST)
        form.is_valid()  # the form's own messages first; the service's only where the form saw nothing
        for field, errors in (exc.fields or {}).items():
            if field not in form.errors:
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        messages.error(request, domain_error_text(exc))
        return render(request, "pages/room_list.html", room_list_context(request, form), status=400)
    return redirect("room-detail", room_id=room.pk)


@login_required
@require_POST
def room_join(request: HttpRequest, room_id: int) -> HttpResponse:
    """The form fallback of the list's join button (the script calls POST /api/rooms/{id}/join)."""
    try:
        ROOM_WRITES.hit(request.user.pk)
    except RateLimited as exc:
        return rate_limited_page(request, exc)
    try:
        join_room(room_id=room_id, user=request.user)
    except DomainError as exc:  # room_full, not_found (also a private room), banned
        messages.error(request, domain_error_text(exc))
        return redirect("room-list")
    return redirect("room-detail", room_id=room_id)


@login_required
@require_POST
def room_leave(request: HttpRequest, room_id: int) -> HttpResponse:
    try:
        ROOM_WRITES.hit(request.user.pk)
    except RateLimited as exc:
        return rate_limited_page(request, exc)
    try:
        change = leave_room(room_id=room_id, user=request.user)
    except RoomNotFound as exc:
        messages.error(request, domain_error_text(exc))
    else:
        messages.info(request, _("You left %(title)s.") % {"title": change.room.title})
    return redirect("room-list")


@login_required
def room_detail(request: HttpRequest, room_id: int) -> HttpResponse:
    """The chat page. Non-members go back to the list: the socket and the history are members only."""
    room = Room.objects.select_related("owner").filter(pk=room_id).first()
    try:
        at_seq = integer_param(request.GET, "at", minimum=1)
    except InvalidInput:
        at_seq = None  # a malformed `at` only loses the jump: the newest messages, as without it
    try:
        if room is None:
            raise RoomNotFound()
        if at_seq is None:
            # History up to the seq read here; the socket then resumes after that very seq: no gap, no overlap.
            initial, has_more = history(
                room_id=room.pk, user=request.user, before_seq=room.last_seq + 1, limit=HISTORY_PAGE
            )
            resume_seq = room.last_seq
        else:
            initial, has_more, resume_seq = history_around(room, request.user, at_seq)
    except RoomNotFound:
        messages.error(request, _("No such room."))
        return redirect("room-list")
    except NotRoomMember:
        messages.error(request, _("Join the room first."))
        return redirect("room-list")
    membership = active_membership(room.pk, request.user)
    chat_config = {
        "roomId": room.pk,
        "me": request.user.as_public_dict(),
        # Whose messages the viewer may delete besides their own: the same rule the service applies (a
        # button the service would refuse is not shown; the service still decides).
        "canModerate": may_moderate(room, request.user),
        "quickReactions": QUICK_REACTIONS,
        "maxReactions": MAX_DISTINCT_REACTIONS,
        "replyExcerptChars": REPLY_EXCERPT_CHARS,
        # Where the socket resumes: the newest seq the page holds. Around a search hit that is the last message
        # shown, and the replay brings everything after it; `renderedSeq` is the room as rendered (personnel).
        "lastSeq": resume_seq,
        "renderedSeq": room.last_seq,
        "atSeq": at_seq,
        # The read position as the page opened: the "new messages" marker goes before the first message after
        # it that counts as unread (the socket's `read` moves the stored one on at once; this copy stays).
        "lastReadSeq": membership.last_read_seq if membership is not None else room.last_seq,
        "history": initial,
        "hasMore": has_more,
        "pageSize": HISTORY_PAGE,
        "messagesUrl": f"/api/rooms/{room.pk}/messages",
        "attachmentsUrl": f"/api/rooms/{room.pk}/attachments",
        # Checked here only to answer at once; the server refuses the same files whatever the page does.
        "attachmentMaxBytes": settings.ATTACHMENT_MAX_BYTES,
        "attachmentMaxPerMessage": settings.ATTACHMENT_MAX_PER_MESSAGE,
        "membersUrl": f"/api/rooms/{room.pk}/members",
        "chatSocketPath": f"/ws/rooms/{room.pk}/",
        "presenceSocketPath": f"/ws/rooms/{room.pk}/presence/",
        "language": request.LANGUAGE_CODE,
        "strings": chat_strings(),
    }
    sidebar = sidebar_context(request.user, my_rooms_queryset(request.user)[: settings.WS_ME_MAX_ROOMS], room.pk)
    partner = dm_partners(request.user, [room.pk]).get(room.pk) if room.kind == RoomKind.DM else None
    context = {
        "room": room,
        "room_title": partner.display_name if partner else room.title,
        "chat_config": chat_config,
        "members_config": members_config(request, room),
        **sidebar,
    }
    return render(request, "pages/room.html", context)


def members_config(request: HttpRequest, room: Room) -> dict[str, Any]:
    """The members panel's start state (static/js/members.js): who the viewer is in the room, the REST paths
    it calls, its texts. The role only decides which buttons are shown; the services still decide."""
    room_id = room.pk
    return {
        "roomId": room_id,
        "kind": room.kind,
        "visibility": room.visibility,
        "me": request.user.as_public_dict(),
        "myRole": role_of(room_id, request.user),
        "isStaff": request.user.is_staff,
        "membersUrl": f"/api/rooms/{room_id}/members",
        "bansUrl": f"/api/rooms/{room_id}/bans",
        "invitesUrl": f"/api/rooms/{room_id}/invites",
        "memberUrl": f"/api/rooms/{room_id}/members/{{user}}",
        "ownerUrl": f"/api/rooms/{room_id}/owner",
        "inviteByIdUrl": f"/api/rooms/{room_id}/invites/by-id/{{id}}",
        "dmsUrl": "/api/dms",
        "roomPageUrl": "/rooms/{id}/",
        "invitePageBase": request.build_absolute_uri("/invites/"),  # + token + "/"
        "strings": members_strings(),
    }


def members_strings() -> dict[str, str]:
    return {
        "owner": _("owner"),
        "moderator": _("moderator"),
        "member": _("member"),
        "you": _("(you)"),
        "message": _("Message"),
        "messageUser": _("Send {name} a direct message"),
        "makeModerator": _("Make moderator"),
        "removeModerator": _("Remove moderator"),
        "makeOwner": _("Make owner"),
        "kick": _("Remove"),
        "ban": _("Ban"),
        "unban": _("Unban"),
        "actionsFor": _("Actions for {name}"),
        "confirmKick": _("Remove {name} from the room?"),
        "confirmBan": _("Ban {name}? They cannot come back until unbanned."),
        "confirmOwner": _("Hand the room over to {name}? You stay as a moderator."),
        "confirm": _("Confirm"),
        "cancel": _("Cancel"),
        "done_role": _("{name} is now {role}."),
        "done_owner": _("{name} now owns the room."),
        "done_kick": _("{name} was removed."),
        "done_ban": _("{name} was banned."),
        "done_unban": _("{name} may come back."),
        "noBans": _("Nobody is banned."),
        "bannedBy": _("banned by {name}"),
        "linkFor": _("For @{username}"),
        "linkAnyone": _("Link for anyone"),
        "uses": _("{uses} of {max} uses"),
        "usesUnlimited": _("{uses} uses, no limit"),
        "expires": _("expires {when}"),
        "revoke": _("Revoke"),
        "revokeLink": _("Revoke this invitation"),
        "revoked": _("The invitation was revoked."),
        "noInvites": _("No active invitations."),
        "created": _("Invitation created. Copy the link and send it."),
        "createdFor": _("Invitation for @{username} created: send them this link; it works for them only."),
        "copied": _("Link copied."),
        "copyFailed": _("Could not copy: select the link and copy it yourself."),
        "removedYou": _("{by} removed you from this room."),
        "bannedYou": _("{by} banned you from this room."),
        "error_generic": _("Something went wrong: {detail}"),
        "error_forbidden": _("You may not do that."),
        "error_not_found": _("No such user, or not a member."),
        "error_blocked": _("This conversation is blocked."),
        "error_rate_limited": _("Too many actions; wait a moment."),
        "error_validation_error": _("That was not accepted: {detail}"),
        "error_invite_invalid": _("That invitation no longer exists."),
    }


@login_required
def invite_page(request: HttpRequest, token: str) -> HttpResponse:
    """What an invitation link opens: the room it leads to and a Join button (POST accepts it). A refused
    token shows why and no room; a member goes straight to the room."""
    if request.method == "POST":
        try:
            INVITE_ACCEPTS.hit(request.user.pk)
            change = accept_invite(token=token, user=request.user)
        except DomainError as exc:
            return invite_refused(request, exc)
        return redirect("room-detail", room_id=change.room.pk)
    try:
        room = invitation_room(token=token, user=request.user)
    except DomainError as exc:
        return invite_refused(request, exc)
    if getattr(room, "my_role", None) is not None:
        return redirect("room-detail", room_id=room.pk)
    return render(request, "pages/invite.html", {"room": room})


def invite_refused(request: HttpRequest, exc: DomainError) -> HttpResponse:
    response = render(
        request, "pages/invite.html", {"room": None, "refusal": domain_error_text(exc)}, status=exc.http_status
    )
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


def history_around(room: Room, user: Any, at_seq: int) -> tuple[list[dict[str, Any]], bool, int]:
    """The messages around `at_seq` (a search hit): half a page up to it, half after it, as history reads them
    (members only, current state), whether older ones exist, and the seq the socket resumes from.

    The resume point is the newest message shown (0 in an empty room): replay from there brings every
    message and change after it, so the page reaches the newest messages with no gap.
    """
    before, has_more = history(room_id=room.pk, user=user, before_seq=at_seq + 1, limit=HISTORY_PAGE // 2)
    after, _ = history(room_id=room.pk, user=user, after_seq=at_seq, limit=HISTORY_PAGE // 2)
    shown = before + after
    return shown, has_more, shown[-1]["seq"] if shown else 0


def chat_strings() -> dict[str, str]:
    """UI strings for the chat script, translated here: the page carries them, no JS catalog needed.

    `{name}` and `{ago}` are filled in by the script.
    """
    return {
        "connecting": _("connecting…"),
        "connected": _("connected"),
        "reconnecting": _("reconnecting…"),
        "connectionLost": _("Connection lost. Reconnecting…"),
        "sending": _("sending…"),
        "failed": _("not sent"),
        "online": _("online"),
        "offline": _("offline"),
        "leftAgo": _("left {ago}"),
        "typing": _("{name} is typing…"),
        "entered": _("{name} joined the room"),
        "left": _("{name} left the room"),
        "loadOlder": _("Load older messages"),
        "loading": _("Loading…"),
        "noOlder": _("This is the beginning of the room."),
        "today": _("Today"),
        "yesterday": _("Yesterday"),
        "newMessages": _("New messages"),
        "jumpToNewest": _("Jump to newest"),
        "newBelow": _("{count} new"),
        "closed_4401": _("Your session has ended. Please log in again."),
        "closed_4403": _("You are no longer a member of this room."),
        "closed_4404": _("This room no longer exists."),
        "error_body_too_long": _("The message is too long."),
        "error_body_empty": _("The message is empty."),
        "error_rate_limited": _("Too many messages; slow down."),
        "error_generic": _("Something went wrong: {detail}"),
        "error_forbidden": _("You may not change this message."),
        "error_not_found": _("That message no longer exists."),
        "error_message_deleted": _("That message was deleted."),
        "error_too_many_reactions": _("This message has as many different reactions as it can hold."),
        "error_invalid_reply": _("The message you replied to was deleted."),
        "error_validation_error": _("That was not accepted: {detail}"),
        "notConnected": _("Not connected; try again in a moment."),
        "edited": _("edited"),
        "editedAt": _("edited {when}"),
        "deleted": _("message deleted"),
        "reply": _("Reply"),
        "replyTo": _("Reply to {name}"),
        "replyingTo": _("Replying to {name}"),
        "cancelReply": _("Cancel reply"),
        "showOriginal": _("Show the message {name} wrote"),
        "edit": _("Edit"),
        "editMessage": _("Edit message"),
        "save": _("Save"),
        "cancel": _("Cancel"),
        "delete": _("Delete"),
        "deleteMessage": _("Delete message"),
        "confirmDelete": _("Delete this message for everyone?"),
        "react": _("React"),
        "reactions": _("Reactions"),
        "pickReaction": _("Pick a reaction"),
        "reactWith": _("React with {emoji}"),
        "reactionChip": _("{emoji}: {count}. Press to add yours."),
        "reactionChipMine": _("{emoji}: {count}, you included. Press to remove yours."),
        "mentionsYou": _("mentions you"),
        "messageActions": _("Message actions"),
        "imageAlt": _("Image {name} (opens the full size)"),
        "download": _("Download {name}"),
        "removeFile": _("Remove {name}"),
        "uploading": _("Uploading {name}"),
        "uploadsRunning": _("Wait until the files are uploaded."),
        "upload_file_too_large": _("This file is too large."),
        "upload_file_type_not_allowed": _("Files of this type cannot be shared."),
        "upload_too_many_attachments": _("Too many files: send these first."),
        "upload_rate_limited": _("Too many uploads; wait a minute."),
        "upload_network_error": _("The upload failed: check the connection."),
        "upload_aborted": _("The upload was stopped."),
        "error_invalid_attachment": _("A file of this message can no longer be sent; attach it again."),
        "error_too_many_attachments": _("Too many files in one message."),
    }


def list_strings() -> dict[str, str]:
    return {
        "room_full": _("The room is full."),
        "not_found": _("No such room."),
        "error_generic": _("Something went wrong: {detail}"),
        "full": _("Full"),
    }


def snippet_parts(snippet: str) -> list[tuple[str, bool]]:
    """The search snippet (escaped text with <mark> around hits) as (plain text, is_hit) parts.

    The template escapes each part again, so the page builds the marks itself and never trusts markup from
    the snippet: only the server's own <mark> pairs survive, anything else stays text.
    """
    parts: list[tuple[str, bool]] = []
    at = 0
    for match in MARK_RE.finditer(snippet):
        if match.start() > at:
            parts.append((html.unescape(snippet[at : match.start()]), False))
        parts.append((html.unescape(match.group(1)), True))
        at = match.end()
    if at < len(snippet):
        parts.append((html.unescape(snippet[at:]), False))
    return parts


def search_query(request: HttpRequest) -> tuple[str, int | None, str, int]:
    """The search page's q, room, sender (a username) and page; a malformed one is InvalidInput."""
    q = text_param(request.GET, "q", max_length=QUERY_MAX_CHARS * 4).strip()
    room_id = integer_param(request.GET, "room", minimum=1)
    sender = text_param(request.GET, "sender", max_length=150).strip().lstrip("@")
    return q, room_id, sender, page_param(request.GET)


@login_required
def message_search(request: HttpRequest) -> HttpResponse:
    """Server-rendered message search: the REST search's service, rate limit and rules, as a page.

    Each result links to the room page at its seq (`?at=`), which loads the history around it.
    """
    context: dict[str, Any] = {
        "q": "",
        "room_id": None,
        "sender": "",
        "my_rooms": [m.room for m in my_rooms_queryset(request.user)],
        "page": None,
        "results": [],
    }
    status = 200
    try:
        q, room_id, sender, page_number = search_query(request)
        context.update(q=q, room_id=room_id, sender=sender)
        if q:
            MESSAGE_SEARCHES.hit(request.user.pk)
            sender_id = None
            if sender:
                # An unknown name finds nothing (0 is no one's id), as the API's unknown sender id does.
                sender_id = User.objects.filter(username=sender).values_list("pk", flat=True).first() or 0
            hits = search_messages(user=request.user, q=q, filters=SearchFilters(room_id=room_id, sender_id=sender_id))
            page = Paginator(hits, SEARCH_RESULTS_PER_PAGE).get_page(page_number)
            results = search_results(list(page.object_list), request.user)
            for result in results:
                result["parts"] = snippet_parts(result["snippet"])
                result["created"] = datetime.fromisoformat(result["message"]["created_at"])
            context.update(page=page, results=results)
    except RateLimited as exc:
        messages.error(request, domain_error_text(exc))
        response = render(request, "pages/search.html", context, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except InvalidInput as exc:
        for field, errors in (exc.fields or {}).items():
            for error in errors:
                messages.error(request, f"{field}: {error}")
        status = 400
    except DomainError as exc:  # a room filter naming a room the viewer may not read
        messages.error(request, domain_error_text(exc))
        status = exc.http_status
    return render(request, "pages/search.html", context, status=status)
