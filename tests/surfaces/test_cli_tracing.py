"""`turnout serve` and `turnout worker` export traces with OTLP when asked (`--otlp`, or the
standard OTLP environment): without the tracing extra installed, `--otlp` is refused with
the command that installs it, and the environment alone only warns. In process."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from engine import Engine
from engine.cli import app
from engine.cli.work import exporting_traces
from engine.tracing import EXPORTER_MODULE, otlp_provider

INSTALL = "pip install 'turnout[tracing]'"


@pytest.fixture
def without_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the tracing extra were not installed (whether it is or not): the exporter's
    module cannot be imported."""
    monkeypatch.setitem(sys.modules, EXPORTER_MODULE, None)


@pytest.fixture
def without_otlp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_otlp_without_the_exporter_names_the_extra_to_install(
    command: str, tmp_path: Path, without_otlp_environment: None, without_exporter: None
) -> None:
    db = f"sqlite:///{tmp_path}/turnout.db"
    result = CliRunner().invoke(app, [command, "--otlp", "http://127.0.0.1:4318", "--db", db])
    assert result.exit_code == 2, result.output
    assert INSTALL in result.output and "Traceback" not in result.output


def test_otlp_must_be_an_http_url(tmp_path: Path, without_otlp_environment: None) -> None:
    db = f"sqlite:///{tmp_path}/turnout.db"
    result = CliRunner().invoke(app, ["worker", "--otlp", "collector:4318", "--db", db])
    assert result.exit_code == 2, result.output
    assert "--otlp must be an http:// or https:// URL" in result.output


def test_the_otlp_environment_without_the_exporter_only_warns(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    without_otlp_environment: None,
    without_exporter: None,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    with Engine(f"sqlite:///{tmp_path}/turnout.db") as engine:
        with exporting_traces(engine, None):
            assert engine.tracing is None
    assert INSTALL in capsys.readouterr().err


class FakeExporter(InMemorySpanExporter):
    """Stands in for the OTLP exporter the tracing extra installs: keeps what it is sent."""

    made: list[FakeExporter] = []

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint
        FakeExporter.made.append(self)

    def export(self, spans: Any) -> SpanExportResult:
        return super().export(spans)


def test_the_otlp_provider_batches_spans_to_the_collectors_traces_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_otlp_environment: None
) -> None:
    module = types.ModuleType(EXPORTER_MODULE)
    module.OTLPSpanExporter = FakeExporter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, EXPORTER_MODULE, module)
    FakeExporter.made.clear()
    provider = otlp_provider("http://collector:4318/")
    (exporter,) = FakeExporter.made
    assert exporter.endpoint == "http://collector:4318/v1/traces"
    assert provider.resource.attributes["service.name"] == "turnout"
    with Engine(f"sqlite:///{tmp_path}/turnout.db", tracer_provider=provider) as engine:
        engine.deploy(
            "name: tiny\ninitial: open\nstates:\n  open: {on: {close: closed}}\n"
            "  closed: {final: true}\n"
        )
        instance = engine.start("tiny", {})
        engine.send(instance.id, "close")
    provider.shutdown()  # what the commands do on their way out: the batch is sent
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == [
        "turnout.event close",
        "turnout.instance tiny",
        "turnout.transition open -> closed",
    ]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://elsewhere:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders")
    from_environment = otlp_provider("")
    assert FakeExporter.made[-1].endpoint is None  # the exporter reads the environment
    assert from_environment.resource.attributes["service.name"] == "orders"
    from_environment.shutdown()
