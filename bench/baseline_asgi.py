"""ASGI entry point of the baseline: same settings, same HTTP app and auth, the tutorial consumer on the
chat path. Serve it exactly like ChatTalk: uvicorn bench.baseline_asgi:application ..."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chattalk_project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from accounts.ws_auth import ChatTalkAuthStack  # noqa: E402

from .baseline_consumer import TutorialChatConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": ChatTalkAuthStack(URLRouter([path("ws/rooms/<int:room_id>/", TutorialChatConsumer.as_asgi())])),
    }
)
