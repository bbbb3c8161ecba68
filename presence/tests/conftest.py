"""Presence tests run against both stores: the ORM always, MongoDB when the run has MONGODB_URI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from presence.backends import PresenceBackend, build_backend, get_presence_backend, set_presence_backend_for_tests


@pytest.fixture(params=["orm", pytest.param("mongo", marks=pytest.mark.mongo)])
def presence_backend(request: pytest.FixtureRequest, db: None) -> Iterator[PresenceBackend]:
    """The store under test, empty, installed as the process's store for the test."""
    previous = get_presence_backend() if request.param == settings.PRESENCE_BACKEND else None
    backend = previous or build_backend(request.param)
    backend.clear()
    set_presence_backend_for_tests(backend)
    yield backend
    backend.clear()
    set_presence_backend_for_tests(previous)


@pytest.fixture
def clean_presence_store() -> Iterator[None]:
    """Server-process tests share the configured store with this process: start and end them empty."""
    get_presence_backend().clear()
    yield
    get_presence_backend().clear()
