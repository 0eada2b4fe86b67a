"""What the hub's two intakes of uploaded files share (file jobs, flows 7 and 8; staged
transfers, flow 15): the refusal of a message or a file that does not fit, the answer to
the trigger, and reading an upload to its end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from pydantic import ValidationError

#: How much of an upload is read at a time.
CHUNK_BYTES = 1 << 20


class FileRefused(Exception):
    """The trigger's message or the file's header does not fit: nothing is kept."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def message_refused(invalid: ValidationError) -> FileRefused:
    """The refusal of a trigger's message that does not validate: each error named by its
    field under `message`."""
    return FileRefused(
        [
            {
                "field": ".".join(["message", *(str(p) for p in error["loc"])]),
                "message": error["msg"],
            }
            for error in invalid.errors()
        ]
    )


@dataclass(frozen=True)
class Received:
    instance_id: str
    resumed: bool
    #: A file sent again after its run had finished: its acknowledgement goes again.
    acknowledged_again: bool = False


def drain(upload: IO[bytes]) -> None:
    """Read an upload to its end, dropping what is read: its reads raise if it broke off."""
    while upload.read(CHUNK_BYTES):
        pass
