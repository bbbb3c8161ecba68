"""ChatTalk's ASGI app with tracemalloc, for finding what an idle socket costs (bench only, never deployed).

Serve it like the product (uvicorn bench.memory_probe_asgi:application ...) with PYTHONTRACEMALLOC=1; each
SIGUSR1 writes the traced allocations grouped by source line to var/tracemalloc-<pid>-<n>.txt, so two
dumps around opening N sockets, diffed, say which lines hold the memory of those sockets.
"""

import os
import signal
import tracemalloc
from pathlib import Path

from chattalk_project.asgi import application  # noqa: F401 - re-exported for uvicorn

_dumps = 0


def _dump(signum: int, frame: object) -> None:
    global _dumps
    if not tracemalloc.is_tracing():
        return
    _dumps += 1
    snapshot = tracemalloc.take_snapshot()
    out = Path("var") / f"tracemalloc-{os.getpid()}-{_dumps}.txt"
    out.parent.mkdir(exist_ok=True)
    with out.open("w") as handle:
        for stat in snapshot.statistics("lineno"):
            frame0 = stat.traceback[0]
            handle.write(f"{stat.size}\t{stat.count}\t{frame0.filename}:{frame0.lineno}\n")


signal.signal(signal.SIGUSR1, _dump)
