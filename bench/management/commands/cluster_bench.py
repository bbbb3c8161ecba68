"""The cluster benchmark of issue 21 in one command (bench/cluster_run.py): scripts/netcluster up, one
process against three hosts x two processes under the same load, a host cut off and a Redis failover under
that load, scripts/netcluster down. Needs root (network namespaces). Run it with DATABASE_URL pointing at
the machine's PostgreSQL (127.0.0.1:5432): the cluster uses this process's database (NETCLUSTER_DB).
`chat_bench --scenario cluster` runs this command with its defaults.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.cluster_run import Plan, run


class Command(BaseCommand):
    help = (
        "Cluster benchmark: single process vs scripts/netcluster's 3 hosts x 2 processes; host cut and Redis failover."
    )

    def add_arguments(self, parser: Any) -> None:
        d = Plan()
        parser.add_argument("--big-members", type=int, default=d.big_members)
        parser.add_argument("--big-senders", type=int, default=d.big_senders)
        parser.add_argument("--big-rate", type=float, default=d.big_rate, help="messages/s per big-room sender")
        parser.add_argument("--rooms", type=int, default=d.rooms, help="small rooms beside the big one")
        parser.add_argument("--room-members", type=int, default=d.room_members)
        parser.add_argument("--room-rate", type=float, default=d.room_rate, help="messages/s of each small room")
        parser.add_argument("--workers", type=int, default=d.workers, help="client processes")
        parser.add_argument("--warm", type=float, default=d.warm)
        parser.add_argument("--steady", type=float, default=d.steady, help="seconds measured without failures")
        parser.add_argument("--cut-hold", type=float, default=d.cut_hold)
        parser.add_argument("--heal-hold", type=float, default=d.heal_hold)
        parser.add_argument("--failover-hold", type=float, default=d.failover_hold)
        parser.add_argument("--cluster-up", action="store_true", help="the cluster is already up: no up/down")
        parser.add_argument("--no-single", action="store_true", help="skip the single-process phase")
        parser.add_argument("--no-failures", action="store_true", help="skip the cut and the failover")
        parser.add_argument("--json", dest="json_path", help="append the result as one JSON line to this file")

    def handle(self, *args: Any, **o: Any) -> None:
        if settings.USING_DEV_SECRET_KEY:
            raise CommandError(
                "the cluster serves with DEBUG=0, which refuses the development key: set SECRET_KEY in the "
                "environment (e.g. SECRET_KEY=$(openssl rand -hex 32)); the bench mints tokens with it"
            )
        plan = Plan(
            big_members=o["big_members"],
            big_senders=o["big_senders"],
            big_rate=o["big_rate"],
            rooms=o["rooms"],
            room_members=o["room_members"],
            room_rate=o["room_rate"],
            workers=o["workers"],
            warm=o["warm"],
            steady=o["steady"],
            cut_hold=o["cut_hold"],
            heal_hold=o["heal_hold"],
            failover_hold=o["failover_hold"],
        )

        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        result = run(
            plan, start_cluster=not o["cluster_up"], single=not o["no_single"], failures=not o["no_failures"], log=log
        )
        text = json.dumps(result)
        if o["json_path"]:
            with Path(o["json_path"]).open("a") as out:
                out.write(text + "\n")
        self.stdout.write(json.dumps(result, indent=1))
