from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (ENTER/LEAVE messages for rooms' membership changes)
