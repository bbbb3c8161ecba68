from django.apps import AppConfig


class PresenceConfig(AppConfig):
    name = "presence"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (chat sockets and membership changes feed presence)
