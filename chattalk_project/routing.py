"""WebSocket routes. Unknown paths are accepted and closed with 4404 rather than dropped."""

from django.urls import path, re_path

from messaging.activity import UserSocket
from messaging.consumers import ChatConsumer
from presence.consumers import PresenceConsumer
from realtime.sockets import UnknownPathSocket

websocket_urlpatterns = [
    path("ws/rooms/<int:room_id>/presence/", PresenceConsumer.as_asgi()),
    path("ws/rooms/<int:room_id>/", ChatConsumer.as_asgi()),
    path("ws/me/", UserSocket.as_asgi()),
    re_path(r"", UnknownPathSocket.as_asgi()),
]
