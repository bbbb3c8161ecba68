from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest


class Terminal(StringIO):
    """A captured stream that says it is a terminal, as a command's stderr is when someone watches."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def make_terminal() -> Callable[[], Terminal]:
    return Terminal
