"""relevo: real-time, AI-native personalization.

The public entry point is :class:`relevo.engine.Engine`; the HTTP API, the CLI, the tests
and the benchmarks all drive the same facade.
"""

__version__ = "0.1.0"
