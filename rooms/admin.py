"""Rooms and memberships in the admin, acting only through rooms.services.

Creating a room goes through create_room (the owner becomes a member), editing through update_room (so
max_personnel cannot drop below the seats taken), deleting through delete_room, and membership changes
through join_room / leave_room: the admin can never break `personnel` or skip the ENTER/LEAVE messages and
the outbox events. The form checks the same rules first for friendly errors; a refusal that only the
service sees (a race with a join) rolls back the whole save and is shown as an error message.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import F, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.models import User
from core.admin_readonly import ReadOnlyAdminMixin
from core.domain import DomainError

from . import services
from .models import Ban, Block, Invite, Membership, Room, RoomEvent


def _field_errors(exc: DomainError, field: str) -> forms.ValidationError:
    """A service's refusal of one field, as that field's form error (same words as REST's `fields`)."""
    return forms.ValidationError(list((exc.fields or {}).get(field) or [exc.detail]), code=exc.code)


class DomainErrorsAsMessages:
    """A refusal raised by a service inside a save (after the form was valid) becomes an error message.

    The admin saves inside a transaction, so the exception leaving it rolls back everything the save did.
    """

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)  # type: ignore[misc]
        except DomainError as exc:
            messages.error(request, f"Not saved: {exc.detail}")
            return HttpResponseRedirect(request.get_full_path())


class RoomAdminForm(forms.ModelForm):
    class Meta:
        model = Room
        fields = ["title", "owner", "max_personnel", "visibility", "history_visibility"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "owner" in self.fields:
            self.fields["owner"].required = False
            self.fields["owner"].help_text = "Blank: you. The owner becomes the room's first member."
        for name in ("visibility", "history_visibility"):
            if name in self.fields:
                self.fields[name].required = False  # blank: the default (create) or unchanged (edit)

    def clean_title(self) -> str:
        try:
            return services.clean_title(self.cleaned_data.get("title"))
        except DomainError as exc:
            raise _field_errors(exc, "title") from None

    def clean_max_personnel(self) -> int:
        try:
            value = services.clean_max_personnel(self.cleaned_data.get("max_personnel"))
        except DomainError as exc:
            raise _field_errors(exc, "max_personnel") from None
        if self.instance.pk is not None and value < self.instance.personnel:
            raise forms.ValidationError(services.MaxPersonnelBelowPersonnel.default_detail)
        return value


class SeatsFilter(admin.SimpleListFilter):
    title = "seats"
    parameter_name = "seats"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("full", "full"), ("free", "seats free"), ("empty", "empty")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> QuerySet[Room]:
        if self.value() == "full":
            return queryset.filter(personnel__gte=F("max_personnel"))
        if self.value() == "free":
            return queryset.filter(personnel__lt=F("max_personnel"))
        if self.value() == "empty":
            return queryset.filter(personnel=0)
        return queryset


class MembershipInline(admin.TabularInline):
    """Who is (and was) in the room; read-only, since only join_room / leave_room may change it."""

    model = Membership
    fields = ("user", "role", "is_active", "joined_at", "left_at", "last_read_seq", "visible_after_seq")
    readonly_fields = fields
    ordering = ("-is_active", "user__username")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Room)
class RoomAdmin(DomainErrorsAsMessages, admin.ModelAdmin):
    form = RoomAdminForm
    list_display = (
        "id", "title", "kind", "visibility", "owner", "personnel", "max_personnel", "last_seq", "created_at"
    )
    list_filter = (SeatsFilter, "kind", "visibility", "history_visibility", "created_at", "owner__is_staff")
    search_fields = ("title",)
    list_select_related = ("owner",)
    ordering = ("-id",)
    readonly_fields = ("personnel", "last_seq", "created_at", "kind", "dm_user_low", "dm_user_high")
    raw_id_fields = ("owner",)
    inlines = [MembershipInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> tuple[str, ...]:
        # The owner is chosen at creation (blank: the admin user); update_room does not transfer rooms.
        return (*self.readonly_fields, "owner") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Room, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            changes = {
                "visibility": data.get("visibility") or None,
                "history_visibility": data.get("history_visibility") or None,
            }
            if obj.kind == "dm":
                changes = {}  # a DM keeps its shape
            room = services.update_room(
                room_id=obj.pk, actor=request.user, title=data["title"], max_personnel=data["max_personnel"], **changes
            )
        else:
            owner = data.get("owner") or request.user
            room = services.create_room(
                owner=owner,
                title=data["title"],
                max_personnel=data["max_personnel"],
                visibility=data.get("visibility") or None,
                history_visibility=data.get("history_visibility") or None,
            )
        # The admin goes on with `obj` (inlines, log entry, redirect): make it the saved row.
        obj.__dict__.update({k: v for k, v in room.__dict__.items() if k != "_state"})
        obj._state.adding = False
        obj._state.db = room._state.db

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[list[str], dict[str, int], set[str], list]:
        """The confirmation page's summary, by counts: a room's messages go with it (delete_room's decision),
        so neither listing millions of rows nor the read-only message admin's permissions apply here."""
        rooms = list(objs)
        room_ids = [room.pk for room in rooms]
        counts = {
            "rooms": len(rooms),
            "memberships": Membership.objects.filter(room_id__in=room_ids).count(),
            "messages": Room.objects.filter(pk__in=room_ids).aggregate(n=Sum("last_seq"))["n"] or 0,
        }
        return [str(room) for room in rooms], counts, set(), []

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        services.delete_room(room_id=obj.pk, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        for room_id in queryset.values_list("pk", flat=True):
            services.delete_room(room_id=room_id, actor=request.user)


class MembershipAddForm(forms.ModelForm):
    """Adding a membership is joining: the room must have a free seat."""

    class Meta:
        model = Membership
        fields = ["room", "user"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        room, user = data.get("room"), data.get("user")
        if room is not None and user is not None:
            already = Membership.objects.filter(room=room, user=user, is_active=True).exists()
            if already:
                raise forms.ValidationError(f"{user} is already a member of {room.title}.")
            if room.is_full:
                raise forms.ValidationError(services.RoomFull.default_detail)
        return data

    def _post_clean(self) -> None:
        # No model validation: a former member's row is reused by join_room, so (room, user) may exist;
        # save_model reads cleaned_data, never this unsaved instance.
        pass


@admin.register(Membership)
class MembershipAdmin(DomainErrorsAsMessages, admin.ModelAdmin):
    list_display = ("id", "room", "user", "role", "is_active", "joined_at", "left_at", "last_read_seq")
    list_filter = ("is_active", "role", "joined_at", "left_at")
    search_fields = ("room__title", "user__username")
    list_select_related = ("room", "user")
    raw_id_fields = ("room", "user")
    ordering = ("-id",)
    actions = ["leave_rooms"]

    def get_form(self, request: HttpRequest, obj: Membership | None = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = MembershipAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Membership | None = None) -> Any:
        if obj is None:
            return ["room", "user"]
        return ["room", "user", "role", "is_active", "joined_at", "left_at", "last_read_seq", "visible_after_seq"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # view only: a membership changes by joining or leaving

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # removing someone is leaving (the action below): the row keeps left_at

    def save_model(self, request: HttpRequest, obj: Membership, form: forms.ModelForm, change: bool) -> None:
        user: User = form.cleaned_data["user"]
        result = services.join_room(room_id=form.cleaned_data["room"].pk, user=user)
        obj.__dict__.update({k: v for k, v in result.membership.__dict__.items() if k != "_state"})
        obj._state.adding = False
        obj._state.db = result.membership._state.db

    def has_leave_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rooms.change_membership")

    @admin.action(description="Remove the selected members from their rooms (leave)", permissions=["leave"])
    def leave_rooms(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        left = 0
        for membership in queryset.active().select_related("user"):
            if services.leave_room(room_id=membership.room_id, user=membership.user).changed:
                left += 1
        self.message_user(request, f"{left} member(s) left their rooms.", messages.SUCCESS)


# --- moderation, read-only: each row changes only through rooms.services (kick, ban, invite, block) ------
@admin.register(RoomEvent)
class RoomEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every moderation action (kick, ban, unban, role change), in each room's seq order."""

    list_display = ("id", "room", "seq", "type", "created_at")
    list_filter = ("type", "created_at")
    search_fields = ("room__title",)
    list_select_related = ("room",)
    raw_id_fields = ("room",)
    ordering = ("-id",)


@admin.register(Ban)
class BanAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "room", "user", "banned_by", "created_at")
    search_fields = ("room__title", "user__username")
    list_select_related = ("room", "user", "banned_by")
    raw_id_fields = ("room", "user", "banned_by")
    ordering = ("-id",)


@admin.register(Invite)
class InviteAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Invitations without their tokens: only a hash is stored, and even that is not shown in full."""

    list_display = ("id", "room", "user", "created_by", "uses", "max_uses", "expires_at", "revoked_at", "created_at")
    list_filter = ("created_at", "expires_at", "revoked_at")
    search_fields = ("room__title", "user__username", "created_by__username")
    list_select_related = ("room", "user", "created_by")
    fields = ("room", "user", "created_by", "token_fingerprint", "uses", "max_uses", "expires_at", "revoked_at",
              "created_at")
    readonly_fields = fields
    ordering = ("-id",)

    @admin.display(description="token (hash prefix)")
    def token_fingerprint(self, invite: Invite) -> str:
        return f"{invite.token_hash[:8]}…"


@admin.register(Block)
class BlockAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "blocker", "blocked", "created_at")
    search_fields = ("blocker__username", "blocked__username")
    list_select_related = ("blocker", "blocked")
    raw_id_fields = ("blocker", "blocked")
    ordering = ("-id",)
