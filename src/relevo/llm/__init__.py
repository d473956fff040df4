"""LLM reasoning at the origin: a gateway over interchangeable backends (OpenAI-compatible
HTTP, in-process llama.cpp), a deterministic reasoner that is both the fallback and the
baseline, a groundedness checker, and the uses (explanations, natural-language cold
start, re-ranking). Nothing here can fail a request: every path ends in the deterministic
answer with a reason code."""
