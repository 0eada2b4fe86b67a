"""Where the hub's traces go: an OTLP/HTTP endpoint (an OpenTelemetry Collector, Jaeger,
Tempo, a vendor's), and the headers it wants, given as secrets."""

from __future__ import annotations

from pydantic import AnyHttpUrl, Field

from derms_bridge.settings.common import Secret, Strict


class OtlpHeader(Strict):
    """One header sent with every export, e.g. an API key (`value_file` reads it from a
    file, as for any secret)."""

    value: Secret


class Tracing(Strict):
    """Traces exported over OTLP/HTTP; without this block the hub exports nothing."""

    endpoint: AnyHttpUrl = Field(
        description="the OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces"
    )
    service_name: str = Field(
        "derms-bridge", min_length=1, max_length=100, description="service.name of every span"
    )
    headers: dict[str, OtlpHeader] = Field(
        default_factory=dict,
        description="header name to {value: ...} (or {value_file: ...}), sent with each export",
    )
    timeout: float = Field(10.0, gt=0, le=60, description="seconds an export may take")
    sample_ratio: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of the hub's own traces exported (a caller's sampled flag decides"
        " for the traces it starts)",
    )
    batch_delay_seconds: float = Field(
        5.0, gt=0, le=60, description="spans wait at most this long to go out in one export"
    )
    max_queued_spans: int = Field(
        2048,
        ge=512,
        le=1_000_000,
        description="finished spans that may wait for an export; any more are dropped and"
        " counted in derms_bridge_spans_dropped",
    )
