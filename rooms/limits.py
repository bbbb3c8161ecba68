"""Per-user limits of room writes, for every path that makes them (REST, GraphQL, the pages), counted in
the shared cache across processes. The admin and management commands are not limited."""

from __future__ import annotations

from django.conf import settings

from core.rate_limits import Rate, RateLimit

ROOM_CREATIONS = RateLimit("room_creations", lambda: Rate(settings.ROOMS_CREATED_PER_HOUR, 3600))
# Join, leave, the read position, a room's update and deletion: cheap each, but each writes rows and events.
ROOM_WRITES = RateLimit("room_writes", lambda: Rate(settings.ROOM_WRITES_PER_MINUTE, 60))
INVITE_CREATIONS = RateLimit("invite_creations", lambda: Rate(settings.INVITES_CREATED_PER_HOUR, 3600))
INVITE_ACCEPTS = RateLimit("invite_accepts", lambda: Rate(settings.INVITE_ACCEPTS_PER_MINUTE, 60))
DM_OPENS = RateLimit("dm_opens", lambda: Rate(settings.DMS_OPENED_PER_HOUR, 3600))
