"""Where the bench code lives: its commands in the bench app, and no product app importing any of it."""

from __future__ import annotations

import ast
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.management import get_commands


def imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_seeding_and_benchmark_commands_belong_to_the_bench_app() -> None:
    commands = get_commands()
    assert {name: commands[name] for name in ("seed_load", "chat_bench", "bench_relay")} == {
        "seed_load": "bench",
        "chat_bench": "bench",
        "bench_relay": "bench",
    }


def test_no_product_app_imports_bench() -> None:
    base = Path(settings.BASE_DIR).resolve()
    product = [
        Path(config.path)
        for config in apps.get_app_configs()
        if config.label != "bench" and Path(config.path).resolve().is_relative_to(base)
    ]
    assert {path.name for path in product} >= {"accounts", "rooms", "messaging", "presence", "events"}
    offenders = sorted(
        f"{source.relative_to(base)}: {module}"
        for app in product
        for source in app.rglob("*.py")
        for module in imported_modules(source)
        if module == "bench" or module.startswith("bench.") or ".benchmark" in module
    )
    assert offenders == []
