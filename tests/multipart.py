"""Multipart bodies for the file routes' tests, built by hand: the parts in any order, any
number of times, or a body cut short; streamed in chunks when a test needs to see that the
hub never holds the file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.csv_files import file_chunks

BOUNDARY = "derms-bridge-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
END = f"--{BOUNDARY}--\r\n".encode()


@dataclass(frozen=True)
class Part:
    name: str
    content: bytes = b""
    #: A file part has one; a form field has none.
    filename: str | None = None

    def head(self) -> bytes:
        disposition = f'form-data; name="{self.name}"'
        if self.filename is not None:
            disposition += f'; filename="{self.filename}"'
        return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()


def multipart_body(*parts: Part) -> bytes:
    """The parts in the order given, and the closing boundary."""
    return b"".join(part.head() + part.content + b"\r\n" for part in parts) + END


async def streamed_body(
    before: Iterable[Part], file_part: Part, csv_file: Path, after: Iterable[Part] = ()
) -> AsyncIterator[bytes]:
    """A body whose file part holds the file at `csv_file`, read from disk a chunk at a time."""
    for part in before:
        yield part.head() + part.content + b"\r\n"
    yield file_part.head()
    for chunk in file_chunks(csv_file):
        yield chunk
    yield b"\r\n"
    for part in after:
        yield part.head() + part.content + b"\r\n"
    yield END
