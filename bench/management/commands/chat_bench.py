"""Drive a running ChatTalk (or the tutorial baseline) over real WebSockets and print the figures.

The command writes its setup rows (bench users, a fresh room, memberships) into the database of this
process's settings, so run it with the same DATABASE_URL as the server. Loopback targets only.

Its sockets offer permessage-deflate as browsers do (`--no-deflate`: no extension offered); a server that
this command starts (`--serve`, `compare`) accepts it or not as `--server-deflate` says, and `both` runs
each scenario once with it on and once off, on fresh servers, so that the two are measured side by side.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from bench import lifecycle, scenarios, uploads
from bench.client import require_loopback
from bench.progress import progress_bar
from bench.servers import ServedApp

SCENARIOS = (
    "fanout",
    "compare",
    "connect",
    "resume",
    "join",
    "login",
    "ramp",
    "changes",
    "replay",
    "uploads",
    "cluster",
)
SERVER_DEFLATE = {"default": [None], "on": [True], "off": [False], "both": [True, False]}
FANOUT_COLUMNS = (
    ("app", "app", "{}"),
    ("mode", "mode", "{}"),
    ("server deflate", "server_deflate", "{}"),
    ("deflate sockets", "deflate_sockets", "{:,}"),
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
    ("KiB/socket idle", "kib_per_socket_connected", "{:.1f}"),
    ("KiB/socket after traffic", "kib_per_socket_after_traffic", "{:.1f}"),
)


def server_deflate_label(deflate: bool | None) -> str:
    return "default" if deflate is None else ("on" if deflate else "off")


class Command(BaseCommand):
    help = (
        "Chat benchmark: fanout, compare (ChatTalk vs the tutorial baseline), connect, resume, join, login, ramp, "
        "changes, replay, uploads (chat latency in other rooms while 10 MiB files are uploaded)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--scenario", choices=SCENARIOS, default="fanout")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (loopback only)")
        parser.add_argument("--server-pid", type=int, action="append", default=[], help="for CPU and RSS figures")
        parser.add_argument("--serve", choices=("chattalk", "baseline"), help="start this app on --port and use it")
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument(
            "--no-deflate",
            action="store_true",
            help="the client sockets offer no permessage-deflate (by default they offer it, as browsers do)",
        )
        parser.add_argument(
            "--server-deflate",
            choices=tuple(SERVER_DEFLATE),
            default="default",
            help="with --serve or compare: the served app accepts permessage-deflate (on), refuses it (off), "
            "keeps the server command's default, or runs once with each (both)",
        )
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
        parser.add_argument("--messages", type=int, default=0, help="messages per sender, then it stops (0: no cap)")
        parser.add_argument("--processes", type=int, default=1, help="client processes (0: in this process)")
        parser.add_argument("--body-bytes", type=int, default=100)
        parser.add_argument("--members-list", default="100,1000,5000", help="compare: room sizes")
        parser.add_argument("--apps", default="chattalk,baseline", help="compare: which apps")
        parser.add_argument("--ports", default="8101,8102", help="compare: a port per app")
        # connect / resume / join / login
        parser.add_argument("--sockets", type=int, default=3000)
        parser.add_argument("--concurrency", type=int, default=200)
        parser.add_argument("--hold", type=float, default=2.0)
        parser.add_argument(
            "--page",
            action="store_true",
            help="connect: each user opens a room page's sockets (chat, presence, /ws/me/), not one chat socket",
        )
        parser.add_argument("--clients", type=int, default=1000)
        parser.add_argument("--history", type=int, default=500)
        parser.add_argument("--after-seq", type=int, default=0)
        parser.add_argument("--users", type=int, default=500)
        parser.add_argument("--seats", type=int, default=100)
        parser.add_argument("--logins", type=int, default=100)
        parser.add_argument("--ramp-seconds", type=float, default=15.0, help="ramp: users start spread over this")
        parser.add_argument("--lists", type=int, default=3, help="ramp: room lists per user once logged in")
        # changes / replay (the message lifecycle)
        parser.add_argument(
            "--operations", type=int, default=40, help="changes: operations of each kind per sender (--senders)"
        )
        parser.add_argument(
            "--changes", type=int, default=10_000, help="replay: new messages in one room, changes in the other"
        )
        parser.add_argument("--rounds", type=int, default=2, help="replay: resumes per room, alternating rooms")
        parser.add_argument("--replay-clients", type=int, default=1, help="replay: clients resuming at once")
        parser.add_argument(
            "--replay-history", type=int, default=0, help="replay: messages before the point clients resume from"
        )
        # uploads (chat in --rooms rooms of --members, --senders each at --rate, beside uploads to another room)
        parser.add_argument("--rooms", type=int, default=4, help="uploads: chat rooms measured")
        parser.add_argument("--uploaders", type=int, default=2, help="uploads: members uploading at once")
        parser.add_argument(
            "--slot-seconds", type=float, default=15.0, help="uploads: quiet and upload slots alternate this long"
        )
        # output
        parser.add_argument("--json", dest="json_path", help="append the results as JSON lines to this file")
        parser.add_argument("--plot", help="compare: write a PNG of throughput and p99 against members")

    def handle(self, *args: Any, **options: Any) -> None:
        scenario = options["scenario"]
        if scenario == "cluster":  # its own command and options (bench/cluster_run.py): run with its defaults
            call_command("cluster_bench", json_path=options["json_path"], stdout=self.stdout)
            return
        bounded = {
            "duration": 600.0,
            "members": 10_000,
            "sockets": 20_000,
            "clients": 10_000,
            "users": 10_000,
            "operations": 10_000,
            "changes": 100_000,
            "rounds": 20,
            "replay_clients": 1000,
            "rooms": 50,
            "uploaders": 20,
        }
        for name, limit in bounded.items():
            if options[name] > limit or options[name] < 0:
                raise CommandError(f"--{name} must be between 0 and {limit:,} (benchmarks stay bounded)")
        if options["server_deflate"] != "default" and scenario != "compare" and not options["serve"]:
            raise CommandError("--server-deflate applies to a server this command starts: use --serve or compare")
        if scenario == "compare":
            results = self.compare(options)
        elif options["serve"]:
            results = []
            given_pids = options["server_pid"]
            for deflate in SERVER_DEFLATE[options["server_deflate"]]:
                served = ServedApp(options["serve"], options["port"], deflate=deflate).start()
                label = server_deflate_label(deflate)
                options["url"], options["server_pid"] = served.url, [served.pid, *given_pids]
                self.stdout.write(
                    f"serving {options['serve']} at {served.url} (pid {served.pid}, server deflate {label})"
                )
                try:
                    results.append(self.run_one(scenario, options, {"app": options["serve"], "server_deflate": label}))
                finally:
                    served.stop()
            self.print_deflate_ratios(results)
        else:
            try:
                require_loopback(options["url"])
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            results = [self.run_one(scenario, options)]
        if options["json_path"]:
            with open(options["json_path"], "a") as out:
                for result in results:
                    out.write(json.dumps(result) + "\n")

    # --- scenarios ----------------------------------------------------------------------------------
    def run_one(self, scenario: str, o: dict[str, Any], labels: dict[str, Any] | None = None) -> dict[str, Any]:
        url, pids, deflate = o["url"], o["server_pid"], not o["no_deflate"]
        self.stdout.write(
            f"{scenario} against {url}; database {settings.DATABASES['default']['NAME']}; "
            f"clients {'offer' if deflate else 'do not offer'} permessage-deflate"
        )
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
                deflate=deflate,
                messages=o["messages"],
            )
        elif scenario == "connect":
            result = scenarios.connect_storm(
                url,
                sockets=o["sockets"],
                concurrency=o["concurrency"],
                hold=o["hold"],
                server_pid=pids[0] if pids else None,
                deflate=deflate,
                page=o["page"],
            )
        elif scenario == "resume":
            result = scenarios.resume_storm(
                url,
                clients=o["clients"],
                history=o["history"],
                after_seq=o["after_seq"],
                concurrency=o["concurrency"],
                deflate=deflate,
            )
        elif scenario == "changes":
            result = lifecycle.change_costs(
                url,
                members=o["members"],
                actors=o["senders"],
                rate=o["rate"] or 2.0,
                operations=o["operations"],
                server_pids=pids,
                body_bytes=o["body_bytes"],
                deflate=deflate,
            )
        elif scenario == "replay":
            result = lifecycle.replay_changes(
                url,
                changes=o["changes"],
                history=o["replay_history"],
                clients=o["replay_clients"],
                rounds=o["rounds"],
                deflate=deflate,
                server_pids=pids,
                on_round=lambda kind, r: self.stdout.write(f"  resume after {o['changes']:,} {kind}: {r}"),
            )
        elif scenario == "uploads":
            result = uploads.upload_interference(
                url,
                rooms=o["rooms"],
                members=o["members"],
                senders=o["senders"],
                rate=o["rate"] or 2.0,
                duration=o["duration"],
                slot_seconds=o["slot_seconds"],
                uploaders=o["uploaders"],
                server_pids=pids,
                deflate=deflate,
                on_upload=lambda r: self.stdout.write(
                    f"  upload {r.name}: {r.status} in {(r.ended - r.started) * 1000:.0f} ms, send {r.sent_status}"
                ),
            )
        elif scenario == "join":
            result = scenarios.join_stampede(url, users=o["users"], seats=o["seats"], concurrency=o["concurrency"])
        elif scenario == "ramp":
            result = scenarios.login_ramp(
                url, users=o["users"], ramp_seconds=o["ramp_seconds"], lists_per_user=o["lists"], server_pids=pids
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
                deflate=deflate,
            )
        result = {"scenario": scenario, **(labels or {}), "client_deflate": deflate, **result}
        self.print_result(result)
        if scenario == "changes":
            self.stdout.write("\n" + self.phase_table(result["phases"]))
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
        # The server deflate settings of one app run back to back, so that they meet the same machine load.
        runs = [
            (members, app, port, deflate)
            for members in sizes
            for app, port in zip(apps, ports, strict=False)
            for deflate in SERVER_DEFLATE[o["server_deflate"]]
        ]
        client_deflate = not o["no_deflate"]
        results: list[dict[str, Any]] = []
        total = len(runs) * len(modes)
        with progress_bar(self, total=total, desc="compare", unit="pass", verbosity=o["verbosity"]) as bar:
            for members, app, port, deflate in runs:
                served = ServedApp(app, port, deflate=deflate).start()
                label = server_deflate_label(deflate)
                try:
                    for mode, load in modes:
                        bar.clear()  # the bar is redrawn below each block of lines
                        self.stdout.write(
                            f"\n== {app} · {members:,} members · {mode} · server deflate {label} · pid {served.pid}"
                        )
                        bar.set_description(f"compare: {app} · {members:,} members · {mode} · deflate {label}")
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
                            deflate=client_deflate,
                            messages=o["messages"],
                        )
                        result = {
                            "scenario": "compare",
                            "app": app,
                            "mode": mode,
                            "server_deflate": label,
                            "client_deflate": client_deflate,
                            **result,
                        }
                        result["at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                        bar.clear()
                        self.print_result(result)
                        results.append(result)
                        bar.update()
                finally:
                    served.stop()
        self.stdout.write("\n" + self.table(results))
        self.print_ratios(results)
        self.print_deflate_ratios(results)
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
        sockets = chat.get("connected", chat.get("opened", chat.get("clients")))
        if "deflate_sockets" in chat and sockets is not None:
            offered = "offered by every client" if result.get("client_deflate", True) else "not offered"
            self.stdout.write(
                f"  permessage-deflate negotiated on {chat['deflate_sockets']:,} of {sockets:,} sockets ({offered})"
            )
        for key, value in result.items():
            if isinstance(value, dict) and key == "chat":
                self.stdout.write("  chat meanwhile:")
                for k, v in value.items():
                    self.stdout.write(f"    {k}: {v}")
            else:
                self.stdout.write(f"  {key}: {value}")

    @staticmethod
    def phase_table(phases: list[dict[str, Any]]) -> str:
        """changes: one row per operation, the CPU ratio to a send in the last column."""
        columns = (
            ("operation", "operation", "{}"),
            ("done", "operations", "{:,}"),
            ("errors", "errors", "{}"),
            ("deliveries", "deliveries", "{:,}"),
            ("answer p50 ms", "answer_p50_ms", "{:.1f}"),
            ("answer p99 ms", "answer_p99_ms", "{:.1f}"),
            ("server µs CPU/op", "server_cpu_us_per_operation", "{:,}"),
            ("server µs CPU/delivery", "server_cpu_us_per_delivery", "{:.1f}"),
            ("machine µs CPU/op", "machine_cpu_us_per_operation", "{:,}"),
            ("load", "loadavg_at_start", "{:.2f}"),
        )
        send = next((p for p in phases if p["operation"] == "send"), {})
        lines = ["| " + " | ".join(title for title, _, _ in columns) + " | server CPU vs send |"]
        lines.append("|" + "|".join("---" for _ in range(len(columns) + 1)) + "|")
        for phase in phases:
            cells = ["—" if phase.get(key) is None else fmt.format(phase[key]) for _, key, fmt in columns]
            ours, base = phase.get("server_cpu_us_per_operation"), send.get("server_cpu_us_per_operation")
            cells.append(f"{ours / base:.2f}x" if ours and base else "—")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

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
        by = {(r["app"], r["members"], r["mode"], r.get("server_deflate", "default")): r for r in results}
        for (app, members, mode, deflate), r in sorted(by.items()):
            base = by.get(("baseline", members, mode, deflate))
            if app != "chattalk" or base is None:
                continue
            ours, theirs = r.get("deliveries_per_server_cpu_second"), base.get("deliveries_per_server_cpu_second")
            if ours and theirs:
                self.stdout.write(
                    f"{members:,} members, {mode}, server deflate {deflate}: "
                    f"ChatTalk delivers {ours / theirs:.1f}x the baseline per CPU second"
                )

    def print_deflate_ratios(self, results: list[dict[str, Any]]) -> None:
        """Server deflate on against off for the same scenario, app, room and load: what accepting costs."""

        def same_run(r: dict[str, Any]) -> tuple[Any, ...]:
            return (r.get("scenario"), r.get("app"), r.get("members", r.get("sockets")), r.get("mode"))

        offs = {same_run(r): r for r in results if r.get("server_deflate") == "off"}
        for on in results:
            off = offs.get(same_run(on))
            if on.get("server_deflate") != "on" or off is None:
                continue
            parts = []
            cpu_on, cpu_off = on.get("server_cpu_us_per_delivery"), off.get("server_cpu_us_per_delivery")
            if cpu_on and cpu_off:
                parts.append(f"{cpu_on / cpu_off:.2f}x the CPU per delivery ({cpu_on} against {cpu_off} µs)")
            for key, what in (
                ("kib_per_socket_connected", "KiB per socket idle"),
                ("kib_per_socket_after_traffic", "KiB per socket after traffic"),
                ("kib_per_idle_socket", "KiB per idle socket"),
                ("server_cpu_idle_percent_of_core", "idle CPU in % of a core"),
            ):
                if on.get(key) is not None and off.get(key) is not None:
                    parts.append(f"{what} {on[key]} against {off[key]}")
            if parts:
                where = " · ".join(f"{p:,}" if isinstance(p, int) else str(p) for p in same_run(on) if p is not None)
                self.stdout.write(f"{where}: server deflate on against off: " + "; ".join(parts))


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
    for app, deflate in sorted({(r["app"], r.get("server_deflate", "default")) for r in results}):
        label = app if deflate == "default" else f"{app}, server deflate {deflate}"
        for axis, mode, key, _ in panels:
            rows = sorted(
                (
                    r
                    for r in results
                    if r["mode"] == mode and (r["app"], r.get("server_deflate", "default")) == (app, deflate)
                ),
                key=lambda r: r["members"],
            )
            axis.plot([r["members"] for r in rows], [r.get(key) or 0 for r in rows], marker="o", label=label)
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
