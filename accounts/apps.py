from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from realtime.watch import register_socket_check

        from .tokens import credential_changes, revoked_sockets

        # A socket whose revocation event was lost still closes; rounds read only the users whose credentials changed.
        register_socket_check(revoked_sockets, credential_changes)
