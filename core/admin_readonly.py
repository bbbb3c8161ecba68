"""Admin pages that show rows nobody may add, edit or delete by hand.

Messages (a hand-made row would break the gapless seq and skip the outbox), the outbox (the relay's
ledger) and presence (kept by the processes that hold the sockets) are all observed, never edited.

An inline of such rows (a message's edit history) is read-only the same way: ReadOnlyInlineMixin.

Seeing them takes the model's view permission itself: Django lets a change permission stand in for it,
which means nothing where nothing can change. A page an admin class draws itself (a custom changelist)
must ask `has_view_permission` first, as Django's own views do.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_permission_codename
from django.http import HttpRequest


class ReadOnlyAdminMixin:
    opts: Any

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        codename = get_permission_codename("view", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInlineMixin(ReadOnlyAdminMixin):
    """The same rules for an inline, whose permission hooks also receive the parent object."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:  # type: ignore[override]
        return False
