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
