"""Encoders (content -> vector) and streaming vector updates."""
