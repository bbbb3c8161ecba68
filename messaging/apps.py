from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        from realtime.hub import use_stream_source

        from . import receivers  # noqa: F401  (ENTER/LEAVE messages for rooms' membership changes)
        from .streams import RoomEventSource

        use_stream_source(RoomEventSource())
