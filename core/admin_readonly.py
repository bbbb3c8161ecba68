"""Admin pages that show rows nobody may add, edit or delete by hand.

Messages (a hand-made row would break the gapless seq and skip the outbox), the outbox (the relay's
ledger) and presence (kept by the processes that hold the sockets) are all observed, never edited.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
