from django.apps import AppConfig


class PresenceConfig(AppConfig):
    name = "presence"

    def ready(self) -> None:
        from . import metrics, receivers  # noqa: F401  (/metrics; chat sockets and membership changes feed presence)
