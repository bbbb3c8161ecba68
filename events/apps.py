from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Event outbox"

    def ready(self) -> None:
        from . import metrics  # noqa: F401  (the outbox backlog in /metrics)
        from .checks import register_checks

        register_checks()
