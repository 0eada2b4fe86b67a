"""Instance ids: UUIDv7 (RFC 9562), so that instances made near each other in time sit near
each other in every index keyed by their id. Random ids (UUIDv4) put the instances of one
day on every leaf page of those indexes, and the purge of a day read a page per instance in
each of them (bench/README.md, "The purge, a fourth time"). Ids made before stay as they
are: nothing orders or pages by id as if it followed time; it only breaks ties in time.

A v7 id tells its creation time to the millisecond (its first 48 bits), as the instance's
`received_at` does to whoever can read the instance.
"""

from __future__ import annotations

import secrets
import time
import uuid

#: Bits a v7 id draws at random: 12 of `rand_a` and 62 of `rand_b`.
RANDOM_BITS = 74

_MILLISECONDS = (1 << 48) - 1
_RAND_B = (1 << 62) - 1


def uuid7(unix_ms: int, random_bits: int) -> uuid.UUID:
    """The v7 UUID of `unix_ms` (milliseconds since the epoch, kept modulo 2**48 as the RFC
    says) with `random_bits` (the low RANDOM_BITS of it) for the rest."""
    rand_a = (random_bits >> 62) & 0xFFF
    rand_b = random_bits & _RAND_B
    value = (unix_ms & _MILLISECONDS) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def new_instance_id() -> str:
    """A new instance's id: the time now, and 74 bits from the OS's random source (a v4 id
    has 122): two ids made in one millisecond are alike with a chance of 2**-74."""
    return str(uuid7(time.time_ns() // 1_000_000, secrets.randbits(RANDOM_BITS)))
