"""Closing a user's live sockets on every process: revocation travels through the channel layer.

Each process's hub subscribes to `user.<id>` while it holds a socket of that user; a `user.revoked` event
closes the matching sockets with 4401 (all of them, or those authenticated with one access token's jti).
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def revoked_event(user_id: int, jti: str | None) -> dict[str, Any]:
    return {"type": "user.revoked", "user_id": user_id, "jti": jti}


def publish_user_revoked(user_id: int, jti: str | None = None) -> None:
    """jti None closes every socket of the user (deactivation); a jti closes those opened with that token
    (or, for a `session:` id from accounts.tokens.session_socket_id, those opened with that session).

    Call it after the revocation committed: a socket that reconnects at once must already be refused.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), revoked_event(user_id, jti))
    except Exception:  # noqa: BLE001 - the revocation itself stands; only the push failed
        logger.exception("could not publish revocation of user %s", user_id)
