"""The OTLP/HTTP request body of a batch of the hub's finished spans: the bytes of an
`ExportTraceServiceRequest` (opentelemetry-proto's trace_service.proto, OTLP 1.x, whose
field numbers are stable), written straight from the spans.

The OpenTelemetry exporter builds a protobuf message per span, per attribute and per value,
and copies each into its parent: three times the CPU of these bytes, which was most of
what exporting every trace cost a flow (bench/README.md, trace_cost.py).
tests/unit/test_otlp_protobuf.py parses what this writes with opentelemetry-proto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Protocol

#: A span's parent was remote, or not: OTLP's SpanFlags, set on every span and link.
HAS_IS_REMOTE = 0x100
IS_REMOTE = 0x200

AttributeValue = str | bool | int | float

_FIXED32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")
_UINT64 = 2**64


class LinkData(Protocol):
    """What is exported of a link: the API's SpanContext is one."""

    @property
    def trace_id(self) -> int: ...
    @property
    def span_id(self) -> int: ...
    @property
    def is_remote(self) -> bool: ...


class SpanData(Protocol):
    """What is exported of a finished span."""

    @property
    def trace_id(self) -> int: ...
    @property
    def span_id(self) -> int: ...
    #: None for a root span.
    @property
    def parent_span_id(self) -> int | None: ...
    @property
    def parent_is_remote(self) -> bool: ...
    #: The W3C tracestate it carries, as its header has it, "" for none.
    @property
    def trace_state(self) -> str: ...
    @property
    def name(self) -> str: ...
    #: OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    @property
    def kind(self) -> int: ...
    @property
    def start_unix_nano(self) -> int: ...
    @property
    def end_unix_nano(self) -> int: ...
    #: An attribute whose value is None is left out.
    @property
    def attributes(self) -> Mapping[str, AttributeValue | None]: ...
    @property
    def links(self) -> Sequence[LinkData]: ...
    #: OTLP's StatusCode: 0 unset, 1 ok, 2 error.
    @property
    def status_code(self) -> int: ...
    @property
    def status_message(self) -> str: ...


#: The varint of each number below 128, one byte: nearly every length and tag written.
_ONE_BYTE = tuple(bytes((number,)) for number in range(0x80))
#: Attribute values remembered per attribute name, at most: names, methods, paths,
#: statuses repeat; an instance id never does, and stops being remembered.
KNOWN_VALUES_PER_NAME = 64
#: Span names remembered, at most: routes, calls and steps repeat; `segment <n>` may not.
KNOWN_NAMES = 256
#: Sets of attribute names (in their order) remembered, at most, and blocks of their values
#: remembered per set: a flow's request spans and its calls' are a few blocks each (by
#: caller, by status); a segment's, with its first line, seldom repeat.
KNOWN_SHAPES = 64
KNOWN_BLOCKS_PER_SHAPE = 128


def _varint(number: int) -> bytes:
    if number < 0x80:
        return _ONE_BYTE[number]
    written = bytearray()
    while number > 0x7F:
        written.append((number & 0x7F) | 0x80)
        number >>= 7
    written.append(number)
    return bytes(written)


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    size = len(body)
    return tag + (_ONE_BYTE[size] if size < 0x80 else _varint(size)) + body


def _any_value(value: AttributeValue) -> bytes:
    # bool before int: a bool is an int to isinstance.
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value % _UINT64)
    return b"\x21" + _DOUBLE.pack(value)


def _key_value(tag: bytes, name: str, value: AttributeValue) -> bytes:
    """A KeyValue field: its lengths one byte each when they fit, as a short string's do
    (an instance id's, written for every request span)."""
    any_value = _any_value(value)
    name_bytes = name.encode()
    name_size = len(name_bytes)
    any_value_size = len(any_value)
    size = name_size + any_value_size + 4
    if size < 0x80:
        return b"".join(
            (
                tag,
                _ONE_BYTE[size],
                b"\x0a",
                _ONE_BYTE[name_size],
                name_bytes,
                b"\x12",
                _ONE_BYTE[any_value_size],
                any_value,
            )
        )
    return _field(tag, _field(b"\x0a", name_bytes) + _field(b"\x12", any_value))


#: What a block of attributes is remembered as: the places and types of its values that are
#: neither strings nor None, and its KeyValues, split where each one-off value goes.
_Block = tuple[tuple[tuple[int, type], ...], tuple[bytes, ...]]


class _KeyValues:
    """A span's attributes as KeyValue fields: each attribute's bytes remembered for the
    values that repeat, and the bytes of whole blocks of attributes that repeat together.

    `one_off` names the attributes whose every value is one span's own (an instance's
    id): written each time, never remembered, and left out of the blocks."""

    def __init__(self, tag: bytes, one_off: Iterable[str] = ()) -> None:
        self._tag = tag
        #: Each one-off attribute's KeyValue up to its value, by the length of a string
        #: value: as many as fit lengths of one byte.
        self._one_offs = {name: _one_off_heads(tag, name) for name in one_off}
        self._known: dict[str, dict[str | tuple[type, AttributeValue | bytes], bytes]] = {}
        #: By the names of the attributes, in their order.
        self._shapes: dict[tuple[str, ...], _Shape] = {}

    def encode(self, attributes: Mapping[str, AttributeValue | None]) -> bytes:
        # Nearly every span's attributes are one of a few blocks, the same names with the
        # same values but for an instance's id: one lookup for the block rather than one per
        # attribute took a request span's from about 1.7 us to 0.9 (bench/README.md,
        # 2026-12-05, lean3).
        names = tuple(attributes)
        shape = self._shapes.get(names)
        if shape is None:
            shape = self._shape(names)
        if shape is _ONE_BY_ONE:
            return self._one_by_one(attributes)
        values = shape.repeating(attributes)
        block = shape.blocks.get(values)
        if block is None:
            block = self._block(shape, attributes, values)
        typed, segments = block
        # A string equals only a string, None only None; but True, 1 and 1.0 are equal
        # keys, and not the same value.
        for place, kind in typed:
            if type(values[place]) is not kind:
                return self._one_by_one(attributes)
        one_off = shape.one_off
        if not one_off:
            return segments[0]
        if len(one_off) == 1:
            (name,) = one_off
            return b"".join((segments[0], self._one_off_value(name, attributes[name]), segments[1]))
        parts = [segments[0]]
        for name, after in zip(one_off, segments[1:], strict=True):
            parts += (self._one_off_value(name, attributes[name]), after)
        return b"".join(parts)

    def _shape(self, names: tuple[str, ...]) -> _Shape:
        repeating = [name for name in names if name not in self._one_offs]
        # A block of one attribute is one lookup already.
        shape = (
            _Shape(repeating, [name for name in names if name in self._one_offs])
            if len(repeating) > 1
            else _ONE_BY_ONE
        )
        if len(self._shapes) < KNOWN_SHAPES:
            self._shapes[names] = shape
        return shape

    def _block(
        self,
        shape: _Shape,
        attributes: Mapping[str, AttributeValue | None],
        values: tuple[AttributeValue | None, ...],
    ) -> _Block:
        """The block of `values`, remembered while there is room."""
        segments: list[bytes] = []
        pieces: list[bytes] = []
        for name, value in attributes.items():
            if name in self._one_offs:
                segments.append(b"".join(pieces))
                pieces = []
            elif value is not None:
                pieces.append(self._key_value(name, value))
        segments.append(b"".join(pieces))
        block = (
            tuple(
                (place, type(value))
                for place, value in enumerate(values)
                if value is not None and type(value) is not str
            ),
            tuple(segments),
        )
        # A block with a float is left to the attributes one by one: they tell 0.0 from
        # -0.0 (equal keys), and know a NaN (equal to no key, itself included) by its bits.
        if len(shape.blocks) < KNOWN_BLOCKS_PER_SHAPE and not any(
            isinstance(value, float) for value in values
        ):
            shape.blocks[values] = block
        return block

    def _one_by_one(self, attributes: Mapping[str, AttributeValue | None]) -> bytes:
        written = []
        for name, value in attributes.items():
            if value is None:
                continue
            written.append(
                self._one_off_value(name, value)
                if name in self._one_offs
                else self._key_value(name, value)
            )
        return b"".join(written)

    def _one_off_value(self, name: str, value: AttributeValue | None) -> bytes:
        if type(value) is str:
            heads = self._one_offs[name]
            encoded = value.encode()
            if len(encoded) < len(heads):
                return heads[len(encoded)] + encoded
        return b"" if value is None else _key_value(self._tag, name, value)

    def _key_value(self, name: str, value: AttributeValue) -> bytes:
        # A string is its own key (most values are); any other value with its type:
        # True, 1 and 1.0 are equal keys, and not the same value; a float by its bits,
        # as 0.0 and -0.0 are equal too.
        key: str | tuple[type, AttributeValue | bytes]
        if type(value) is str:
            key = value
        elif type(value) is float:
            key = (float, _DOUBLE.pack(value))
        else:
            key = (type(value), value)
        known = self._known.get(name)
        if known is None:
            known = self._known[name] = {}
        found = known.get(key)
        if found is None:
            found = _key_value(self._tag, name, value)
            if len(known) < KNOWN_VALUES_PER_NAME:
                known[key] = found
        return found


def _one_off_heads(tag: bytes, name: str) -> tuple[bytes, ...]:
    """`_key_value`'s KeyValue of `name` up to its string value, by the value's length: for
    each length whose KeyValue's lengths fit one byte each."""
    heads = []
    for size in range(0x80 - 6 - len(name.encode())):
        written = _key_value(tag, name, "x" * size)
        heads.append(written[: len(written) - size])
    return tuple(heads)


class _Shape:
    """Spans' attributes of the same names in the same order: the blocks remembered of
    them, by the values that repeat."""

    __slots__ = ("blocks", "one_off", "repeating")

    def __init__(self, repeating: list[str], one_off: list[str]) -> None:
        #: The values that repeat, as a tuple: two of them at least.
        self.repeating = itemgetter(*repeating)
        #: The one-off attributes among them, in their order.
        self.one_off = tuple(one_off)
        self.blocks: dict[tuple[AttributeValue | None, ...], _Block] = {}


#: The shape of attributes written one by one, no block of them remembered (its getter is
#: never called).
_ONE_BY_ONE = _Shape(["", ""], [])


def _flags(is_remote: bool) -> bytes:
    return _FIXED32.pack(HAS_IS_REMOTE | IS_REMOTE if is_remote else HAS_IS_REMOTE)


_LOCAL_LINK_FLAGS = b"\x35" + _flags(False)
_REMOTE_LINK_FLAGS = b"\x35" + _flags(True)
# Span.flags is field 16, fixed32: its tag takes two bytes.
_LOCAL_SPAN_FLAGS = b"\x85\x01" + _flags(False)
_REMOTE_SPAN_FLAGS = b"\x85\x01" + _flags(True)
_UNSET_STATUS = b"\x7a\x00"
#: An unset status and the flags after it, by whether the parent is remote: most spans'.
_UNSET_STATUS_AND_FLAGS = (_UNSET_STATUS + _LOCAL_SPAN_FLAGS, _UNSET_STATUS + _REMOTE_SPAN_FLAGS)
#: Span.kind's tag and value, by OTLP's SpanKind.
_KINDS = tuple(b"\x30" + _ONE_BYTE[kind] for kind in range(6))
#: The start and end times, fixed64 each, after their tags.
_TIMES = struct.Struct("<BQBQ")
#: The trace id (two big-endian halves) and the span id, after their tags and lengths.
_IDS = struct.Struct(">2sQQ2sQ")
#: The same, and the parent span id after its tag and length.
_IDS_AND_PARENT = struct.Struct(">2sQQ2sQ2sQ")
_TRACE_ID_TAG = b"\x0a\x10"
_SPAN_ID_TAG = b"\x12\x08"
_PARENT_SPAN_ID_TAG = b"\x22\x08"
#: A ScopeSpans.spans tag and a length of two bytes: a span of 128 to 16383 bytes.
_SPAN_TAG_AND_TWO_BYTE_LENGTH = struct.Struct("<BBB")
_LOW_64_BITS = 2**64 - 1


def _link(link: LinkData) -> bytes:
    return _field(
        b"\x6a",
        b"\x0a\x10"
        + link.trace_id.to_bytes(16, "big")
        + b"\x12\x08"
        + link.span_id.to_bytes(8, "big")
        + (_REMOTE_LINK_FLAGS if link.is_remote else _LOCAL_LINK_FLAGS),
    )


def _status(code: int, message: str) -> bytes:
    if not code:
        return _UNSET_STATUS
    body = (_field(b"\x12", message.encode()) if message else b"") + b"\x18" + _varint(code)
    return _field(b"\x7a", body)


class ExportRequest:
    """The fixed parts of a process's exports, written once: its resource and its
    instrumentation scope."""

    def __init__(
        self, resource: Mapping[str, AttributeValue], scope: str, one_off: Iterable[str] = ()
    ) -> None:
        """`one_off`: the names of attributes whose every value is one span's own (an
        instance's id), written each time rather than remembered."""
        self._key_values = _KeyValues(b"\x4a", one_off)
        #: Each span name's field.
        self._names: dict[str, bytes] = {}
        self._resource = _field(b"\x0a", _KeyValues(b"\x0a").encode(resource))
        self._scope = _field(b"\x0a", _field(b"\x0a", scope.encode()))

    def encode(self, spans: Iterable[SpanData]) -> bytes:
        """One ExportTraceServiceRequest: a ResourceSpans of one ScopeSpans holding `spans`."""
        return self.holding(list(map(self.span, spans)))

    def holding(self, spans: Sequence[bytes]) -> bytes:
        """One ExportTraceServiceRequest holding spans already written by `span`."""
        scope_spans = _field(b"\x12", self._scope + b"".join(spans))
        return _field(b"\x0a", self._resource + scope_spans)

    def span(self, span: SpanData) -> bytes:
        """A finished span's bytes, as a ScopeSpans holds them."""
        trace_id = span.trace_id
        parent = span.parent_span_id
        trace_state = span.trace_state
        if trace_state or parent is None:
            ids = _IDS.pack(
                _TRACE_ID_TAG, trace_id >> 64, trace_id & _LOW_64_BITS, _SPAN_ID_TAG, span.span_id
            )
            if trace_state:
                ids += _field(b"\x1a", trace_state.encode())
            if parent is not None:
                ids += _PARENT_SPAN_ID_TAG + parent.to_bytes(8, "big")
        else:
            ids = _IDS_AND_PARENT.pack(
                _TRACE_ID_TAG,
                trace_id >> 64,
                trace_id & _LOW_64_BITS,
                _SPAN_ID_TAG,
                span.span_id,
                _PARENT_SPAN_ID_TAG,
                parent,
            )
        name = span.name
        name_field = self._names.get(name)
        if name_field is None:
            name_field = _field(b"\x2a", name.encode())
            if len(self._names) < KNOWN_NAMES:
                self._names[name] = name_field
        links = span.links
        status_code = span.status_code
        body = b"".join(
            (
                ids,
                name_field,
                _KINDS[span.kind],
                _TIMES.pack(0x39, span.start_unix_nano, 0x41, span.end_unix_nano),
                self._key_values.encode(span.attributes),
                b"".join(map(_link, links)) if links else b"",
                _status(status_code, span.status_message)
                + (_REMOTE_SPAN_FLAGS if span.parent_is_remote else _LOCAL_SPAN_FLAGS)
                if status_code
                else _UNSET_STATUS_AND_FLAGS[span.parent_is_remote],
            )
        )
        size = len(body)
        if 0x80 <= size < 0x4000:
            return _SPAN_TAG_AND_TWO_BYTE_LENGTH.pack(0x12, size & 0x7F | 0x80, size >> 7) + body
        return _field(b"\x12", body)
