"""The bytes the hub posts to a collector are the ExportTraceServiceRequest that
opentelemetry-proto reads: every field of every span the hub makes, as a collector
decodes it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from derms_bridge.otlp_protobuf import (
    HAS_IS_REMOTE,
    IS_REMOTE,
    KNOWN_BLOCKS_PER_SHAPE,
    KNOWN_SHAPES,
    AttributeValue,
    ExportRequest,
)

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
RESOURCE = {"service.name": "derms-bridge", "service.instance.id": "host-1234-abcd"}
#: As the hub names them: each value is one span's own.
ONE_OFF = ("derms_bridge.instance_id", "derms_bridge.resubmit_of")


@dataclass(frozen=True)
class Link:
    trace_id: int
    span_id: int
    is_remote: bool


@dataclass(frozen=True)
class Span:
    name: str = "POST /enroll-to-dacs"
    trace_id: int = TRACE_ID
    span_id: int = SPAN_ID
    parent_span_id: int | None = None
    parent_is_remote: bool = False
    trace_state: str = ""
    kind: int = 2
    start_unix_nano: int = 1_764_871_200_123_456_789
    end_unix_nano: int = 1_764_871_200_125_000_001
    attributes: Mapping[str, AttributeValue | None] = field(default_factory=dict)
    links: Sequence[Link] = ()
    status_code: int = 0
    status_message: str = ""


def decoded(*spans: Span, one_off: Sequence[str] = ()) -> ExportTraceServiceRequest:
    body = ExportRequest(RESOURCE, scope="derms_bridge", one_off=one_off).encode(spans)
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    # Written in field order, as protobuf writes it: a parser that is strict about it
    # (or a proxy that compares) reads the same.
    assert request.SerializeToString() == body
    return request


def value_of(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes_of(request: ExportTraceServiceRequest) -> list[list[tuple[str, object]]]:
    """Each span's attributes, in their order."""
    return [
        [(kv.key, value_of(kv.value)) for kv in span.attributes]
        for span in request.resource_spans[0].scope_spans[0].spans
    ]


def test_the_resource_and_scope_hold_the_process_and_every_span_of_the_batch() -> None:
    request = decoded(Span(name="one"), Span(name="two"), Span(name="three"))

    (resource_spans,) = request.resource_spans
    assert {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes} == RESOURCE
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "derms_bridge"
    assert [span.name for span in scope_spans.spans] == ["one", "two", "three"]


def test_a_root_span_has_its_ids_times_kind_and_no_parent() -> None:
    (span,) = decoded(Span()).resource_spans[0].scope_spans[0].spans

    assert span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.span_id.hex() == "00f067aa0ba902b7"
    assert span.parent_span_id == b""
    assert span.kind == ProtoSpan.SPAN_KIND_SERVER
    assert span.start_time_unix_nano == 1_764_871_200_123_456_789
    assert span.end_time_unix_nano == 1_764_871_200_125_000_001
    assert span.flags == HAS_IS_REMOTE
    assert span.trace_state == ""
    assert span.status.code == 0 and span.status.message == ""
    assert not span.events


def test_a_child_of_a_callers_span_names_its_parent_as_remote_and_keeps_its_tracestate() -> None:
    (span,) = (
        decoded(
            Span(
                parent_span_id=0xB7AD6B7169203331,
                parent_is_remote=True,
                trace_state="vendor=t61rcWkgMzE,other=1",
                kind=3,
            )
        )
        .resource_spans[0]
        .scope_spans[0]
        .spans
    )

    assert span.parent_span_id.hex() == "b7ad6b7169203331"
    assert span.flags == HAS_IS_REMOTE | IS_REMOTE
    assert span.trace_state == "vendor=t61rcWkgMzE,other=1"
    assert span.kind == ProtoSpan.SPAN_KIND_CLIENT


@pytest.mark.parametrize(
    "value",
    [
        "enrollment_request",
        "",
        "naïve ✓ 日本",
        True,
        False,
        0,
        200,
        2**63 - 1,
        -1,
        -(2**63),
        0.25,
        -1e300,
    ],
)
def test_every_kind_of_attribute_value_reads_back_as_written(value: AttributeValue) -> None:
    (span,) = decoded(Span(attributes={"a.key": value})).resource_spans[0].scope_spans[0].spans

    (attribute,) = span.attributes
    assert attribute.key == "a.key"
    read = value_of(attribute.value)
    assert read == value and type(read) is type(value)


def test_attributes_keep_their_order_and_names_their_values() -> None:
    attributes: dict[str, AttributeValue] = {
        "http.request.method": "POST",
        "url.path": "/enroll-to-dacs",
        "http.response.status_code": 422,
        "error.type": "BusinessError",
    }
    (span,) = decoded(Span(attributes=attributes)).resource_spans[0].scope_spans[0].spans

    assert [(kv.key, value_of(kv.value)) for kv in span.attributes] == list(attributes.items())


def test_a_link_names_the_span_it_leads_to() -> None:
    links = [Link(TRACE_ID - 1, SPAN_ID + 1, is_remote=True), Link(7, 9, is_remote=False)]
    (span,) = decoded(Span(links=links)).resource_spans[0].scope_spans[0].spans

    assert [(link.trace_id.hex(), link.span_id.hex(), link.flags) for link in span.links] == [
        (f"{TRACE_ID - 1:032x}", f"{SPAN_ID + 1:016x}", HAS_IS_REMOTE | IS_REMOTE),
        (f"{7:032x}", f"{9:016x}", HAS_IS_REMOTE),
    ]


def test_a_failed_span_has_the_error_status_and_its_description() -> None:
    (span,) = (
        decoded(Span(status_code=2, status_message="TechnicalFault"))
        .resource_spans[0]
        .scope_spans[0]
        .spans
    )

    assert span.status.code == 2
    assert span.status.message == "TechnicalFault"


def test_a_long_name_and_many_spans_need_lengths_of_several_bytes() -> None:
    name = "segment " + "9" * 300
    spans = [Span(name=name, span_id=index + 1) for index in range(600)]

    read = decoded(*spans).resource_spans[0].scope_spans[0].spans

    assert len(read) == 600
    assert {span.name for span in read} == {name}
    assert [int.from_bytes(span.span_id, "big") for span in read] == list(range(1, 601))


def test_an_attribute_whose_value_is_none_is_left_out() -> None:
    (span,) = (
        decoded(Span(attributes={"a.key": "kept", "b.key": None, "c.key": 3}))
        .resource_spans[0]
        .scope_spans[0]
        .spans
    )

    assert [(kv.key, value_of(kv.value)) for kv in span.attributes] == [
        ("a.key", "kept"),
        ("c.key", 3),
    ]


def test_equal_values_of_one_attribute_keep_their_own_types_span_after_span() -> None:
    values: list[AttributeValue] = [True, 1, 1.0, 0, False, 0.0, 1, True]
    spans = [Span(attributes={"a.key": value}) for value in values]

    read = decoded(*spans).resource_spans[0].scope_spans[0].spans

    read_values = [value_of(span.attributes[0].value) for span in read]
    assert [(type(value), value) for value in read_values] == [
        (type(value), value) for value in values
    ]


def test_zero_and_negative_zero_of_one_attribute_keep_their_signs() -> None:
    values: list[AttributeValue] = [0.0, -0.0, 0.0, -0.0]
    spans = [Span(attributes={"a.key": value}) for value in values]

    read = decoded(*spans).resource_spans[0].scope_spans[0].spans

    signs = [math.copysign(1.0, span.attributes[0].value.double_value) for span in read]
    assert signs == [1.0, -1.0, 1.0, -1.0]


def test_one_span_name_keeps_each_spans_own_kind() -> None:
    read = decoded(Span(name="step", kind=1), Span(name="step", kind=3), Span(name="step", kind=1))

    spans = read.resource_spans[0].scope_spans[0].spans
    assert [(span.name, span.kind) for span in spans] == [("step", 1), ("step", 3), ("step", 1)]


def test_a_long_attribute_value_needs_lengths_of_several_bytes() -> None:
    value = "v" * 300
    (span,) = decoded(Span(attributes={"a.key": value})).resource_spans[0].scope_spans[0].spans

    assert [(kv.key, value_of(kv.value)) for kv in span.attributes] == [("a.key", value)]


def test_spans_of_the_same_attributes_keep_each_its_own_id_in_its_place() -> None:
    spans = [
        Span(
            attributes={
                "http.request.method": "POST",
                "url.path": "/device-status",
                "derms_bridge.instance_id": f"01JF{index:022d}",
                "derms_bridge.flow": "device_status",
                "derms_bridge.resubmit_of": None,
                "http.response.status_code": 200,
            }
        )
        for index in range(3)
    ]

    read = attributes_of(decoded(*spans, one_off=ONE_OFF))

    assert read == [
        [
            ("http.request.method", "POST"),
            ("url.path", "/device-status"),
            ("derms_bridge.instance_id", f"01JF{index:022d}"),
            ("derms_bridge.flow", "device_status"),
            ("http.response.status_code", 200),
        ]
        for index in range(3)
    ]


@pytest.mark.parametrize("value", ["", "naïve ✓ 日本", "v" * 300, 7, True, 0.5])
def test_a_one_off_value_of_any_kind_reads_back_as_written(value: AttributeValue) -> None:
    spans = [
        Span(
            attributes={
                "http.request.method": "POST",
                "derms_bridge.instance_id": value,
                "derms_bridge.resubmit_of": resubmitted,
                "derms_bridge.flow": "device_status",
            }
        )
        for resubmitted in ("01JFRESUBMITTED", None, value)
    ]

    read = attributes_of(decoded(*spans, one_off=ONE_OFF))

    assert [[type(value) for _, value in attributes] for attributes in read] == [
        [str, type(value), str, str],
        [str, type(value), str],
        [str, type(value), type(value), str],
    ]
    assert read == [
        [
            ("http.request.method", "POST"),
            ("derms_bridge.instance_id", value),
            ("derms_bridge.resubmit_of", "01JFRESUBMITTED"),
            ("derms_bridge.flow", "device_status"),
        ],
        [
            ("http.request.method", "POST"),
            ("derms_bridge.instance_id", value),
            ("derms_bridge.flow", "device_status"),
        ],
        [
            ("http.request.method", "POST"),
            ("derms_bridge.instance_id", value),
            ("derms_bridge.resubmit_of", value),
            ("derms_bridge.flow", "device_status"),
        ],
    ]


def block_of(value: AttributeValue, index: int) -> dict[str, AttributeValue | None]:
    """Attributes that are the same span after span but for `value` and an instance's id."""
    return {
        "http.request.method": "POST",
        "a.key": value,
        "derms_bridge.instance_id": f"01JF{index:022d}",
        "derms_bridge.status": "succeeded",
    }


def test_equal_values_among_other_attributes_keep_their_own_types_span_after_span() -> None:
    values: list[AttributeValue] = [True, 1, 1.0, 0, False, 0.0, 1, True, 200, 200.0, 200]
    spans = [Span(attributes=block_of(value, index)) for index, value in enumerate(values)]

    read = decoded(*spans, one_off=ONE_OFF).resource_spans[0].scope_spans[0].spans

    read_values = [value_of(span.attributes[1].value) for span in read]
    assert [(type(value), value) for value in read_values] == [
        (type(value), value) for value in values
    ]


def test_zero_and_negative_zero_among_other_attributes_keep_their_signs() -> None:
    values: list[AttributeValue] = [0.0, -0.0, 0.0, -0.0]
    spans = [Span(attributes=block_of(value, index)) for index, value in enumerate(values)]

    read = decoded(*spans, one_off=ONE_OFF).resource_spans[0].scope_spans[0].spans

    signs = [math.copysign(1.0, span.attributes[1].value.double_value) for span in read]
    assert signs == [1.0, -1.0, 1.0, -1.0]


def test_nan_among_other_attributes_reads_back_as_nan_with_its_sign_span_after_span() -> None:
    nan = float("nan")
    values = [nan, -nan, float("nan"), -nan] * 50
    spans = [Span(attributes=block_of(value, index)) for index, value in enumerate(values)]

    read = decoded(*spans, one_off=ONE_OFF).resource_spans[0].scope_spans[0].spans

    read_values = [span.attributes[1].value.double_value for span in read]
    assert all(map(math.isnan, read_values))
    assert [math.copysign(1.0, value) for value in read_values] == [1.0, -1.0, 1.0, -1.0] * 50


def test_more_blocks_and_sets_of_names_than_are_remembered_read_back_as_written() -> None:
    attributes: list[dict[str, AttributeValue | None]] = [
        block_of(f"status {index}", index) for index in range(KNOWN_BLOCKS_PER_SHAPE + 10)
    ]
    attributes += [
        {"http.request.method": "GET", f"a.key.{index}": index, "derms_bridge.instance_id": "i"}
        for index in range(KNOWN_SHAPES + 10)
    ]
    attributes += [block_of("status 0", 0), block_of("after", 1)]

    read = attributes_of(decoded(*[Span(attributes=each) for each in attributes], one_off=ONE_OFF))

    assert read == [list(each.items()) for each in attributes]
