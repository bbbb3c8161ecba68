"""Read-only admin view of who is connected where, read from whichever store is configured (MongoDB's
records are not Django models, so the page lists the store's records rather than a queryset)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from accounts.models import User
from core.admin_readonly import ReadOnlyAdminMixin
from rooms.models import Room

from . import services
from .backends import PresenceUnavailable, get_presence_backend
from .models import PresenceConnection
from .tracker import get_tracker

ADMIN_LIMIT = 1000


@admin.register(PresenceConnection)
class PresenceConnectionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):  # this page replaces Django's, which would have asked
            raise PermissionDenied
        backend = get_presence_backend()
        error = None
        try:
            records = backend.live_connections(limit=ADMIN_LIMIT)
        except PresenceUnavailable as exc:
            records, error = [], str(exc)
        users = User.objects.in_bulk({r.user_id for r in records})
        rooms = Room.objects.in_bulk({r.room_id for r in records})
        live_since = services.live_since()
        rows = [
            {
                "record": r,
                "user": users.get(r.user_id),
                "room": rooms.get(r.room_id),
                "stale": r.heartbeat_at < live_since,
            }
            for r in records
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Who is connected where",
            "opts": self.model._meta,
            "rows": rows,
            "backend": backend.name,
            "error": error,
            "limit": ADMIN_LIMIT,
            "this_process": get_tracker().process_id,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/presence/connections.html", context)
