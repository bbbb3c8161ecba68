"""ChatTalk's ASGI app with tracemalloc, for finding what an idle socket costs (bench only, never deployed).

Serve it like the product (ASGI_APP=bench.memory_probe_asgi:application scripts/serve ...) with
PYTHONTRACEMALLOC=1 (or more frames); each SIGUSR1 writes the traced allocations grouped by source line to
var/tracemalloc-<pid>-<n>.txt and the live objects counted by type (gc.get_objects) to
var/gctypes-<pid>-<n>.txt, so two dumps around opening N sockets, diffed (bench/memory_probe_diff.py), say
which lines and which types hold the memory of those sockets.
"""

import gc
import os
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

from chattalk_project.asgi import application  # noqa: F401 - re-exported for uvicorn

_dumps = 0


def _dump(signum: int, frame: object) -> None:
    global _dumps
    _dumps += 1
    out_dir = Path("var")
    out_dir.mkdir(exist_ok=True)
    gc.collect()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    with (out_dir / f"gctypes-{os.getpid()}-{_dumps}.txt").open("w") as handle:
        for name, count in counts.most_common():
            handle.write(f"{sizes[name]}\t{count}\t{name}\n")
    if not tracemalloc.is_tracing():
        return
    snapshot = tracemalloc.take_snapshot()
    with (out_dir / f"tracemalloc-{os.getpid()}-{_dumps}.txt").open("w") as handle:
        for stat in snapshot.statistics("lineno"):
            frame0 = stat.traceback[0]
            handle.write(f"{stat.size}\t{stat.count}\t{frame0.filename}:{frame0.lineno}\n")


signal.signal(signal.SIGUSR1, _dump)
