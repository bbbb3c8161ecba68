"""The baseline: the Channels tutorial's chat consumer, plus saving each message, speaking our wire frames.

It is what people build with Channels by default: every socket has its own channel, joins the room's group,
and each chat message is one `group_send`, so the channel layer carries one copy per socket (with Redis: one
write, one read and one decode per socket per message). Each message is saved with a plain ORM insert
(database_sync_to_async, the tutorial's thread-sensitive default), and the sender gets an ack, so the
benchmark client measures both servers the same way. Kept outside the product (bench/), for comparison only.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from messaging.models import Message
from rooms.models import Room


@database_sync_to_async
def save_message(room_id: int, user: Any, client_id: str, body: str) -> dict[str, Any]:
    with transaction.atomic():
        Room.objects.filter(pk=room_id).update(last_seq=F("last_seq") + 1)
        seq = Room.objects.values_list("last_seq", flat=True).get(pk=room_id)
        message = Message.objects.create(
            room_id=room_id, seq=seq, client_id=client_id, sender=user, body=body, created_at=timezone.now()
        )
    return {
        "id": message.pk,
        "room": room_id,
        "seq": seq,
        "client_id": client_id,
        "kind": message.kind,
        "sender": {"id": user.pk, "username": user.username, "nickname": user.nickname},
        "body": body,
        "created_at": message.created_at.isoformat(),
    }


class TutorialChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        self.room_id = int(self.scope["url_route"]["kwargs"]["room_id"])
        self.room_group_name = f"chat_{self.room_id}"
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code: int) -> None:
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data = json.loads(text_data or "{}")
        if data.get("type") == "ping":
            await self.send(text_data=json.dumps({"type": "pong"}))
            return
        if data.get("type") != "send":
            return
        message = await save_message(self.room_id, self.scope["user"], str(data["client_id"]), str(data["body"]))
        await self.send(
            text_data=json.dumps(
                {"type": "ack", "client_id": message["client_id"], "seq": message["seq"], "id": message["id"]}
            )
        )
        await self.channel_layer.group_send(self.room_group_name, {"type": "chat.message", "message": message})

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "message", "message": event["message"]}))
