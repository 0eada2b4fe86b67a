"""How much the simulators remember of what they were sent, so that a sandbox left running
for weeks holds bounded memory: the newest of each kind, the older forgotten."""

from __future__ import annotations

from collections import deque
from typing import TypeVar

#: Bodies received, To-Dos raised, calls abandoned, mails: the newest this many of each kind.
KEPT_PER_KIND = 10_000

#: The files the simulated DERMS sent, kept whole to be sent again: the newest, up to this
#: many bytes of content (the newest always, whatever its size).
SENT_FILE_BYTES_KEPT = 256 * 1024 * 1024

Kept = TypeVar("Kept")


def newest_kept() -> deque[Kept]:
    return deque(maxlen=KEPT_PER_KIND)
