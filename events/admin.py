"""The outbox in the admin: what is waiting, what was sent, and why a row is stuck. Read-only: rows are
written by services and marked by the relay, never by hand."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from core.admin_readonly import ReadOnlyAdminMixin

from .models import OutboxEvent
from .services import outbox_backlog


class SentFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("pending", "pending"), ("sent", "sent"), ("failing", "pending with errors")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "pending":
            return queryset.filter(sent_at__isnull=True)
        if self.value() == "sent":
            return queryset.filter(sent_at__isnull=False)
        if self.value() == "failing":
            return queryset.filter(sent_at__isnull=True).exclude(last_error="")
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "event_type", "room_id", "topic", "occurred_at", "sent_at", "attempts", "short_error")
    list_filter = (SentFilter, "event_type", "topic")
    search_fields = ("=event_id", "=room_id", "event_type")
    ordering = ("-id",)
    date_hierarchy = "occurred_at"
    show_full_result_count = False  # the outbox can hold millions of rows: no COUNT(*) per page
    readonly_fields = [field.name for field in OutboxEvent._meta.fields]

    @admin.display(description="last error")
    def short_error(self, obj: OutboxEvent) -> str:
        return obj.last_error[:80]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        if not self.has_view_permission(request):  # before the backlog query, not only before the list
            raise PermissionDenied
        backlog = outbox_backlog()
        extra_context = {
            **(extra_context or {}),
            "title": f"Outbox: {backlog['pending']} pending, oldest {backlog['oldest_age_seconds']} s",
        }
        return super().changelist_view(request, extra_context)
