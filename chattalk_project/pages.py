"""Server-rendered pages: thin edges over the same domain services the REST API calls.

A page parses a CSRF-protected form, calls rooms/messaging services and turns a DomainError into a message
the user can read. The chat page hands the browser everything it needs to start (the newest history page,
the viewer, translated UI strings) in one json_script, so the first paint needs no API round trip and the
socket resumes from the exact seq the page was rendered at.
"""

from __future__ import annotations

from typing import Any

from django import forms
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
from accounts.password_pool import gated
from accounts.services import InvalidCredentials
from accounts.throttling import LOGIN_THROTTLES, SIGNUP_THROTTLES, form_throttle_wait
from core.domain import DomainError, InvalidInput
from core.query_params import page_param, text_param
from core.rate_limits import RateLimited
from messaging.services import history, my_rooms_queryset
from rooms.limits import ROOM_CREATIONS, ROOM_WRITES
from rooms.models import MAX_MAX_PERSONNEL, MIN_MAX_PERSONNEL, TITLE_MAX_LENGTH, Room
from rooms.services import (
    NotRoomMember,
    RoomFull,
    RoomNotFound,
    create_room,
    join_room,
    leave_room,
    search_rooms,
)

ROOMS_PER_PAGE = 20
HISTORY_PAGE = 50
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


def domain_error_text(exc: DomainError) -> str:
    """A refusal in the viewer's language: the code picks a translated sentence; unknown codes keep the detail."""
    known = {
        "room_full": _("The room is full."),
        "not_found": _("No such room."),
        "not_member": _("You are not a member of this room."),
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


@gated
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


@gated
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


def room_list_query(request: HttpRequest) -> tuple[str, int]:
    """The list's `search` and `page`; a malformed one is InvalidInput, as in the REST API."""
    search = text_param(request.GET, "search", max_length=TITLE_MAX_LENGTH).strip()
    return search, page_param(request.GET)


def room_list_context(
    request: HttpRequest, create_form: CreateRoomForm | None = None, *, search: str = "", page: int = 1
) -> dict[str, Any]:
    """All rooms (search + pages) and the viewer's own rooms with their unread badges."""
    rooms = search_rooms(search)
    mine = list(my_rooms_queryset(request.user))
    return {
        "page": Paginator(rooms, ROOMS_PER_PAGE).get_page(page),
        "search": search,
        "my_memberships": mine,
        "member_of": {m.room_id for m in mine},
        "create_form": create_form or CreateRoomForm(),
        "list_strings": list_strings(),
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
            owner=request.user, title=request.POST.get("title", ""), max_personnel=request.POST.get("max_personnel")
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
    except (RoomFull, RoomNotFound) as exc:
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
        if room is None:
            raise RoomNotFound()
        # History up to the seq read here; the socket then resumes after that very seq: no gap, no overlap.
        initial, has_more = history(
            room_id=room.pk, user=request.user, before_seq=room.last_seq + 1, limit=HISTORY_PAGE
        )
    except RoomNotFound:
        messages.error(request, _("No such room."))
        return redirect("room-list")
    except NotRoomMember:
        messages.error(request, _("Join the room first."))
        return redirect("room-list")
    chat_config = {
        "roomId": room.pk,
        "me": request.user.as_public_dict(),
        "lastSeq": room.last_seq,
        "history": initial,
        "hasMore": has_more,
        "pageSize": HISTORY_PAGE,
        "messagesUrl": f"/api/rooms/{room.pk}/messages",
        "membersUrl": f"/api/rooms/{room.pk}/members",
        "chatSocketPath": f"/ws/rooms/{room.pk}/",
        "presenceSocketPath": f"/ws/rooms/{room.pk}/presence/",
        "language": request.LANGUAGE_CODE,
        "strings": chat_strings(),
    }
    return render(request, "pages/room.html", {"room": room, "chat_config": chat_config})


def chat_strings() -> dict[str, str]:
    """UI strings for the chat script, translated here: the page carries them, no JS catalog needed.

    `{name}` and `{ago}` are filled in by the script.
    """
    return {
        "connecting": _("connecting…"),
        "connected": _("connected"),
        "reconnecting": _("reconnecting…"),
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
        "closed_4401": _("Your session has ended. Please log in again."),
        "closed_4403": _("You are no longer a member of this room."),
        "closed_4404": _("This room no longer exists."),
        "error_body_too_long": _("The message is too long."),
        "error_body_empty": _("The message is empty."),
        "error_rate_limited": _("Too many messages; slow down."),
        "error_generic": _("Something went wrong: {detail}"),
    }


def list_strings() -> dict[str, str]:
    return {
        "room_full": _("The room is full."),
        "not_found": _("No such room."),
        "error_generic": _("Something went wrong: {detail}"),
        "full": _("Full"),
    }
