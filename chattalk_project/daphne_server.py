"""`python -m chattalk_project.daphne_server [daphne options] chattalk_project.asgi:application`: daphne,
with the socket contract uvicorn gives us.

Daphne's WebSocket layer (autobahn) drops the TCP connection on a frame over its size limit (the client
sees 1006), where the contract says 1009. This launcher runs daphne's own command line with its factory's
protocol options amended: close with a code instead of dropping (`failByDrop` off). Size limits come from
daphne's options (`--websocket-max-message-size`, `--websocket-max-frame-size`); scripts/serve sets them to
the contract's 64 KiB.
"""

from __future__ import annotations

import sys
from typing import Any

from daphne import server as daphne_server
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory


class ContractWebSocketFactory(WebSocketFactory):
    def setProtocolOptions(self, **options: Any) -> None:  # noqa: N802 - autobahn's name
        super().setProtocolOptions(**options, failByDrop=False)


def main(argv: list[str]) -> None:
    daphne_server.WebSocketFactory = ContractWebSocketFactory  # type: ignore[misc]
    CommandLineInterface().run(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
