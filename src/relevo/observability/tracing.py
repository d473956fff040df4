"""OpenTelemetry tracing: a span per request and per stage (retrieve, features, bandit,
log) and per stream batch. Off by default (a no-op tracer: about a microsecond a span);
``RELEVO_TRACING__OTLP_ENDPOINT=http://collector:4318/v1/traces`` exports over OTLP/HTTP.
Spans carry counts, tiers and policies, never user or item ids.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased


def make_tracer(endpoint: str = "", *, service_name: str = "relevo", sample_ratio: float = 1.0,
                exporter: SpanExporter | None = None) -> tuple[trace.Tracer, TracerProvider | None]:
    """A tracer of the engine's own provider (not the process-global one, so two engines
    in one process do not fight over it), or a no-op tracer when nothing exports."""
    if exporter is None and not endpoint:
        return trace.NoOpTracer(), None
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                              sampler=TraceIdRatioBased(sample_ratio))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider.get_tracer("relevo"), provider
