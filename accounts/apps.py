from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from realtime.watch import register_socket_check

        from .tokens import revoked_sockets

        register_socket_check(revoked_sockets)  # a socket whose revocation event was lost still closes
