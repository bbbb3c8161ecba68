from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Seeding and benchmarks: management commands only (no models, no URLs), so installing it anywhere is
    harmless. It may import any app; no product app imports it."""

    name = "bench"
    verbose_name = "Benchmarks and load data"
