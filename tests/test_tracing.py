"""Tracing: a span per request with a child per stage, a span per stream batch; no ids in
span attributes; a no-op tracer when nothing is configured."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relevo.engine import Engine
from relevo.records import Event, Item
from relevo.settings import Settings, TracingSettings
from relevo.tiers.streaming import RecommendRequest


def test_spans_per_request_stage_and_batch(tmp_path, encoder):
    exporter = InMemorySpanExporter()
    settings = Settings(home=tmp_path / "t", tracing=TracingSettings(sample_ratio=1.0))
    engine = Engine(settings, encoder=encoder, span_exporter=exporter).open()
    try:
        engine.add_items([Item(id=f"i{k}", title=f"A quiet drama number {k}") for k in range(20)])
        engine.ingest([Event(user_id="secret-user", item_id="i1", type="purchase")])
        assert engine.wait_idle(10)
        engine.recommend(RecommendRequest("secret-user", 3, tier="streaming"))
    finally:
        engine.close()  # flushes the batch processor
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    assert {"recommend", "retrieve", "features", "bandit", "log", "stream_batch"} <= set(by_name)
    root = by_name["recommend"]
    for stage in ("retrieve", "features", "bandit", "log"):
        child = by_name[stage]
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time + 1_000_000
    assert root.attributes["relevo.tier"] == "streaming" and root.attributes["relevo.items"] == 3
    assert by_name["stream_batch"].attributes["relevo.applied"] == 1
    for span in spans:
        assert "secret-user" not in str(dict(span.attributes or {}))


def test_no_exporter_no_tracer(tmp_path, encoder):
    engine = Engine(Settings(home=tmp_path / "n"), encoder=encoder)
    assert isinstance(engine.tracer, trace.NoOpTracer)
