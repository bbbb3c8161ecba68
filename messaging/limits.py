"""The per-user limit of message sends, one for every path that sends (REST today; the socket and any
GraphQL mutation call the same limit), counted in the shared cache across processes."""

from __future__ import annotations

from django.conf import settings

from core.rate_limits import Rate, RateLimit

MESSAGE_SENDS = RateLimit(
    "message_sends", lambda: Rate.burst(settings.SEND_MESSAGES_BURST, settings.SEND_MESSAGES_PER_SECOND)
)

# Search costs the database far more than a send: its own, tighter budget per user.
MESSAGE_SEARCHES = RateLimit(
    "message_searches", lambda: Rate.burst(settings.SEARCH_BURST, settings.SEARCH_PER_SECOND)
)

# Uploads cost storage and, for images, a decode and re-encode: their own budget per user.
ATTACHMENT_UPLOADS = RateLimit("attachment_uploads", lambda: Rate(max(1, settings.ATTACHMENT_UPLOADS_PER_MINUTE), 60))
