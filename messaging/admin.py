"""Messages in the admin: searchable and filterable, never edited here.

Adding or deleting a row by hand would break what clients rely on (gapless seq, the outbox mirroring every
message), so the admin is read-only; moderation belongs in a service that records its own event.
"""

from __future__ import annotations

from django.contrib import admin

from core.admin_readonly import ReadOnlyAdminMixin

from .models import Message


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "room", "seq", "kind", "sender", "short_body", "created_at")
    list_filter = ("kind", "room")
    search_fields = ("body", "client_id", "sender__username")
    list_select_related = ("room", "sender")
    readonly_fields = ("room", "seq", "client_id", "kind", "sender", "body", "created_at")
    ordering = ("-id",)
    show_full_result_count = False  # COUNT(*) over millions of messages on every page is not worth it

    @admin.display(description="body")
    def short_body(self, obj: Message) -> str:
        return obj.body if len(obj.body) <= 80 else obj.body[:77] + "..."
