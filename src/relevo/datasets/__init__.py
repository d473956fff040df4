"""Loaders for public datasets (read from a folder the caller names) and a generator for a
synthetic catalog with simulated users."""
