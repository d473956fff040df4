"""User context: session state, long-term profile counters, stated preferences."""
