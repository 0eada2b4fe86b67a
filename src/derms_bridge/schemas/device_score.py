"""What a Device Score Transfer run (flows 16, 17) did with each file it found."""

from __future__ import annotations

from pydantic import BaseModel


class FileNotSent(BaseModel):
    fileName: str
    reason: str


class DeviceScoreTransferReport(BaseModel):
    """The instance's reply: where the files were looked for, which went and which did not."""

    store: str
    folder: str
    sent: list[str] = []
    notSent: list[FileNotSent] = []
