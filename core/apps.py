from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The ground floor: errors and their REST/GraphQL mapping, request ids, metrics, admin and test helpers.

    It imports no other app of the project; every app may import it.
    """

    name = "core"
    verbose_name = "ChatTalk core"

    def ready(self) -> None:
        from .lookups import register

        register()  # `field__any=[...]`: a list as one query parameter (core.lookups)
