"""Metrics (Prometheus), logs and the figures the demo and benchmarks print."""
