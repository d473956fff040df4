"""Vector retrieval: an in-process HNSW index and the exact brute-force oracle."""
