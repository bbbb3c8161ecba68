from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "rooms"

    def ready(self) -> None:
        from realtime.watch import register_socket_check

        from .sockets import ended_memberships, membership_changes

        # A removed member's socket closes even if its event was lost; rounds read only memberships that ended.
        register_socket_check(ended_memberships, membership_changes)
