from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """Sockets, the per-process hub, frames and close codes. Knows sockets, not chat: it imports only core;
    authentication, membership and the stream's history reach it as callables that higher apps register."""

    name = "realtime"
    verbose_name = "Real time"

    def ready(self) -> None:
        from . import metrics  # noqa: F401  (registers the hub's collector with core.metrics)
