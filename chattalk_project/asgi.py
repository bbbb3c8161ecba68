"""ASGI entry point: HTTP through Django (static files served too), WebSockets through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chattalk_project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from accounts.ws_auth import ChatTalkAuthStack  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": ChatTalkAuthStack(URLRouter(websocket_urlpatterns)),
    }
)
