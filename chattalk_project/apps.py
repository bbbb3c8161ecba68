from django.apps import AppConfig


class ChatTalkProjectConfig(AppConfig):
    name = "chattalk_project"
    verbose_name = "ChatTalk"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
