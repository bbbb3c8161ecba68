"""The project's ASGI handler runs the middleware chain and the view in one hop to a thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref import sync
from asgiref.testing import ApplicationCommunicator

from core.handlers import OneHopASGIHandler


def request(path: str, method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def fetch(path: str) -> tuple[int, bytes]:
    communicator = ApplicationCommunicator(OneHopASGIHandler(), request(path))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(10)
    body = b""
    while True:
        message = await communicator.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(1)
    return start["status"], body


@pytest.mark.django_db(transaction=True)
def test_a_request_makes_one_thread_hop_for_the_middleware_chain_and_the_view(monkeypatch):
    hops: list[str] = []
    back_to_the_loop: list[str] = []
    to_thread, to_loop = sync.SyncToAsync.__call__, sync.AsyncToSync.__call__

    async def counting_to_thread(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await to_thread(self, *args, **kwargs)

    def counting_to_loop(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        back_to_the_loop.append(getattr(self.awaitable, "__qualname__", repr(self.awaitable)))
        return to_loop(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counting_to_thread)
    monkeypatch.setattr(sync.AsyncToSync, "__call__", counting_to_loop)
    status, _ = asyncio.run(fetch("/healthz"))
    assert status == 200
    # Besides Django's request_started / request_finished signals and the response's close: one hop. Django's
    # own handler makes about 20 here (two per middleware, one for the view).
    ours = [name for name in hops if "send" not in name and "close" not in name]
    assert ours == ["BaseHandler.get_response"], hops
    assert back_to_the_loop == []


@pytest.mark.django_db(transaction=True)
def test_errors_keep_their_contract_format_through_the_one_hop_handler():
    status, body = asyncio.run(fetch("/api/no-such-endpoint"))
    assert status == 404
    assert b'"code"' in body


def test_the_middleware_chain_runs_off_the_event_loop_thread(settings):
    seen: dict[str, int] = {}

    class Recorder:
        def __init__(self, get_response):  # type: ignore[no-untyped-def]
            self.get_response = get_response

        def __call__(self, request):  # type: ignore[no-untyped-def]
            seen["middleware"] = threading.get_ident()
            return self.get_response(request)

    import sys
    import types

    module = types.ModuleType("core_tests_recorder")
    module.Recorder = Recorder  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    settings.MIDDLEWARE = ["core_tests_recorder.Recorder", *settings.MIDDLEWARE]

    async def scenario() -> int:
        status, _ = await fetch("/healthz")
        assert status == 200
        return threading.get_ident()

    assert seen.get("middleware") is None
    loop_thread = asyncio.run(scenario())
    assert seen["middleware"] != loop_thread
