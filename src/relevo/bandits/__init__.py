"""Exploration policies. Pure numpy: arrays in, arrays out."""
