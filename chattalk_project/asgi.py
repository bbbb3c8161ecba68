"""ASGI entry point: HTTP through Django (static files served too), WebSockets through Channels."""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chattalk_project.settings")

# The event loop holds the GIL through each fan-out burst; a send's worker thread needs it back after every
# database round trip. Python's default 5 ms switch interval makes each of those waits up to 5 ms, which
# piled up into the ack latency; a shorter interval lets the worker threads in sooner.
sys.setswitchinterval(float(os.environ.get("GIL_SWITCH_INTERVAL", "0.001")))

from core.handlers import get_one_hop_asgi_application  # noqa: E402

django_asgi_app = get_one_hop_asgi_application()

import re  # noqa: E402

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from accounts.password_pool import PASSWORD_TURN, password_turns  # noqa: E402
from accounts.ws_auth import ChatTalkAuthStack  # noqa: E402
from core.turns import TurnGate, views_marked  # noqa: E402
from core.upload_limits import BodySizeLimit  # noqa: E402
from messaging.attachments import upload_body_limit  # noqa: E402
from messaging.image_pool import start_workers as start_image_workers  # noqa: E402

from .checks import announce_development_key  # noqa: E402
from .routing import websocket_urlpatterns  # noqa: E402

announce_development_key()
start_image_workers()  # uploaded images are processed in worker processes: start them before the first upload

application = ProtocolTypeRouter(
    {
        # An upload's body is refused past its limit before Django reads it all (core.upload_limits); the
        # requests that hash a password wait for a turn before Django runs them (accounts.password_pool).
        "http": ASGIStaticFilesHandler(
            TurnGate(
                BodySizeLimit(django_asgi_app, {re.compile(r"/api/rooms/\d+/attachments/?"): upload_body_limit}),
                views_marked(PASSWORD_TURN),
                password_turns,
            )
        ),
        "websocket": ChatTalkAuthStack(URLRouter(websocket_urlpatterns)),
    }
)
