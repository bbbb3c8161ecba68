"""Load data, benchmarks and the Channels-tutorial baseline they compare against; management commands only.

It may import any app; no product app imports it, so the product runs and tests without it.
"""
