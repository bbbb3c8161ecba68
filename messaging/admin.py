"""Messages in the admin: searchable and filterable, never edited here.

Adding or deleting a row by hand would break what clients rely on (gapless seq, the outbox mirroring every
message), so the admin is read-only; moderation belongs in a service that records its own event.

A deleted message shows as a tombstone on every page here, whatever its row still holds: no body, no edit
history, no reactions, no mentions (messaging.services.delete_message removes them; these pages never rely on
that alone). The edit history of a live message is shown to staff who hold the view permission of MessageEdit.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User
from core.admin_readonly import ReadOnlyAdminMixin, ReadOnlyInlineMixin

from .models import Mention, Message, MessageEdit, Reaction

LIST_BODY_CHARS = 80
DELETED = "(deleted)"


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("edited", "edited"), ("deleted", "deleted"), ("reply", "replies")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        if self.value() == "edited":
            return queryset.filter(edited_at__isnull=False, deleted_at__isnull=True)
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "reply":
            return queryset.filter(reply_to__isnull=False)
        return queryset


class MessageEditInline(ReadOnlyInlineMixin, admin.TabularInline):
    """The bodies an edit replaced, oldest first: what a moderator reads to see what was said before."""

    model = MessageEdit
    fields = ("seq", "edited_at", "previous_body")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "earlier body"
    verbose_name_plural = "edit history (earlier bodies, oldest first)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[MessageEdit]:
        return super().get_queryset(request).filter(message__deleted_at__isnull=True).order_by("seq")


def reaction_summary(reactions: list[dict[str, Any]]) -> str:
    return " · ".join(f"{entry['emoji']} {entry['count']}" for entry in reactions)


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "room",
        "seq",
        "kind",
        "sender",
        "short_body",
        "created_at",
        "edited_at",
        "deleted_at",
        "reactions_shown",
    )
    list_filter = ("kind", StateFilter, "room")
    search_fields = ("body", "client_id", "sender__username")
    list_select_related = ("room", "sender")
    fields = (
        "room",
        "seq",
        "client_id",
        "kind",
        "sender",
        "full_body",
        "created_at",
        "edited_at",
        "deleted_at",
        "last_change_seq",
        "reply_to",
        "reactions_shown",
        "mentioned_users",
    )
    readonly_fields = fields
    inlines = [MessageEditInline]
    ordering = ("-id",)
    show_full_result_count = False  # COUNT(*) over millions of messages on every page is not worth it

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("reply_to")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Message], search_term: str) -> Any:
        """A body search never finds a deleted message, even one whose row still held a body: a hit alone
        would tell what the deleted body said."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if search_term:
            results = results.exclude(deleted_at__isnull=False, body__gt="")
        return results, may_have_duplicates

    @admin.display(description="body")
    def short_body(self, obj: Message) -> str:
        if obj.is_deleted:
            return DELETED
        return obj.body if len(obj.body) <= LIST_BODY_CHARS else obj.body[: LIST_BODY_CHARS - 3] + "..."

    @admin.display(description="body")
    def full_body(self, obj: Message) -> str:
        """All of it (the list cuts it short); the admin escapes it and keeps its line breaks."""
        return DELETED if obj.is_deleted else obj.body

    @admin.display(description="reactions")
    def reactions_shown(self, obj: Message) -> str:
        return "" if obj.is_deleted else reaction_summary(obj.reactions)

    @admin.display(description="mentions")
    def mentioned_users(self, obj: Message) -> str:
        if obj.is_deleted or not obj.mentions:
            return ""
        names = dict(User.objects.filter(pk__in=obj.mentions).values_list("pk", "username"))
        return ", ".join(f"@{names[pk]}" if pk in names else f"#{pk}" for pk in obj.mentions)


@admin.register(Reaction)
class ReactionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who reacted with what (the rows behind Message.reactions; a deleted message keeps none)."""

    list_display = ("id", "message", "user", "emoji", "created_at")
    list_select_related = ("message", "user")
    search_fields = ("=emoji", "user__username")
    fields = ("message", "user", "emoji", "created_at")
    readonly_fields = fields
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(Mention)
class MentionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who was named where (the rows the `mentions` counts read; a deleted message keeps none)."""

    list_display = ("id", "user", "room", "message", "seq")
    list_select_related = ("user", "room", "message")
    search_fields = ("user__username",)
    fields = ("message", "room", "user", "seq")
    readonly_fields = fields
    ordering = ("-id",)
    show_full_result_count = False
