"""What each open socket holds, by source line and by type: drives bench/memory_probe_asgi.py (bench only).

    DATABASE_URL=... REDIS_URL=... .venv/bin/python -m bench.memory_probe SOCKETS PORT [--page]

Serves ChatTalk through scripts/serve with PYTHONTRACEMALLOC=1 (FRAMES=n for more frames), opens 20 sockets
(what a process pays once), dumps, opens SOCKETS more (chat sockets in one room, or with --page a room page's
three sockets per user), sends 3 messages from one of them, dumps again, and prints both diffs per socket:
traced bytes by source line and by owner (package), and live objects by type. Tracing slows the server
several times over and its dumps stop the event loop for seconds: read bytes, not timings or RSS.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chattalk_project.settings")

WARM = 20
MESSAGES = int(os.environ.get("MESSAGES", "3"))
MESSAGE_GAP = float(os.environ.get("MESSAGE_GAP", "1"))


def load(path: Path) -> dict[str, int]:
    rows = {}
    for line in path.read_text().splitlines():
        size, _count, key = line.split("\t")
        rows[key] = int(size)
    return rows


def owner(key: str) -> str:
    filename = key.rsplit(":", 1)[0]
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0]
    root = str(Path(__file__).resolve().parent.parent) + "/"
    if filename.startswith(root):
        return "ours: " + filename[len(root) :]
    return "stdlib/other: " + filename.rsplit("/", 1)[-1]


def print_diff(title: str, before: Path, after: Path, sockets: int, by_owner: bool = False, top: int = 40) -> None:
    a, b = load(before), load(after)
    rows = Counter({key: b.get(key, 0) - a.get(key, 0) for key in set(a) | set(b)})
    print(f"\n{title}: {sum(rows.values()) / sockets:.0f} bytes per socket")
    if by_owner:
        owners: Counter[str] = Counter()
        for key, size in rows.items():
            owners[owner(key)] += size
        rows = owners
    for key, size in rows.most_common(top):
        print(f"{size / sockets:9.0f}  {key}")


def main() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import close_old_connections

    from bench.client import connect
    from bench.scenarios import PAGE_ROOM_MEMBERS, PAGE_SOCKETS, drop_room, prepare_room

    sockets, port, page = int(sys.argv[1]), int(sys.argv[2]), "--page" in sys.argv[3:]
    kinds = PAGE_SOCKETS if page else PAGE_SOCKETS[:1]
    users = -(-(sockets + WARM) // len(kinds))
    size = PAGE_ROOM_MEMBERS if page else users
    rooms = [prepare_room(min(size, users - first), first_user=first) for first in range(0, users, size)]
    close_old_connections()
    urls = [
        f"ws://127.0.0.1:{port}{path.format(room=room.room_id)}?access_token={token}"
        for room in rooms
        for token in room.tokens
        for path in kinds
    ]
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "RATE_LIMITS": "off",
        "ASGI_APP": "bench.memory_probe_asgi:application",
        "LOG_LEVEL": "warning",
        "PYTHON": sys.executable,
        "PYTHONTRACEMALLOC": os.environ.get("FRAMES", "1"),
    }
    log = open(Path("var") / f"memory-probe-{port}.log", "ab")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(["scripts/serve", "127.0.0.1", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    dumps = Path("var")

    def dump(number: int) -> None:
        os.kill(server.pid, signal.SIGUSR1)
        done = dumps / f"tracemalloc-{server.pid}-{number}.txt"
        while not done.exists():
            time.sleep(0.2)
        time.sleep(1.0)  # written, not only created

    async def scenario() -> None:
        gate = asyncio.Semaphore(100)
        opened: list = []

        async def one(url: str) -> None:
            async with gate:
                pong = asyncio.get_running_loop().create_future()

                def on_text(data: bytes) -> None:
                    if b'"pong"' in data and not pong.done():
                        pong.set_result(None)

                sock = await connect(url, on_text, deflate=True)
                sock.send_json({"type": "ping"})
                await asyncio.wait_for(pong, 120)
                opened.append(sock)

        await asyncio.gather(*(one(url) for url in urls[:WARM]))
        await asyncio.sleep(1)
        await asyncio.to_thread(dump, 1)
        await asyncio.gather(*(one(url) for url in urls[WARM : WARM + sockets]))
        for number in range(MESSAGES):
            opened[0].send_json({"type": "send", "client_id": str(uuid.uuid4()), "body": f"probe message {number}"})
            await asyncio.sleep(MESSAGE_GAP)
        await asyncio.sleep(3)
        await asyncio.to_thread(dump, 2)
        await asyncio.gather(*(sock.close() for sock in opened), return_exceptions=True)

    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        asyncio.run(scenario())
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        for room in rooms:
            drop_room(room.room_id)
    pid = server.pid
    traced = (dumps / f"tracemalloc-{pid}-1.txt", dumps / f"tracemalloc-{pid}-2.txt")
    print_diff("traced by owner", *traced, sockets, by_owner=True, top=25)
    print_diff("traced by line", *traced, sockets)
    print_diff(
        "live objects by type (sys.getsizeof)", dumps / f"gctypes-{pid}-1.txt", dumps / f"gctypes-{pid}-2.txt", sockets
    )


if __name__ == "__main__":
    main()
