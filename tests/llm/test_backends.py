"""The real paths: llama.cpp in process on the packaged GGUF, llama-cpp-python's
OpenAI-compatible server on loopback, a slow server, a server that is down, and what a
server received (no PII). Every request returns within its budget."""

from __future__ import annotations

import time

import orjson
import pytest

from relevo.cli.server import free_port
from relevo.llm.backends import LlamaCppBackend, LLMError, OpenAICompatBackend
from relevo.llm.gateway import Gateway, GatewayConfig
from relevo.llm.grounding import Checker
from relevo.records import Event, Item
from relevo.settings import LLMSettings
from relevo.deadline import Deadline
from relevo.tiers.streaming import RecommendRequest

CATALOG = [Item(id="alien", title="Alien (1979)", tags=["Horror", "Sci-Fi"]),
           Item(id="aliens", title="Aliens (1986)", tags=["Action", "Horror", "Sci-Fi"]),
           Item(id="thing", title="The Thing (1982)", tags=["Horror", "Sci-Fi"]),
           Item(id="runner", title="Blade Runner (1982)", tags=["Sci-Fi", "Thriller"]),
           Item(id="toy", title="Toy Story (1995)", tags=["Animation", "Children"]),
           Item(id="nemo", title="Finding Nemo (2003)", tags=["Animation", "Children"])]
SCHEMA = {"type": "object", "properties": {"order": {"type": "array", "items": {"type": "string",
                                                                                 "enum": ["a", "b", "c"]}}},
          "required": ["order"]}
PII = ["jane.doe@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "221 Baker Street", "Jane Doe",
       "DE89 3704 0044 0532 0130 00", "123-45-6789"]


def engine_with(make_engine, tmp_path, **llm):
    engine = make_engine(home=tmp_path / f"h{time.monotonic_ns()}", llm=LLMSettings(**llm))
    engine.add_items(CATALOG)
    engine.put_consent("ana", {"llm": True})
    engine.ingest([Event(user_id="ana", item_id="alien", type="purchase"),
                   Event(user_id="ana", item_id="runner", type="click")])
    assert engine.wait_idle(10)
    return engine


def grounded(engine, rec) -> bool:
    from relevo.tiers import reasoning

    ctx = engine.streaming.context(RecommendRequest("ana", 3))
    ev = reasoning.evidence(engine.catalog, engine.index, ctx, rec.items)
    checker = Checker((i.title for i in CATALOG), engine.catalog.tags())
    return all(checker.problems(i.item_id, i.reasons[0], ev) == [] for i in rec.items)


def test_in_process_llamacpp_is_schema_constrained(gguf):
    backend = LlamaCppBackend(gguf, n_ctx=1024)
    try:
        out = backend.complete([{"role": "user", "content": "Order a, b and c."}], max_tokens=40, timeout_s=30,
                               schema=SCHEMA)
        order = orjson.loads(out.text)["order"]  # valid JSON by grammar, whatever the model "thinks"
        assert set(order) <= {"a", "b", "c"} and out.tokens_out > 0 and out.backend == "llamacpp"
        with pytest.raises(LLMError) as late:
            backend.complete([{"role": "user", "content": "Write a long story about space."}], max_tokens=400,
                             timeout_s=0.001)  # nothing answers in 1 ms: stopped, or too late to use
        assert late.value.reason == "timeout"
    finally:
        backend.close()


def test_engine_with_in_process_llamacpp_explains_within_budget(make_engine, tmp_path, gguf):
    engine = engine_with(make_engine, tmp_path, backend="llamacpp", model_path=str(gguf), budget_ms=2500)
    started = time.perf_counter()
    rec = engine.recommend(RecommendRequest("ana", 3, explain=True, budget_ms=4000))
    elapsed = (time.perf_counter() - started) * 1000
    assert elapsed <= 4000 + 250, elapsed
    assert rec.explanation["backend"] == "llamacpp" and rec.explanation["source"] in ("llm", "mixed", "reasoner")
    assert grounded(engine, rec)  # whatever the model said, only grounded text reaches the user
    audit = engine.audit(rec.decision_id)
    assert audit["llm"]["prompt"] and audit["llm"]["use"] == "explain"
    text = engine.metrics.render().decode()
    assert 'relevo_llm_calls_total{backend="llamacpp",outcome=' in text
    tight = engine.recommend(RecommendRequest("ana", 3, explain=True, budget_ms=150, tier="origin"))
    assert tight.latency_ms <= 150 + 100 and tight.explanation["source"] in ("reasoner", "llm", "mixed")
    assert tight.explanation["reason"] in (None, "timeout", "budget", "busy", "ungrounded", "invalid_output")


def test_openai_compatible_server_answers_through_the_gateway(llama_server):
    gateway = Gateway(OpenAICompatBackend(llama_server))
    out, cached = gateway.complete("rerank", [{"role": "user", "content": "Order a, b and c."}], Deadline(30_000),
                                   max_tokens=40, schema=SCHEMA)
    assert not cached and set(orjson.loads(out.text)["order"]) <= {"a", "b", "c"} and out.tokens_in > 0
    again, cached = gateway.complete("rerank", [{"role": "user", "content": "Order a, b and c."}], Deadline(30_000),
                                     max_tokens=40, schema=SCHEMA)
    assert cached and again == out  # the response cache, keyed by the prompt's hash


def test_engine_over_the_openai_server_reranks_only_candidates(make_engine, tmp_path, llama_server):
    engine = engine_with(make_engine, tmp_path, backend="openai", base_url=llama_server, budget_ms=20_000)
    engine.put_consent("newbie", {"llm": True})
    engine.ingest([Event(user_id="newbie", item_id="thing", type="click")])
    assert engine.wait_idle(10)
    rec = engine.recommend(RecommendRequest("newbie", 4, budget_ms=30_000))  # low confidence: origin + re-rank
    decision = engine.decisions.get(rec.decision_id)
    assert rec.tier == "origin" and rec.tier_reason == "low confidence"
    assert decision.llm is not None and decision.llm["use"] == "rerank"
    assert set(decision.llm["original_order"]) == {i.item_id for i in rec.items}  # a permutation, nothing new
    explained = engine.recommend(RecommendRequest("ana", 3, explain=True, budget_ms=30_000))
    assert explained.explanation["backend"] == "openai" and grounded(engine, explained)


def test_a_server_that_is_down_costs_nothing_and_opens_the_circuit(make_engine, tmp_path):
    engine = engine_with(make_engine, tmp_path, backend="openai", base_url=f"http://127.0.0.1:{free_port()}",
                         budget_ms=100)
    reasons = []
    for _ in range(5):
        rec = engine.recommend(RecommendRequest("ana", 3, explain=True, budget_ms=150, tier="origin"))
        assert rec.latency_ms <= 150 + 100 and rec.explanation["source"] == "reasoner"
        reasons.append(rec.explanation["reason"])
    assert reasons[0] == "unavailable" and "circuit_open" in reasons[1:]


def test_a_slow_server_times_out_within_the_budget(make_engine, tmp_path, proxy):
    slow = proxy(delay_s=2.0)
    engine = engine_with(make_engine, tmp_path, backend="openai", base_url=slow.url, budget_ms=300, retries=0)
    started = time.perf_counter()
    rec = engine.recommend(RecommendRequest("ana", 3, explain=True, budget_ms=400, tier="origin"))
    assert (time.perf_counter() - started) * 1000 <= 400 + 150
    assert rec.explanation == {"source": "reasoner", "reason": "timeout", "backend": "openai"}
    assert all(i.reasons and i.reasons[0].endswith(".") for i in rec.items)


def test_nothing_redacted_reaches_the_server(make_engine, tmp_path, proxy):
    recording = proxy()
    engine = engine_with(make_engine, tmp_path, backend="openai", base_url=recording.url, budget_ms=20_000)
    engine.add_items([Item(id="leak", title="Call jane.doe@example.com or +44 20 7946 0958", tags=["Horror"])])
    engine.ingest([Event(user_id="ana", item_id="leak", type="click")])
    assert engine.wait_idle(10)
    text = ("My name is Jane Doe, I live at 221 Baker Street, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 "
            "0130 00, SSN 123-45-6789, mail jane.doe@example.com or call +44 20 7946 0958. I like sci-fi.")
    out = engine.describe_preferences("ana", text, budget_ms=20_000)
    assert out["source"] in ("llm", "reasoner")
    engine.recommend(RecommendRequest("ana", 3, explain=True, budget_ms=20_000))
    assert len(recording.received) >= 2  # the cold start and the explanation both reached the server
    sent = b"".join(recording.received).decode()
    for secret in PII:
        assert secret not in sent, secret
    assert "[EMAIL]" in sent and "[NAME]" in sent


def test_erasure_drops_the_users_cached_explanations(make_engine, tmp_path, llama_server):
    engine = engine_with(make_engine, tmp_path, backend="openai", base_url=llama_server, budget_ms=20_000)
    engine.recommend(RecommendRequest("ana", 3, explain=True, budget_ms=30_000))
    gateway = engine.llm.gateway
    assert gateway._owners.get("ana")  # the completion is filed under the user whose data it carried
    receipt = engine.erase_user("ana")
    assert receipt.cached_responses >= 1 and "ana" not in gateway._owners
    assert all(k[0] != "ana" for k in engine.llm._explained)
