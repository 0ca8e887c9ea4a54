"""W3C trace context parsing and bounds, and when tracing switches on.

The truth is the W3C Trace Context Level 1 Recommendation (https://www.w3.org/TR/trace-context/):
its examples of valid and invalid `traceparent` values (section 3.2) and the tracestate
limits (section 3.3.1.5).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler

from gateway.settings import TracingSettings
from gateway.telemetry import tracing
from tests.unit.gateway.gateway_fakes import make_store

# The specification's own example (section 3.2.2.5 / appendix).
SPEC = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def test_the_specs_example_parses_into_its_fields() -> None:
    assert tracing.parse_traceparent(SPEC) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "01",
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case (3.2.2)
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # 31 hex digits
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  # 15 hex digits
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff (3.2.2.1)
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 has 4 fields
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "garbage",
    ],
)
def test_malformed_traceparents_are_refused(value: str) -> None:
    assert tracing.parse_traceparent(value) is None


def test_a_later_version_is_read_as_version_00_and_sent_on_as_00() -> None:
    future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"
    trace = tracing.incoming(future, None)
    assert trace.traceparent == SPEC  # section 3.2.4: the first four fields, as version 00


def test_a_valid_traceparent_is_forwarded_unchanged_with_its_tracestate() -> None:
    trace = tracing.incoming(SPEC, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    assert trace.remote and trace.span is None
    assert trace.outgoing == (
        ("traceparent", SPEC),
        ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    )


def test_no_traceparent_starts_a_new_unsampled_trace() -> None:
    first, second = tracing.incoming(None, "rojo=1"), tracing.incoming(None, None)
    assert TRACEPARENT.fullmatch(first.traceparent) and first.traceparent.endswith("-00")
    assert tracing.parse_traceparent(first.traceparent) is not None
    assert first.traceparent[3:35] != second.traceparent[3:35]  # a new trace each time
    assert not first.remote
    assert first.outgoing == (("traceparent", first.traceparent),)  # no tracestate alone


@pytest.mark.parametrize("bad", ["00-xyz", SPEC.upper(), "\x00" * 55, SPEC + "-"])
def test_a_malformed_traceparent_starts_a_new_trace_and_drops_the_tracestate(bad: str) -> None:
    trace = tracing.incoming(bad, "rojo=00f067aa0ba902b7")
    assert TRACEPARENT.fullmatch(trace.traceparent)
    assert trace.traceparent[3:35] not in bad.lower()
    assert trace.tracestate is None and len(trace.outgoing) == 1


def test_a_small_tracestate_passes_as_it_came() -> None:
    value = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"
    assert tracing.bounded_tracestate(value) == value


def test_a_tracestate_over_512_characters_loses_long_members_first() -> None:
    long = "big=" + "x" * 200  # over 128 characters: removed first (3.3.1.5)
    short = [f"k{i}=" + "v" * 20 for i in range(20)]  # 20 x 24 characters
    value = ",".join([short[0], long, *short[1:]])
    bounded = tracing.bounded_tracestate(value)
    assert bounded is not None and len(bounded) <= tracing.MAX_TRACESTATE_CHARS
    assert "big=" not in bounded
    assert bounded == ",".join(short)  # 20 x 24 + 19 commas = 499: all the short ones stay


def test_a_tracestate_still_too_long_loses_members_from_its_end() -> None:
    members = [f"k{i:02d}=" + "v" * 60 for i in range(10)]  # 64 characters each
    bounded = tracing.bounded_tracestate(",".join(members))
    assert bounded == ",".join(members[:7])  # 7 x 64 + 6 = 454; 8 would be 519


def test_a_tracestate_keeps_at_most_32_members() -> None:
    members = [f"k{i}=v" for i in range(40)]
    bounded = tracing.bounded_tracestate(",".join(members))
    assert bounded == ",".join(members[:32])


@pytest.mark.parametrize("value", ["rojo=\x01", "rojo=caf\u00e9", "a=b\r\nx-evil: 1"])
def test_a_tracestate_outside_printable_ascii_is_dropped(value: str) -> None:
    assert tracing.bounded_tracestate(value) is None
    assert tracing.incoming(SPEC, value).outgoing == (("traceparent", SPEC),)


@pytest.mark.parametrize(
    ("settings", "environ", "on"),
    [
        ({}, {}, False),  # off by default
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"endpoint": "http://c:4318"}, {}, True),
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"}, False),
        ({"enabled": True}, {"OTEL_SDK_DISABLED": "TRUE"}, False),  # the SDK's switch wins
        ({"enabled": False}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"enabled": True}, {}, True),
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_when_tracing_is_on(settings: dict[str, object], environ: dict[str, str], on: bool) -> None:
    assert tracing.wanted(TracingSettings(**settings), environ) is on  # type: ignore[arg-type]


def test_configure_off_leaves_no_tracer_and_an_unknown_protocol_is_named() -> None:
    assert not tracing.configure(TracingSettings(), {})
    assert tracing.TRACER is None
    wrong = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    with pytest.raises(ValueError, match="http/json"):
        tracing.configure(TracingSettings(), wrong)
    assert tracing.TRACER is None


def test_configure_on_makes_a_tracer_named_by_the_service_and_shutdown_ends_it() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    try:
        assert tracing.configure(TracingSettings(), env)
        resource = tracing._PROVIDER.resource.attributes
        assert resource["service.name"] == tracing.SERVICE_NAME == "dualserve-gateway"
        assert tracing.TRACER is not None
    finally:
        tracing.shutdown()
    assert tracing.TRACER is None


def test_the_gateway_imports_no_tracing_sdk_while_tracing_is_off(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    code = (
        "import sys, gateway.app\n"
        "from gateway.settings import GatewaySettings\n"
        f"settings = GatewaySettings(model_store={str(store)!r}, catalog_poll_s=0,"
        " tensorflow={'rest': ['http://127.0.0.1:9']}, pytorch={'rest': ['http://127.0.0.1:9']})\n"
        "gateway.app.create_app(settings)\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk',"
        " 'opentelemetry.exporter'))]\n"
        "assert not loaded, loaded\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "."}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    ("sampler", "flags"),
    [(ALWAYS_OFF, "01"), (ParentBased(ALWAYS_ON), "00")],  # never; the client's "not sampled"
)
def test_an_unsampled_server_span_has_no_children_and_passes_its_context_on(
    monkeypatch: pytest.MonkeyPatch, sampler: Sampler, flags: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "TRACER", provider.get_tracer("test"))
    trace = tracing.incoming(SPEC[:-2] + flags, "rojo=1")
    tracing.start_server(trace, "ingress", {})
    assert trace.span is None  # the router and the wires make no span for it
    parsed = tracing.parse_traceparent(trace.traceparent)
    assert parsed is not None
    trace_id, parent_id, sampled = parsed
    assert (trace_id, sampled) == (SPEC[3:35], "00") and parent_id != SPEC[36:52]
    assert trace.outgoing == (("traceparent", trace.traceparent), ("tracestate", "rojo=1"))
    tracing.end(trace.span)  # nothing to end: no error
    provider.shutdown()
    assert exporter.get_finished_spans() == ()
