"""Instance ids are UUIDv7 (RFC 9562): version 7, the RFC's variant, the time they were
made in their first 48 bits, so that ids of later milliseconds sort after earlier ones."""

from __future__ import annotations

import time
import uuid

from derms_bridge.ids import RANDOM_BITS, new_instance_id, uuid7


def test_a_new_id_is_a_version_7_uuid_of_the_rfc_variant() -> None:
    made = uuid.UUID(new_instance_id())

    assert made.version == 7
    assert made.variant == uuid.RFC_4122


def test_a_new_id_carries_the_millisecond_it_was_made_in() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid.UUID(new_instance_id())
    after = time.time_ns() // 1_000_000

    assert before <= made.int >> 80 <= after


def test_the_rfc_example_is_written_as_the_rfc_writes_it() -> None:
    # RFC 9562, appendix A.6: 2022-02-22 14:22:22-05:00, rand_a 0xCC3, rand_b 0x18C4DC0C0C07398F.
    unix_ms = 0x017F22E279B0
    random_bits = 0xCC3 << 62 | 0x18C4DC0C0C07398F

    assert str(uuid7(unix_ms, random_bits)) == "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"


def test_ids_of_later_milliseconds_sort_after_earlier_ones_as_text() -> None:
    every_random = (1 << RANDOM_BITS) - 1
    earlier = str(uuid7(1_764_000_000_000, every_random))
    later = str(uuid7(1_764_000_000_001, 0))

    assert earlier < later
    # The random bits, all ones or all zeros, leave the version and variant as they are.
    assert {(uuid.UUID(each).version, uuid.UUID(each).variant) for each in (earlier, later)} == {
        (7, uuid.RFC_4122)
    }


def test_many_ids_made_together_are_all_different() -> None:
    made = {new_instance_id() for _ in range(100_000)}

    assert len(made) == 100_000
