"""WebSocket routes. Unknown paths are accepted and closed with 4404 rather than dropped."""

from django.urls import path, re_path

from messaging.consumers import ChatConsumer, UnknownPathConsumer

websocket_urlpatterns = [
    path("ws/rooms/<int:room_id>/", ChatConsumer.as_asgi()),
]
try:
    from presence.consumers import PresenceConsumer

    websocket_urlpatterns.insert(0, path("ws/rooms/<int:room_id>/presence/", PresenceConsumer.as_asgi()))
except ImportError:  # the presence consumer arrives with the presence work
    pass
websocket_urlpatterns.append(re_path(r"", UnknownPathConsumer.as_asgi()))
