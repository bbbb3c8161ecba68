from django.apps import AppConfig


class BenchConfig(AppConfig):
    """No models, URLs or signals: installed everywhere, it only adds its management commands."""

    name = "bench"
    verbose_name = "Benchmarks and load data"
