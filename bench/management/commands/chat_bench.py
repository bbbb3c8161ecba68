"""Drive a running ChatTalk (or the tutorial baseline) over real WebSockets and print the figures.

The command writes its setup rows (bench users, a fresh room, memberships) into the database of this
process's settings, so run it with the same DATABASE_URL as the server. Loopback targets only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench import scenarios
from bench.client import require_loopback
from bench.progress import progress_bar
from bench.servers import ServedApp

SCENARIOS = ("fanout", "compare", "connect", "resume", "join", "login", "ramp")
FANOUT_COLUMNS = (
    ("app", "app", "{}"),
    ("mode", "mode", "{}"),
    ("members", "members", "{:,}"),
    ("deliveries/s", "deliveries_per_second", "{:,.0f}"),
    ("p50 ms", "delivery_p50_ms", "{:.1f}"),
    ("p95 ms", "delivery_p95_ms", "{:.1f}"),
    ("p99 ms", "delivery_p99_ms", "{:.1f}"),
    ("ack p50", "ack_p50_ms", "{:.1f}"),
    ("ack p99", "ack_p99_ms", "{:.1f}"),
    ("lost", "lost_deliveries", "{:,}"),
    ("dup", "duplicates", "{:,}"),
    ("µs CPU/deliv", "server_cpu_us_per_delivery", "{:.1f}"),
    ("deliv/CPU s", "deliveries_per_server_cpu_second", "{:,}"),
)


class Command(BaseCommand):
    help = "Chat benchmark: fanout, compare (ChatTalk vs the tutorial baseline), connect, resume, join, login."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--scenario", choices=SCENARIOS, default="fanout")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (loopback only)")
        parser.add_argument("--server-pid", type=int, action="append", default=[], help="for CPU and RSS figures")
        parser.add_argument("--serve", choices=("chattalk", "baseline"), help="start this app on --port and use it")
        parser.add_argument("--port", type=int, default=8100)
        # fanout / compare / login
        parser.add_argument("--members", type=int, default=1000)
        parser.add_argument("--senders", type=int, default=10)
        parser.add_argument("--rate", type=float, default=0.0, help="messages/s per sender; 0: as fast as acks come")
        parser.add_argument("--window", type=int, default=1, help="messages in flight per sender when --rate is 0")
        parser.add_argument(
            "--offered",
            type=float,
            default=0.0,
            help="fanout: offered deliveries/s (sets --rate = offered / members / senders); compare: the offered-load "
            "pass (default 15000; 0 skips it)",
        )
        parser.add_argument("--no-saturate", action="store_true", help="compare: skip the as-fast-as-acks pass")
        parser.add_argument("--duration", type=float, default=20.0)
        parser.add_argument("--processes", type=int, default=1, help="client processes (0: in this process)")
        parser.add_argument("--body-bytes", type=int, default=100)
        parser.add_argument("--members-list", default="100,1000,5000", help="compare: room sizes")
        parser.add_argument("--apps", default="chattalk,baseline", help="compare: which apps")
        parser.add_argument("--ports", default="8101,8102", help="compare: a port per app")
        # connect / resume / join / login
        parser.add_argument("--sockets", type=int, default=3000)
        parser.add_argument("--concurrency", type=int, default=200)
        parser.add_argument("--hold", type=float, default=2.0)
        parser.add_argument("--clients", type=int, default=1000)
        parser.add_argument("--history", type=int, default=500)
        parser.add_argument("--after-seq", type=int, default=0)
        parser.add_argument("--users", type=int, default=500)
        parser.add_argument("--seats", type=int, default=100)
        parser.add_argument("--logins", type=int, default=100)
        parser.add_argument("--ramp-seconds", type=float, default=15.0, help="ramp: users start spread over this")
        parser.add_argument("--lists", type=int, default=3, help="ramp: room lists per user once logged in")
        # output
        parser.add_argument("--json", dest="json_path", help="append the results as JSON lines to this file")
        parser.add_argument("--plot", help="compare: write a PNG of throughput and p99 against members")

    def handle(self, *args: Any, **options: Any) -> None:
        scenario = options["scenario"]
        bounded = {"duration": 600.0, "members": 10_000, "sockets": 20_000, "clients": 10_000, "users": 10_000}
        for name, limit in bounded.items():
            if options[name] > limit or options[name] < 0:
                raise CommandError(f"--{name} must be between 0 and {limit:,} (benchmarks stay bounded)")
        if scenario == "compare":
            results = self.compare(options)
        else:
            served = None
            if options["serve"]:
                served = ServedApp(options["serve"], options["port"]).start()
                options["url"], options["server_pid"] = served.url, [served.pid, *options["server_pid"]]
                self.stdout.write(f"serving {options['serve']} at {served.url} (pid {served.pid})")
            try:
                require_loopback(options["url"])
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            try:
                results = [self.run_one(scenario, options)]
            finally:
                if served is not None:
                    served.stop()
        if options["json_path"]:
            with open(options["json_path"], "a") as out:
                for result in results:
                    out.write(json.dumps(result) + "\n")

    # --- scenarios ----------------------------------------------------------------------------------
    def run_one(self, scenario: str, o: dict[str, Any]) -> dict[str, Any]:
        url, pids = o["url"], o["server_pid"]
        self.stdout.write(f"{scenario} against {url}; database {settings.DATABASES['default']['NAME']}")
        if scenario == "fanout":
            rate = o["rate"]
            if o["offered"] > 0:
                rate = o["offered"] / max(1, o["members"]) / max(1, min(o["senders"], o["members"]))
            result, _ = scenarios.fanout(
                url,
                members=o["members"],
                senders=o["senders"],
                duration=o["duration"],
                rate=rate,
                window=o["window"],
                processes=o["processes"],
                server_pids=pids,
                body_bytes=o["body_bytes"],
            )
        elif scenario == "connect":
            result = scenarios.connect_storm(
                url,
                sockets=o["sockets"],
                concurrency=o["concurrency"],
                hold=o["hold"],
                server_pid=pids[0] if pids else None,
            )
        elif scenario == "resume":
            result = scenarios.resume_storm(
                url, clients=o["clients"], history=o["history"], after_seq=o["after_seq"], concurrency=o["concurrency"]
            )
        elif scenario == "join":
            result = scenarios.join_stampede(url, users=o["users"], seats=o["seats"], concurrency=o["concurrency"])
        elif scenario == "ramp":
            result = scenarios.login_ramp(
                url, users=o["users"], ramp_seconds=o["ramp_seconds"], lists_per_user=o["lists"]
            )
        else:
            result = scenarios.login_storm(
                url,
                logins=o["logins"],
                members=o["members"],
                senders=o["senders"],
                rate=o["rate"] or 2.0,
                duration=o["duration"],
                processes=o["processes"],
                server_pids=pids,
            )
        result = {"scenario": scenario, **result}
        self.print_result(result)
        return result

    def compare(self, o: dict[str, Any]) -> list[dict[str, Any]]:
        """The same fan-out against each app, each served fresh by this command, at each room size."""
        apps = [a.strip() for a in o["apps"].split(",") if a.strip()]
        ports = [int(p) for p in o["ports"].split(",")]
        sizes = [int(m) for m in o["members_list"].split(",") if m.strip()]
        if len(ports) < len(apps):
            raise CommandError("--ports needs one port per app")
        offered = o["offered"] if o["offered"] > 0 else 15000.0
        modes: list[tuple[str, float]] = [] if o["no_saturate"] else [("saturate", 0.0)]
        if offered:
            modes.append((f"offered {offered:,.0f}/s", offered))
        runs = [(members, app, port) for members in sizes for app, port in zip(apps, ports, strict=False)]
        results: list[dict[str, Any]] = []
        total = len(runs) * len(modes)
        with progress_bar(self, total=total, desc="compare", unit="pass", verbosity=o["verbosity"]) as bar:
            for members, app, port in runs:
                served = ServedApp(app, port).start()
                try:
                    for mode, load in modes:
                        bar.clear()  # the bar is redrawn below each block of lines
                        self.stdout.write(f"\n== {app} · {members:,} members · {mode} · pid {served.pid}")
                        bar.set_description(f"compare: {app} · {members:,} members · {mode}")
                        senders = min(o["senders"], members)
                        result, _ = scenarios.fanout(
                            served.url,
                            members=members,
                            senders=senders,
                            duration=o["duration"],
                            rate=load / members / senders if load else 0.0,
                            window=o["window"],
                            processes=o["processes"] if members <= 1000 else max(o["processes"], 2),
                            server_pids=[served.pid],
                            body_bytes=o["body_bytes"],
                        )
                        result = {"scenario": "compare", "app": app, "mode": mode, **result}
                        result["at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                        bar.clear()
                        self.print_result(result)
                        results.append(result)
                        bar.update()
                finally:
                    served.stop()
        self.stdout.write("\n" + self.table(results))
        self.print_ratios(results)
        if o["plot"]:
            plot(results, Path(o["plot"]))
            self.stdout.write(f"plot written to {o['plot']}")
        return results

    # --- output -------------------------------------------------------------------------------------
    def print_result(self, result: dict[str, Any]) -> None:
        chat = result.get("chat") if isinstance(result.get("chat"), dict) else result
        for label, key in (("sockets failed to connect", "connect_failures"), ("deliveries lost", "lost_deliveries")):
            if chat.get(key):
                self.stdout.write(self.style.WARNING(f"{chat[key]:,} {label}"))
        if chat.get("drain_timed_out"):
            self.stdout.write(self.style.WARNING("the drain timed out: the server still had messages queued"))
        if chat.get("duplicates"):
            self.stdout.write(self.style.ERROR(f"{chat['duplicates']:,} duplicate deliveries"))
        for key, value in result.items():
            if isinstance(value, dict) and key == "chat":
                self.stdout.write("  chat meanwhile:")
                for k, v in value.items():
                    self.stdout.write(f"    {k}: {v}")
            else:
                self.stdout.write(f"  {key}: {value}")

    @staticmethod
    def table(results: list[dict[str, Any]]) -> str:
        header = "| " + " | ".join(title for title, _, _ in FANOUT_COLUMNS) + " |"
        lines = [header, "|" + "|".join("---" for _ in FANOUT_COLUMNS) + "|"]
        for result in results:
            cells = []
            for _, key, fmt in FANOUT_COLUMNS:
                value = result.get(key)
                cells.append("—" if value is None else fmt.format(value))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def print_ratios(self, results: list[dict[str, Any]]) -> None:
        by = {(r["app"], r["members"], r["mode"]): r for r in results}
        for (app, members, mode), r in sorted(by.items()):
            base = by.get(("baseline", members, mode))
            if app != "chattalk" or base is None or mode != "saturate":
                continue
            ours, theirs = r.get("deliveries_per_server_cpu_second"), base.get("deliveries_per_server_cpu_second")
            if ours and theirs:
                self.stdout.write(
                    f"{members:,} members: ChatTalk delivers {ours / theirs:.1f}x the baseline per CPU second"
                )


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Throughput and p99 against members, one line per app (matplotlib, a dev requirement)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    throughput_mode = "saturate" if any(r["mode"] == "saturate" for r in results) else results[0]["mode"]
    latency_mode = next((r["mode"] for r in results if r["mode"] != "saturate"), throughput_mode)
    panels = (
        (left, throughput_mode, "deliveries_per_second", f"deliveries per second ({throughput_mode})"),
        (middle, throughput_mode, "server_cpu_us_per_delivery", f"server CPU µs per delivery ({throughput_mode})"),
        (right, latency_mode, "delivery_p99_ms", f"send-to-delivery p99 ms ({latency_mode})"),
    )
    for app in sorted({r["app"] for r in results}):
        for axis, mode, key, _ in panels:
            rows = sorted((r for r in results if r["app"] == app and r["mode"] == mode), key=lambda r: r["members"])
            axis.plot([r["members"] for r in rows], [r.get(key) or 0 for r in rows], marker="o", label=app)
    for axis, _, _, title in panels:
        axis.set_xscale("log")
        axis.set_xlabel("members in the room")
        axis.set_title(title, fontsize=10)
        axis.grid(True, alpha=0.3)
        axis.legend()
    middle.set_yscale("log")
    right.set_yscale("log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
