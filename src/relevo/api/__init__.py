"""The HTTP API (FastAPI): parse, call the Engine, render with orjson."""
