"""OpenTelemetry covers the client call, the workflow and every activity, and the decision trace
carries the OpenTelemetry trace ID, so a recorded decision leads to its spans."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demo.examples import example
from gates.cases import CaseKind
from tests.case_helpers import start_case, trace_row
from tests.helpers import new_worker
from workers.config import Settings
from workers.telemetry import configure_tracing


def _install_in_memory_provider() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # first test in the process to need one
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_case_spans_cover_client_workflow_and_activities_and_the_trace_records_their_id(temporal_env, world_pool):
    exporter = _install_in_memory_provider()
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=False), worker.task_queue)
        await handle.result()
    names = {span.name for span in exporter.get_finished_spans()}
    for expected in (
        "StartWorkflow:ProcurementThresholdBreach",
        "RunWorkflow:ProcurementThresholdBreach",
        "RunActivity:open_case_and_gather",  # the sources, asked with the opening read
        "RunActivity:read_precedents_and_gate",  # the first round reads its precedents with its gate
        "RunActivity:record_decision",
    ):
        assert expected in names, f"no {expected} span among {sorted(names)}"
    record_span = next(s for s in exporter.get_finished_spans() if s.name == "RunActivity:record_decision")
    row = await trace_row(world_pool, handle)
    assert row["otel_trace_id"] == format(record_span.context.trace_id, "032x")


def test_tracing_is_off_by_default_and_console_or_otlp_by_configuration(monkeypatch):
    assert Settings(_env_file=None).otel_exporter == "none"
    monkeypatch.setenv("HITL_OTEL_EXPORTER", "console")
    assert Settings().otel_exporter == "console"
    configure_tracing(Settings(_env_file=None, otel_exporter="none"), "hitl-test")  # a no-op, must not raise
