"""The ASGI handler for Django's HTTP side: the middleware chain and the view in one thread hop per request."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGIHandler, with the middleware chain loaded synchronously and run in one hop to the
    request's thread.

    Why: Django's own handler loads the chain in async mode. Every `MiddlewareMixin` middleware then runs its
    hooks through a hop to the request's thread and back (two per middleware, about 20 per request with
    ours), and the view, synchronous like all of ours (DRF, the ORM), through one more. Each hop is a future,
    a thread wake-up and an event-loop wake-up: together they were half the server's CPU for a cheap request
    (docs/BENCHMARKS.md, "One thread hop per request"). Loaded synchronously, the whole chain runs in one
    call; an async view (rare here) still works, run by Django through async_to_sync from that thread.

    A request that must wait (a password hash's turn) waits before Django, on the event loop
    (core.turns.TurnGate), so that no thread is held while it waits. A client that goes away still cancels
    the request's task (Django's disconnect listener); the thread finishes the work it started.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_one_hop_asgi_application() -> OneHopASGIHandler:
    """As django.core.asgi.get_asgi_application, with the one-hop handler."""
    import django

    django.setup(set_prefix=False)
    return OneHopASGIHandler()
